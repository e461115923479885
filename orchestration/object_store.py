"""Pipeline roots on object stores (``s3://``, ``gs://``): staging and marker-last publication.

**Why staging.** Components write with ``open``, ``os.makedirs``, pyarrow, TensorFlow
(SavedModels) and Beam sinks; a local rename is their atomic commit. Rather than teach every
writer every store, the executor boundary stages: an input artifact on a remote root is copied
once into a local cache (``stage_in``; published artifacts never change, so the URI is the
cache key) and the component gets the local copy; outputs are written to local temporary
folders exactly as on a local root, and published by ``publish``. One IO layer, Beam's
``FileSystems``, does every remote read and write, so any store Beam has a filesystem for
works; ``s3://`` is tested (against moto's S3 server on loopback), ``gs://`` is not.

**Atomic publication without rename.** Object stores have no rename, so an upload is seen
half done. ``publish`` uploads an output's files to ``<output>/<execution_id>/`` and then,
LAST, writes the marker object ``<output>/<execution_id>/_SLUICE_PUBLISHED`` (the execution
id and the list of files, JSON); only after that is the execution recorded executed. A
prefix without its marker is not an artifact: the cache's "outputs still there" check asks
for the marker (``is_published``), staging refuses an unmarked prefix, and the recovery of
an abandoned execution deletes its prefix (``delete_prefix``). The marker's name starts with
``_`` so readers that skip Hadoop-style ``_SUCCESS`` files skip it too, and staging leaves it out.

**Credentials and endpoints** come from the pipeline's Beam options (``--s3_endpoint_url``,
``--s3_access_key_id``, ``--s3_secret_access_key``, ``--s3_region_name``...; masked wherever
Sluice prints or records them, see ``secrets``) or, without them, from boto3's own
configuration (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws``), or Google's
application default credentials for ``gs://``.

**What stays local.** The metadata store cannot be SQLite on an object store: a remote
root's default store is SQLite in a local folder for that root (``local_home``:
``$SLUICE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sluice`` or ``~/.cache/sluice``, then
``roots/<bucket>-<hash of the root>``), beside its MLflow artifacts, execution logs and the
staging cache. A team shares a remote root through a shared tracking URI (``--tracking-uri``).

**Written in place on a runner with workers.** Staging runs in the driver, which only works
where workers share its disk. On another runner than the DirectRunner (``beam_workers.runs_elsewhere``), a
component declared ``remote_io`` (the Beam components) is handed the store's URIs instead:
its inputs unstaged, its outputs the final ``<output>/<execution_id>/`` prefixes, which its
workers write through Beam's filesystems (``sluice.components.io``); the driver then writes
only the markers (``publish_in_place``). A failure deletes the prefixes as above.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import threading
import urllib.parse
from typing import Any

from sluice.components.sdk import DefinitionError

MARKER = "_SLUICE_PUBLISHED"
CACHE_ENV = "SLUICE_CACHE_DIR"
_CHUNK = 8 << 20
# Beam options a filesystem reads (S3Options, GoogleCloudOptions); the rest of the pipeline's are not ours.
_FS_OPTION_PREFIXES = ("--s3_", "--project", "--impersonate_service_account")

_lock = threading.Lock()
_options: list[str] = []
_filesystems: dict[tuple[str, tuple[str, ...]], Any] = {}


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object store (``s3://``, ``gs://``...), not a local path."""
    scheme = urllib.parse.urlsplit(uri).scheme if "://" in uri else ""
    return bool(scheme) and scheme != "file"


def join(uri: str, *parts: str) -> str:
    """``uri/parts...`` with ``/``, refusing parts that climb (``..``) or restart (``/x``)."""
    for part in parts:
        if part.startswith("/") or ".." in part.split("/"):
            raise DefinitionError(f"path {part!r} escapes the pipeline root {uri}")
    return posixpath.join(uri.rstrip("/"), *parts)


def is_inside(uri: str, root: str) -> bool:
    """``uri`` is ``root`` or under it (both remote URIs, compared as text)."""
    uri, root = uri.rstrip("/"), root.rstrip("/")
    return uri == root or uri.startswith(root + "/")


def cache_dir() -> str:
    """The local folder for what Sluice keeps of remote roots."""
    base = os.environ.get(CACHE_ENV)
    if base:
        return os.path.abspath(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "sluice")


