"""Everything a run writes stays inside its pipeline root.

**Paths become URIs here, and only here.** ``file_uri`` percent-encodes a path (``#``, ``?``,
``%``, spaces, non-ASCII), as ``pathlib`` does and MLflow decodes. ``sqlite_uri`` builds the
``sqlite:///`` URI SQLAlchemy reads: SQLAlchemy 2 percent-decodes the database part and starts
its query options at the first ``?``, so exactly ``%`` and ``?`` are encoded; every other
character passes as is. ``uri_to_path`` reads both back.

**Nothing is followed out of the root.** ``safe_join`` refuses a path that leaves the root,
lexically or through a symlink: component folders, ``<root>/metadata.db`` and
``<root>/mlflow-artifacts`` alike, with one line.

**MLflow artifacts go under the run's own root.** An MLflow run's artifact location comes
from its experiment, which whoever created it fixed: with one store shared by several roots
(a team's SQLite or PostgreSQL database) the Trainer's model copy of a run rooted in ``B``
would land in ``A/mlflow-artifacts``. So each execution gets an explicit destination
(``artifact_destination``, handed to the component as ``ExecutionContext.artifact_uri``):

- MLflow's own location for the run, when it is a local folder inside this root, or not a
  local folder at all (``s3://``, ``mlflow-artifacts:/``...);
- otherwise ``<root>/mlflow-artifacts/<run id>/artifacts`` (MLflow's own layout), recorded on
  the run as the tag ``sluice.artifact_uri``.

With an HTTP tracking server the server owns the artifacts (its artifact root is the team's
root, and it accepts a model version's source only inside the run's own location): new
experiments get the server's default location (``experiment_location``), and runs keep theirs.

**A cache hit reuses only outputs under this root** (``all_inside``): an execution recorded by a
run rooted elsewhere is simply not a hit.

**A root on an object store** (``s3://bucket/prefix``, ``gs://...``): artifacts go under it, joined
with ``/`` (``object_store.join``), but ``metadata.db``, ``mlflow-artifacts`` and execution logs go
to its local folder (``local_root``, that is ``object_store.local_home``): SQLite and MLflow's file
store need a local disk.
"""

from __future__ import annotations

import os
import pathlib
import urllib.parse
import urllib.request

from sluice.components.sdk import DefinitionError
from sluice.orchestration import object_store

STORE_FILE = "metadata.db"
ARTIFACTS_DIR = "mlflow-artifacts"
ARTIFACT_URI_TAG = "sluice.artifact_uri"
# Tracking URIs whose server, not Sluice, decides where artifacts go.
_SERVED_SCHEMES = ("http", "https", "databricks")


def file_uri(path: str) -> str:
    """``file://`` URI of a local path (absolute, percent-encoded)."""
    return pathlib.Path(os.path.abspath(path)).as_uri()


def sqlite_uri(path: str) -> str:
    """The ``sqlite:///`` URI SQLAlchemy (and so MLflow) reads as exactly ``path``."""
    # MLflow creates the database's folder from the URI's raw text; runtime.mlflow_sqlite (applied
    # by quiet_mlflow, before any store opens) makes it read the path as SQLAlchemy does.
    return "sqlite:///" + os.path.abspath(path).replace("%", "%25").replace("?", "%3F")


def uri_to_path(uri: str) -> str | None:
    """The local path a ``file:``, ``sqlite:///`` or scheme-less URI names; None for anything else."""
    if uri.startswith("sqlite:///"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return os.path.abspath(database) if database and database != ":memory:" else None
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return urllib.request.url2pathname(parts.path)
    if not parts.scheme:
        return os.path.abspath(uri)
    return None


def local_root(root: str) -> str:
    """The local folder of a run's own files: the root itself, or a remote root's local folder."""
    return object_store.local_home(root) if object_store.is_remote(root) else root


def is_inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or under it, both as written and once symlinks are resolved."""
    if object_store.is_remote(root) or object_store.is_remote(path):
        return object_store.is_remote(root) and object_store.is_remote(path) and object_store.is_inside(path, root)
    path, root = os.path.abspath(path), os.path.abspath(root)
    if os.path.commonpath([path, root]) != root:
        return False
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def safe_join(root: str, *parts: str) -> str:
    """``root/parts...``, refusing any path that leaves the root, also through a symlink.

    Ids are validated, but a folder (or ``metadata.db``) inside the root may have been
    replaced by a symlink pointing elsewhere; nothing is ever written through it. A remote
    root has no symlinks: ``object_store.join`` refuses ``..`` parts.
    """
    if object_store.is_remote(root):
        return object_store.join(root, *parts)
    path = os.path.abspath(os.path.join(root, *parts))
    if os.path.commonpath([path, os.path.abspath(root)]) != os.path.abspath(root):
        raise DefinitionError(f"path {os.path.join(*parts)!r} escapes the pipeline root")
    if not is_inside(path, root):
        raise DefinitionError(
            f"{path} resolves to {os.path.realpath(path)}, outside the pipeline root {root} (a symlink?); "
            f"refusing to write there"
        )
    return path


def store_file(root: str) -> str:
    """``<root>/metadata.db``, the default SQLite store (refused if it leads out of the root)."""
    return safe_join(local_root(root), STORE_FILE)


def artifacts_dir(root: str) -> str:
    """``<root>/mlflow-artifacts`` (refused if it leads out of the root)."""
    return safe_join(local_root(root), ARTIFACTS_DIR)


def all_inside(paths: list[str], root: str) -> bool:
    """Every path is a local path inside ``root`` (see ``is_inside``)."""
    return all(is_inside(p, root) for p in paths)


def served(tracking_uri: str) -> bool:
    """A tracking server, which decides where artifacts go (not a database or files Sluice opens)."""
    return urllib.parse.urlsplit(tracking_uri).scheme in _SERVED_SCHEMES


def experiment_location(tracking_uri: str, root: str | None) -> str | None:
    """The artifact location of a new experiment: ``<root>/mlflow-artifacts``, or the server's choice."""
    if root is None or served(tracking_uri):
        return None
    return file_uri(artifacts_dir(root))


def artifact_destination(tracking_uri: str, run_artifact_uri: str, root: str, run_id: str) -> str:
    """Where run ``run_id`` logs its MLflow artifacts (see the module docstring).

    Raises DefinitionError when the destination under the root leads out of it.
    """
    if served(tracking_uri):
        return run_artifact_uri
    local = uri_to_path(run_artifact_uri)
    if local is None:
        return run_artifact_uri
    base, home = artifacts_dir(root), local_root(root)
    if os.path.commonpath([local, os.path.abspath(home)]) == os.path.abspath(home):
        safe_join(home, os.path.relpath(local, home))
        return run_artifact_uri
    return file_uri(safe_join(base, run_id, "artifacts"))
