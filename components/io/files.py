"""Whole small files (schemas, statistics, reports) and whole folders (SavedModels): local paths
directly, other URIs (``s3://``, ``gs://``) through Beam's filesystems.

A component declared with ``remote_io=True`` may be handed object-store URIs for its inputs and
outputs (on a runner whose workers do not share the driver's disk); it reads and writes them only
through this module and ``examples``. TensorFlow cannot open ``s3://``: a SavedModel is read
from a local copy (``local_copy``) and written locally, then uploaded (``upload_dir``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

_CHUNK = 8 << 20
_copies: dict[str, str] = {}
_copies_lock = threading.Lock()


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI of a Beam filesystem (``gs://...``) rather than a local path."""
    return "://" in path


def read_bytes(path: str) -> bytes:
    """Reads a whole file."""
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file, making its local folder first."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return
    from apache_beam.io.filesystems import FileSystems

    if not data and path.startswith("s3://"):
        _put_empty_s3(path)
        return
    with FileSystems.create(path) as f:
        f.write(data)


def _put_empty_s3(path: str) -> None:
    """An empty object (``BLESSED``): Beam's S3 writer completes a multipart upload of no part, which
    S3 refuses, so it is put in one request through the client of Beam's S3 filesystem."""
    from apache_beam.io.aws import s3io
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    bucket, key = s3io.parse_s3_path(path)
    # The options Beam's S3 filesystem was built with (Beam 2.77 keeps them as ``_options``).
    options = getattr(FileSystems.get_filesystem(path), "_options", None) or PipelineOptions([])
    s3io.S3IO(options=options).client.client.put_object(Bucket=bucket, Key=key, Body=b"")


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def exists(path: str) -> bool:
    """Whether ``path`` names an existing file."""
    if not is_remote(path):
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def remove(path: str) -> None:
    """Deletes a file if it is there."""
    if not is_remote(path):
        if os.path.exists(path):
            os.remove(path)
        return
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(path):
        FileSystems.delete([path])


def makedirs(path: str) -> None:
    """Makes a local folder (and its parents); object stores have no folders, so nothing for a URI."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def list_folder(uri: str) -> list[str]:
    """The paths of every file under the folder ``uri``, relative to it, sorted."""
    if not is_remote(uri):
        return sorted(os.path.relpath(os.path.join(where, name), uri).replace(os.sep, "/")
                      for where, _, names in os.walk(uri) for name in names)
    from apache_beam.io.filesystems import FileSystems

    prefix = uri.rstrip("/") + "/"
    found = FileSystems.match([prefix + "**"])[0].metadata_list
    return sorted(m.path[len(prefix):] for m in found if m.path.startswith(prefix) and not m.path.endswith("/"))


def local_copy(uri: str) -> str:
    """A local folder holding the folder ``uri``: ``uri`` itself when local; for a URI, a copy
    downloaded once per process (artifacts never change once published) into a temporary folder,
    removed when the process exits."""
    if not is_remote(uri):
        return uri
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with _copies_lock:
        if uri in _copies:
            return _copies[uri]
        if not _copies:
            atexit.register(_remove_copies)
        target = tempfile.mkdtemp(prefix="sluice-copy-")
        for rel in list_folder(uri):
            path = os.path.join(target, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            source = FileSystems.open(f"{uri.rstrip('/')}/{rel}", compression_type=CompressionTypes.UNCOMPRESSED)
            with source as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        _copies[uri] = target
        return target


def _remove_copies() -> None:
    for folder in _copies.values():
        shutil.rmtree(folder, ignore_errors=True)


def upload_dir(local_dir: str, uri: str) -> None:
    """Copies every file of the local folder ``local_dir`` to the same paths under the URI ``uri``."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    for rel in list_folder(local_dir):
        path, target = os.path.join(local_dir, *rel.split("/")), f"{uri.rstrip('/')}/{rel}"
        if os.path.getsize(path) == 0:
            write_bytes(target, b"")
            continue
        sink = FileSystems.create(target, compression_type=CompressionTypes.UNCOMPRESSED)
        with open(path, "rb") as src, sink as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