def local_home(root: str) -> str:
    """A remote root's local folder: its default metadata store, MLflow artifacts, logs and staged copies."""
    parts = urllib.parse.urlsplit(root.rstrip("/"))
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in parts.netloc)[:60]
    digest = hashlib.sha256(root.rstrip("/").encode()).hexdigest()[:12]
    return os.path.join(cache_dir(), "roots", f"{slug}-{digest}")


# --- the filesystem ----------------------------------------------------------------------------


def configure(beam_pipeline_args: list[str] | None) -> None:
    """Takes the filesystem options (``--s3_*``...) of a pipeline's Beam arguments for later calls."""
    global _options
    wanted = [a for a in beam_pipeline_args or [] if a.startswith(_FS_OPTION_PREFIXES)]
    with _lock:
        _options = wanted


def _s3io():
    """Beam's S3 IO, one per set of options: each of Beam's ``S3FileSystem`` calls builds a new
    boto3 client, a large part of a small request's time. Listing and existence go through its
    client (``_s3_listing``, ``_s3_exists``): S3IO's own retry those for minutes on an endpoint
    that does not answer, where boto3's retries give up within seconds, with one line."""
    from apache_beam.io.aws import s3io
    from apache_beam.options.pipeline_options import PipelineOptions

    with _lock:
        key = ("s3", tuple(_options))
        if key not in _filesystems:
            _filesystems[key] = s3io.S3IO(options=PipelineOptions(list(key[1])))
        return _filesystems[key]


def _filesystem(uri: str):
    """Beam's filesystem for ``uri``'s scheme, built with the configured options (one per scheme)."""
    from apache_beam.io.filesystem import FileSystem
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    scheme = FileSystems.get_scheme(uri)
    with _lock:
        key = (scheme, tuple(_options))
        if key not in _filesystems:
            FileSystems.get_filesystem(uri)  # imports the scheme's module; one clear error if none
            cls = next(fs for fs in FileSystem.get_all_subclasses() if fs.scheme() == scheme)
            _filesystems[key] = cls(pipeline_options=PipelineOptions(list(key[1])))
        return _filesystems[key]


def _open(uri: str, mode: str):
    if uri.startswith("s3://"):
        return _s3io().open(uri, mode)
    fs = _filesystem(uri)
    return fs.open(uri) if mode == "rb" else fs.create(uri)


