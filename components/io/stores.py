"""Object stores (``s3://``, ``gs://``...) through Beam's filesystems: the one place that reads,
writes, lists and deletes their objects, for the executors (``files``) and the runner's
publication (``sluice.orchestration.object_store``) alike.

**Options.** Endpoints and credentials are the filesystem options Beam holds for this process
(``FileSystems.set_options``): a Beam worker is handed its pipeline's, every ``beam.Pipeline``
sets its own, and a runner sets its pipeline's with ``set_options`` before it touches a store.
Without them, boto3's own configuration (``AWS_*``, ``~/.aws``) or Google's application default
credentials apply.

**S3.** One Beam ``S3IO`` per set of S3 options: each of Beam's ``S3FileSystem`` calls builds a
new boto3 client, a large part of a small request's time. Listing and existence go through its
client, whose retries give up within seconds on an endpoint that does not answer (``S3IO``'s
own retry for minutes). An empty object is put in one request: Beam's multipart writer
completes an upload of no part, which S3 refuses.

Every copy is byte for byte (``UNCOMPRESSED``): Beam's ``AUTO`` would gunzip a ``.gz`` file.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterable
from typing import Any

_CHUNK = 8 << 20
_lock = threading.Lock()
_s3: dict[tuple, Any] = {}  # S3 options -> Beam's S3IO
_last: list[Any] = [None, None]  # the options object last seen, and its S3IO


def set_options(args: Iterable[str]) -> None:
    """Makes these Beam filesystem options (``--s3_endpoint_url=...``) the process's. Beam is not
    imported for none: a process that has not used its filesystems has none to reset."""
    args = list(args)
    if not args and "apache_beam.io.filesystems" not in sys.modules:
        return
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions(args))


def _s3io():
    """Beam's S3 IO for the S3 options Beam holds now, built once per set of them."""
    from apache_beam.io.aws import s3io
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    options = FileSystems._pipeline_options  # Beam 2.77 keeps them here
    with _lock:
        if options is not None and _last[0] is options:
            return _last[1]
        options = options or PipelineOptions([])
        key = tuple(sorted((name, repr(value)) for name, value in options.view_as(S3Options).get_all_options(
            drop_default=True).items() if name.startswith("s3_")))
        if key not in _s3:
            _s3[key] = s3io.S3IO(options=options)
        _last[:] = [options, _s3[key]]
        return _s3[key]


def open_read(uri: str):
    """A binary reader of the object ``uri``."""
    if uri.startswith("s3://"):
        return _s3io().open(uri, "rb")
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def open_write(uri: str):
    """A binary writer of the object ``uri`` (seen once closed); not for an empty object (``write_bytes``)."""
    if uri.startswith("s3://"):
        return _s3io().open(uri, "wb")
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    return FileSystems.create(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as source:
        return source.read()


def write_bytes(uri: str, data: bytes) -> None:
    if not data and uri.startswith("s3://"):
        from apache_beam.io.aws import s3io

        bucket, key = s3io.parse_s3_path(uri)
        _s3io().client.client.put_object(Bucket=bucket, Key=key, Body=b"")
        return
    with open_write(uri) as sink:
        sink.write(data)


def listing(prefix: str) -> list[tuple[str, int, float]]:
    """Every object whose name starts with ``prefix``: (URI, size, time of last change)."""
    if prefix.startswith("s3://"):
        return _s3_listing(prefix)
    from apache_beam.io.filesystems import FileSystems

    found = FileSystems.match([prefix + "**"])[0].metadata_list
    return [(m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in found]


def _s3_listing(prefix: str) -> list[tuple[str, int, float]]:
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import messages

    bucket, key = s3io.parse_s3_path(prefix, object_optional=True)
    request, found = messages.ListRequest(bucket, key), []
    while True:
        try:
            response = _s3io().client.list(request)
        except messages.S3ClientError as exc:
            if exc.code == 404:  # nothing under the prefix
                return found
            raise
        found += [(f"s3://{bucket}/{item.key}", item.size, item.last_modified.timestamp()) for item in response.items]
        if not response.next_token:
            return found
        request.continuation_token = response.next_token


def list_folder(uri: str) -> list[str]:
    """The objects under the prefix ``uri/``, relative to it, sorted."""
    prefix = uri.rstrip("/") + "/"
    return sorted(path[len(prefix):] for path, _, _ in listing(prefix)
                  if path.startswith(prefix) and not path.endswith("/"))


def exists(uri: str) -> bool:
    """Whether the object ``uri`` exists."""
    if not uri.startswith("s3://"):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(uri)
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import messages

    try:
        _s3io().client.get_object_metadata(messages.GetRequest(*s3io.parse_s3_path(uri)))
    except messages.S3ClientError as exc:
        if exc.code == 404:
            return False
        raise
    return True


def delete(uris: list[str]) -> None:
    """Deletes these objects (all of one store)."""
    if uris and uris[0].startswith("s3://"):
        _s3io().delete_paths(uris)
    elif uris:
        from apache_beam.io.filesystems import FileSystems

        FileSystems.delete(uris)


def upload_dir(local_dir: str, uri: str) -> list[str]:
    """Copies every file of the local folder ``local_dir`` to the same paths under ``uri``; returns
    those paths, relative and sorted."""
    names = sorted(os.path.relpath(os.path.join(where, name), local_dir).replace(os.sep, "/")
                   for where, _, found in os.walk(local_dir) for name in found)
    for rel in names:
        path, target = os.path.join(local_dir, *rel.split("/")), f"{uri.rstrip('/')}/{rel}"
        if os.path.getsize(path) == 0:
            write_bytes(target, b"")
            continue
        with open(path, "rb") as source, open_write(target) as sink:
            shutil.copyfileobj(source, sink, _CHUNK)
    return names


def download_dir(uri: str, local_dir: str, skip: Iterable[str] = ()) -> None:
    """Copies the objects under ``uri/`` into the local folder ``local_dir``, but those named in ``skip``."""
    skipped = set(skip)
    os.makedirs(local_dir, exist_ok=True)
    for rel in list_folder(uri):
        if rel in skipped:
            continue
        target = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open_read(f"{uri.rstrip('/')}/{rel}") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)
