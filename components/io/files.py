"""Whole small files (schemas, statistics, reports) and whole folders (SavedModels): local paths
directly, other URIs (``s3://``, ``gs://``) through Beam's filesystems (``stores``).

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

from sluice.components.io import stores

_copies: dict[str, str] = {}  # URI -> its local copy
_copy_locks: dict[str, threading.Lock] = {}  # URI -> held while it downloads
_copies_lock = threading.Lock()


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI of a Beam filesystem (``gs://...``) rather than a local path."""
    return "://" in path


def read_bytes(path: str) -> bytes:
    """Reads a whole file."""
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    return stores.read_bytes(path)


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file, making its local folder first."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return
    stores.write_bytes(path, data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def exists(path: str) -> bool:
    """Whether ``path`` names an existing file."""
    return stores.exists(path) if is_remote(path) else os.path.isfile(path)


def remove(path: str) -> None:
    """Deletes a file if it is there."""
    if not is_remote(path):
        if os.path.exists(path):
            os.remove(path)
    elif stores.exists(path):
        stores.delete([path])


def makedirs(path: str) -> None:
    """Makes a local folder (and its parents); object stores have no folders, so nothing for a URI."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def list_folder(uri: str) -> list[str]:
    """The paths of every file under the folder ``uri``, relative to it, sorted."""
    if not is_remote(uri):
        return sorted(os.path.relpath(os.path.join(where, name), uri).replace(os.sep, "/")
                      for where, _, names in os.walk(uri) for name in names)
    return stores.list_folder(uri)


def local_copy(uri: str) -> str:
    """A local folder holding the folder ``uri``: ``uri`` itself when local; for a URI, a copy
    downloaded once per process (artifacts never change once published) into a temporary folder,
    removed when the process exits. Threads asking for one URI wait for its one download; other
    URIs download meanwhile."""
    if not is_remote(uri):
        return uri
    with _copies_lock:
        if uri in _copies:
            return _copies[uri]
        if not _copy_locks:
            atexit.register(_remove_copies)
        lock = _copy_locks.setdefault(uri, threading.Lock())
    with lock:
        if uri not in _copies:
            target = tempfile.mkdtemp(prefix="sluice-copy-")
            try:
                stores.download_dir(uri, target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            with _copies_lock:
                _copies[uri] = target
        return _copies[uri]


def _remove_copies() -> None:
    for folder in _copies.values():
        shutil.rmtree(folder, ignore_errors=True)


def upload_dir(local_dir: str, uri: str) -> None:
    """Copies every file of the local folder ``local_dir`` to the same paths under the URI ``uri``."""
    stores.upload_dir(local_dir, uri)
