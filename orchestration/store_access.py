"""Opening the metadata store: an SQLite store that is created atomically and repairs itself,
and failures (read-only, full disk, unreachable server) that read as one line, at once.

An SQLite store is created by letting MLflow migrate a new database in a temporary file next
to ``metadata.db`` (or by copying one it migrated before, kept in the cache folder: the
migrations take seconds) and renaming it into place, all under an exclusive lock on the folder; a
process killed (or a disk filling up) at any moment leaves either no store or a complete one,
plus a temporary file the next opener removes. A database that an older version left
half-migrated (no schema revision, an old one, or MLflow's ``_alembic_tmp_*`` tables) is
rebuilt the same way when it holds no runs; with runs it is reported, never touched.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import logging
import os
import re
import secrets
import shutil
import socket
import sqlite3
import urllib.parse
from collections.abc import Iterator

from sluice.orchestration import roots
from sluice.orchestration.secrets import mask_uri

_TEMP = ".creating-"
_SIDE_FILES = ("-journal", "-wal", "-shm")
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_log = logging.getLogger(__name__)


def _error(uri: str, text: str) -> Exception:
    from sluice.orchestration.store_client import StoreError

    return StoreError(f"metadata store {mask_uri(uri)}: {text}")


def sqlite_path(uri: str) -> str | None:
    """The database file an ``sqlite:///`` URI opens (as SQLAlchemy reads it), else None."""
    return roots.uri_to_path(uri) if uri.startswith("sqlite:///") else None


def open_checks(uri: str) -> str | None:
    """Makes the store openable before MLflow touches it; returns why it cannot be written, if so.

    SQLite: creates or repairs the database (see the module docstring). A server (HTTP or a
    database): a short TCP connect, so a dead address fails now and not after minutes of retries.
    Raises ``StoreError`` with one line naming the store and the cause.
    """
    path = sqlite_path(uri)
    if path is not None:
        return ensure_sqlite_store(uri, path)
    probe_server(uri)
    return None


def probe_server(uri: str, timeout: float = 3.0) -> None:
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https") and (parts.query or parts.fragment):
        # MLflow appends its API path to the URI as text: after a query it would ask for garbage.
        raise _error(uri, "a tracking server URI cannot carry a query or fragment; "
                          "give a token in MLFLOW_TRACKING_TOKEN instead")
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return  # e.g. databricks, file stores, a database over a Unix socket
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise _error(uri, "the port is not a number") from None
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise _error(uri, f"cannot connect to {parts.hostname}:{port} ({why})") from None


# -- SQLite --------------------------------------------------------------------