def _listing(prefix: str) -> list[tuple[str, int, float]]:
    """Every object whose name starts with ``prefix``: (URI, size, time of last change)."""
    if prefix.startswith("s3://"):
        return _s3_listing(prefix)
    found = _filesystem(prefix).match([prefix + "**"])[0].metadata_list
    return [(m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in found]


def list_files(uri: str) -> list[str]:
    """Every object under the prefix ``uri/``, as full URIs, sorted."""
    prefix = uri.rstrip("/") + "/"
    return sorted(path for path, _, _ in _listing(prefix) if path.startswith(prefix) and not path.endswith("/"))


def describe(uri: str) -> list[tuple[str, int, float]]:
    """Name, size and time of last change of the object ``uri``, of each object under the prefix
    ``uri/``, or of each object a glob pattern matches (names relative to the pattern's folder)."""
    if any(ch in uri for ch in "*?["):
        base = posixpath.dirname(re.split(r"[*?[]", uri)[0])
        found = [f for f in _listing(base + "/") if fnmatch.fnmatchcase(f[0], uri)]
    elif exists(uri):
        base, found = posixpath.dirname(uri), [f for f in _listing(uri) if f[0] == uri]
    else:
        base, found = uri.rstrip("/"), [f for f in _listing(uri.rstrip("/") + "/") if not f[0].endswith("/")]
    return sorted((posixpath.relpath(path, base), size, updated) for path, size, updated in found)


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


def _s3_exists(uri: str) -> bool:
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import messages

    try:
        _s3io().client.get_object_metadata(messages.GetRequest(*s3io.parse_s3_path(uri)))
    except messages.S3ClientError as exc:
        if exc.code == 404:
            return False
        raise
    return True


def exists(uri: str) -> bool:
    return _s3_exists(uri) if uri.startswith("s3://") else _filesystem(uri).exists(uri)


def read_bytes(uri: str) -> bytes:
    with _open(uri, "rb") as fh:
        return fh.read()


def write_bytes(uri: str, data: bytes) -> None:
    if not data and uri.startswith("s3://"):
        _put_empty_s3(uri)
        return
    with _open(uri, "wb") as fh:
        fh.write(data)


def delete_prefix(uri: str) -> list[str]:
    """Deletes every object under ``uri/`` (an unpublished upload); returns what it deleted."""
    files = list_files(uri)
    delete_files(files)
    return files


def delete_files(uris: list[str]) -> None:
    """Deletes these objects (all of one store)."""
    if uris and uris[0].startswith("s3://"):
        _s3io().delete_paths(uris)
    elif uris:
        _filesystem(uris[0]).delete(uris)


def _put_empty_s3(uri: str) -> None:
    """An empty object (``BLESSED``...): Beam's S3 writer completes a multipart upload of no part,
    which S3 refuses, so it is put in one request through the client Beam's S3 IO configures."""
    from apache_beam.io.aws import s3io

    bucket, key = s3io.parse_s3_path(uri)
    _s3io().client.client.put_object(Bucket=bucket, Key=key, Body=b"")


# --- publication ---------------------------------------------------------------------------------


def upload_dir(local_dir: str, uri: str) -> list[str]:
    """Copies ``local_dir``'s files to ``uri/...``; returns their paths relative to it."""
    names = []
    for where, dirs, files in os.walk(local_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(where, name)
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            if os.path.getsize(path) == 0:
                write_bytes(join(uri, rel), b"")
            else:
                with open(path, "rb") as src, _open(join(uri, rel), "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            names.append(rel)
    return names


def publish(local_dir: str, uri: str, execution_id: str) -> None:
    """Uploads an output folder to ``uri`` and then, last, its marker: only then is it an artifact."""
    _write_marker(uri, execution_id, upload_dir(local_dir, uri))


def publish_in_place(uri: str, execution_id: str) -> None:
    """Publishes what an executor wrote straight to ``uri``: its marker, listing every file there."""
    prefix = uri.rstrip("/") + "/"
    _write_marker(uri, execution_id, [path[len(prefix):] for path in list_files(uri) if path != prefix + MARKER])


def _write_marker(uri: str, execution_id: str, files: list[str]) -> None:
    marker = {"execution_id": execution_id, "files": files}
    write_bytes(join(uri, MARKER), json.dumps(marker, indent=1).encode())


def use_for_beam() -> None:
    """Hands the configured filesystem options to Beam's ``FileSystems``, so that an executor's own
    reads and writes of object-store URIs (``sluice.components.io``) reach the same store."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    with _lock:
        FileSystems.set_options(PipelineOptions(list(_options)))


def is_published(uri: str) -> bool:
    """Whether the artifact at ``uri`` was published whole (its marker exists)."""
    return exists(join(uri, MARKER))


def download_dir(uri: str, local_dir: str) -> None:
    """Copies the objects under ``uri/`` into ``local_dir`` (the marker left out)."""
    prefix = uri.rstrip("/") + "/"
    os.makedirs(local_dir, exist_ok=True)
    for path in list_files(uri):
        rel = path[len(prefix):]
        if rel == MARKER:
            continue
        target = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with _open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)


def staged_path(uri: str, home: str) -> str:
    """Where ``stage_in`` keeps its copy of ``uri`` under a root's local home."""
    return os.path.join(home, "staged", hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:32])


def stage_in(uri: str, home: str) -> str:
    """A local copy of the published artifact ``uri``, made once (published artifacts never change)."""
    target = staged_path(uri, home)
    if os.path.isdir(target):
        return target
    if not is_published(uri):
        raise FileNotFoundError(f"{uri} has no {MARKER} marker: not a published artifact")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".staging-", dir=os.path.dirname(target))
    try:
        download_dir(uri, scratch)
        os.replace(scratch, target)
    except OSError:
        if not os.path.isdir(target):  # not another thread's copy arriving first
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def keep_staged(local_dir: str, uri: str, home: str) -> None:
    """Keeps a just-published output's local folder as ``uri``'s staged copy (its consumers need not download it)."""
    target = staged_path(uri, home)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.replace(local_dir, target)
    except OSError:
        shutil.rmtree(local_dir, ignore_errors=True)
