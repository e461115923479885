"""Pipeline roots on object stores (``s3://``, ``gs://``): staging and marker-last publication.

**Why staging.** Components write with ``open``, ``os.makedirs``, pyarrow, TensorFlow
(SavedModels) and Beam sinks; a local rename is their atomic commit. Rather than teach every
writer every store, the executor boundary stages: an input artifact on a remote root is copied
once into a local cache (``stage_in``; published artifacts never change, so the URI is the
cache key) and the component gets the local copy; outputs are written to local temporary
folders exactly as on a local root, and published by ``publish``. One IO layer,
``sluice.components.io.stores`` (Beam's filesystems), does every remote read and write, for the
runner and the executors alike, so any store Beam has a filesystem for works; ``s3://`` is
tested (against moto's S3 server on loopback), ``gs://`` is not.

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
only the markers (``publish_in_place``). A failure deletes the prefixes as above. An input a
component declares in ``remote_inputs`` (the Pusher's examples: it reads a few rows) is handed
over unstaged on any runner.
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
import urllib.parse

from sluice.components.io import stores
from sluice.components.sdk import DefinitionError

MARKER = "_SLUICE_PUBLISHED"
CACHE_ENV = "SLUICE_CACHE_DIR"
# Beam options a filesystem reads (S3Options, GoogleCloudOptions); the rest of the pipeline's are not ours.
_FS_OPTION_PREFIXES = ("--s3_", "--project", "--impersonate_service_account")


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
    """Makes the filesystem options (``--s3_*``...) of a pipeline's Beam arguments the process's
    (``stores.set_options``): the runner's own reads and writes, and its executors', use them."""
    stores.set_options(a for a in beam_pipeline_args or [] if a.startswith(_FS_OPTION_PREFIXES))


def list_files(uri: str) -> list[str]:
    """Every object under the prefix ``uri/``, as full URIs, sorted."""
    return [f"{uri.rstrip('/')}/{rel}" for rel in stores.list_folder(uri)]


def describe(uri: str) -> list[tuple[str, int, float]]:
    """Name, size and time of last change of the object ``uri``, of each object under the prefix
    ``uri/``, or of each object a glob pattern matches (names relative to the pattern's folder)."""
    if any(ch in uri for ch in "*?["):
        base = posixpath.dirname(re.split(r"[*?[]", uri)[0])
        found = [f for f in stores.listing(base + "/") if fnmatch.fnmatchcase(f[0], uri)]
    elif exists(uri):
        base, found = posixpath.dirname(uri), [f for f in stores.listing(uri) if f[0] == uri]
    else:
        base = uri.rstrip("/")
        found = [f for f in stores.listing(base + "/") if not f[0].endswith("/")]
    return sorted((posixpath.relpath(path, base), size, updated) for path, size, updated in found)


exists, read_bytes, write_bytes = stores.exists, stores.read_bytes, stores.write_bytes


def delete_prefix(uri: str) -> list[str]:
    """Deletes every object under ``uri/`` (an unpublished upload); returns what it deleted."""
    files = list_files(uri)
    stores.delete(files)
    return files


# --- publication ---------------------------------------------------------------------------------


def publish(local_dir: str, uri: str, execution_id: str) -> None:
    """Uploads an output folder to ``uri`` and then, last, its marker: only then is it an artifact."""
    _write_marker(uri, execution_id, stores.upload_dir(local_dir, uri))


def publish_in_place(uri: str, execution_id: str) -> None:
    """Publishes what an executor wrote straight to ``uri``: its marker, listing every file there."""
    prefix = uri.rstrip("/") + "/"
    _write_marker(uri, execution_id, [path[len(prefix):] for path in list_files(uri) if path != prefix + MARKER])


def _write_marker(uri: str, execution_id: str, files: list[str]) -> None:
    marker = {"execution_id": execution_id, "files": files}
    write_bytes(join(uri, MARKER), json.dumps(marker, indent=1).encode())


def is_published(uri: str) -> bool:
    """Whether the artifact at ``uri`` was published whole (its marker exists)."""
    return exists(join(uri, MARKER))


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
        stores.download_dir(uri, scratch, skip=(MARKER,))
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