@contextlib.contextmanager
def creation_lock(folder: str) -> Iterator[None]:
    """An exclusive lock on the store's folder (no extra file), across processes.

    Two ``sluice run`` processes starting together on a fresh root would otherwise both
    create the schema, and one fails ("Online migration expected to match one row").
    """
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_sqlite_store(uri: str, path: str) -> str | None:
    """A complete store at ``path`` (created or rebuilt if need be); why it is read-only, if it is."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _error(uri, f"cannot create the folder {folder} ({_strerror(exc)})") from None
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise _error(uri, "the database file is not readable (permission denied)")
    with creation_lock(folder):
        unwritable = _unwritable(folder, path)
        if unwritable is None:
            _remove_leftovers(path)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            problem, runs = _inspect(uri, path)
            if not problem:
                return unwritable
            if runs:
                raise _error(uri, f"the database is half-migrated ({problem}) and holds {runs} runs: back it up, "
                                  f"{_repair_hint(problem)}then run 'mlflow db upgrade <this URI>'")
            if unwritable:
                raise _error(uri, f"the database is half-migrated ({problem}) and cannot be rebuilt: {unwritable}")
            _log.warning("metadata store %s: rebuilding a half-created store that holds no runs (%s)",
                         mask_uri(uri), problem)
        elif unwritable:
            raise _error(uri, f"{unwritable}; the store cannot be created")
        _build(uri, path)
    return None


def _unwritable(folder: str, path: str) -> str | None:
    # os.access also answers for root, which no mode bits stop, on a read-only mount (EROFS).
    if not os.access(folder, os.W_OK):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        return "the folder is read-only" if read_only else "the folder is not writable (permission denied)"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the database file is read-only"
    return None


def _remove_leftovers(path: str) -> None:
    """Temporary databases of creators that died (we hold the lock: no live one exists)."""
    for leftover in glob.glob(glob.escape(path) + _TEMP + "*"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)


def _inspect(uri: str, path: str) -> tuple[str, int]:
    """What is wrong with the database's schema ("" if nothing), and how many runs it holds."""
    try:
        con = sqlite3.connect(path, timeout=20)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revisions = ([r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
                         if "alembic_version" in tables else [])
            problems = []
            stray = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
            if stray:
                problems.append("leftover migration table " + ", ".join(stray))
            head = _head_revision()
            if revisions != [head]:
                problems.append(f"schema revision {', '.join(revisions) or 'missing'}, this MLflow expects {head}")
            runs = 0
            if problems and "runs" in tables:  # counted only when it decides something
                runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise _error(uri, "the file is not an SQLite database (move it away and a new store is created)") from None
        raise _error(uri, _cause_text(exc, os.path.dirname(path))) from None
    return "; ".join(problems), runs


def _repair_hint(problem: str) -> str:
    if "leftover migration table" not in problem:
        return ""
    tables = problem.split("leftover migration table ", 1)[1].split(";", 1)[0]
    return f"drop {tables} (sqlite3 <file> 'DROP TABLE <name>'), "


@functools.cache
def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _build(uri: str, path: str) -> None:
    """MLflow migrates a new database in a temporary file, which then replaces ``path``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from sluice.orchestration.runtime.mlflow import quiet_mlflow

    folder = os.path.dirname(path)
    temp = f"{path}{_TEMP}{os.getpid()}-{secrets.token_hex(4)}"
    temp_uri = roots.sqlite_uri(temp)
    artifact_root = roots.file_uri(os.path.join(folder, "mlflow-artifacts"))
    try:
        if not _copy_template(temp, artifact_root):
            store = SqlAlchemyStore(temp_uri, artifact_root)
            store.engine.dispose()  # its file is about to be renamed: no connection may outlive it
            getattr(SqlAlchemyStore, "_engine_map", {}).pop(temp_uri, None)
            _keep_template(temp)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for side in _SIDE_FILES:  # an old database's hot journal would be replayed into the new one
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + side)
        os.replace(temp, path)
        _fsync_folder(folder)
    except Exception as exc:
        for name in (temp, *(temp + side for side in _SIDE_FILES)):
            with contextlib.suppress(OSError):
                os.remove(name)
        raise _error(uri, "creating the store failed: " + _cause_text(exc, folder)) from None
    finally:
        quiet_mlflow()  # alembic's configuration resets log levels


def _template_path() -> str:
    """Where a new, empty store of this MLflow version and schema revision is kept for copying."""
    import mlflow

    from sluice.orchestration.object_store import cache_dir

    return os.path.join(cache_dir(), "stores", f"mlflow-{mlflow.__version__}-{_head_revision()}.db")


def _copy_template(temp: str, artifact_root: str) -> bool:
    """A new store at ``temp`` copied from the kept empty one (MLflow's migrations take seconds), with
    its default experiment where MLflow would put it; False (nothing left at ``temp``) when there is
    no usable copy."""
    import time

    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    template = _template_path()
    if not os.path.exists(template):
        return False
    now = int(time.time() * 1000)
    try:
        shutil.copyfile(template, temp)
        con = sqlite3.connect(temp)
        try:
            with con:
                con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                            "WHERE experiment_id = 0",
                            (append_to_uri_path(resolve_uri_if_local(artifact_root), "0"), now, now))
        finally:
            con.close()
        if _inspect(roots.sqlite_uri(temp), temp)[0] == "":
            return True
    except Exception as exc:  # noqa: BLE001 - a broken copy (disk, sqlite, a bad file): migrate as without one
        _log.debug("store template %s not used: %s", template, exc)
    for name in (temp, *(temp + side for side in _SIDE_FILES)):
        with contextlib.suppress(OSError):
            os.remove(name)
    return False


def _keep_template(migrated: str) -> None:
    """Keeps a copy of a store MLflow just migrated (best effort: an unwritable cache only costs time)."""
    template = _template_path()
    staging = f"{template}{_TEMP}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.makedirs(os.path.dirname(template), exist_ok=True)
        shutil.copyfile(migrated, staging)
        os.replace(staging, template)
    except OSError as exc:
        _log.debug("store template %s not kept: %s", template, exc)
        with contextlib.suppress(OSError):
            os.remove(staging)


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- failures as one line ----------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _strerror(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def known_cause(exc: BaseException, folder: str | None = None) -> str | None:
    """One line for a failure that is the environment's (disk, permissions, network), else None."""
    errnos = {e.errno for e in _chain(exc) if isinstance(e, OSError)}
    text = " ".join(str(e) for e in _chain(exc)).lower()
    if errno.ENOSPC in errnos or "database or disk is full" in text or "no space left" in text:
        return "the disk is full" + (f" (no space left in {folder})" if folder else "")
    if errno.EFBIG in errnos or "file too large" in text:
        return "the database file may not grow (file too large: a file size limit)"
    if "disk i/o error" in text:  # SQLite's word for a failed write (a full disk, EFBIG, a failing disk)
        if folder and _nearly_full(folder):
            return f"the disk is full (no space left in {folder})"
        return "a disk I/O error (the disk may be full, over a file size limit, or failing)"
    if errno.EROFS in errnos or "readonly database" in text or "read-only file system" in text:
        return "the store is read-only (attempt to write a read-only database)"
    if errno.EACCES in errnos or "permission denied" in text:
        return "permission denied"
    if "unable to open database file" in text:
        return "cannot open the database file"
    answered = re.search(r"api request to endpoint (\S+) failed with error code (\d+)", text)
    if answered:  # MLflow's words for a reply that is not an MLflow error document
        return _http_cause(int(answered.group(2)), answered.group(1))
    if "connection refused" in text:
        return "the tracking server refused the connection (is it running?)"
    if any(s in text for s in ("max retries exceeded", "newconnectionerror", "name or service not known",
                               "remotedisconnected", "connection reset", "connection aborted")):
        return "cannot reach the tracking server"
    return None


def _http_cause(code: int, endpoint: str) -> str:
    if code in (401, 403):
        return f"the tracking server refused the credentials (HTTP {code})"
    if code in (404, 405, 501):
        return f"not an MLflow tracking server (HTTP {code} for {endpoint})"
    return f"the tracking server answered HTTP {code} for {endpoint}"


def _cause_text(exc: BaseException, folder: str | None) -> str:
    cause = known_cause(exc, folder)
    if cause:
        return cause
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:300]


def _nearly_full(folder: str) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20
