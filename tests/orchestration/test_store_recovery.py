"""The SQLite store survives kills and full disks, and store failures read as one line, at once.

Read-only and full file systems are real: a tmpfs (or a read-only bind mount) in a private
mount namespace (``unshare -m``), so nothing leaks into the host. Root ignores mode bits, so
``chmod`` would prove nothing here. The scenarios that need a mount run this file as a script
inside the namespace and report what they saw as JSON.
"""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sluice.orchestration.metadata import EXECUTED, MetadataStore, StoreError, default_tracking_uri
from tests.conftest import REPO, free_port

QUICK = 10.0  # seconds a store failure may take to be reported


def _env():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _mount_problem():
    """Why private tmpfs mounts are impossible here (None when they work)."""
    try:
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && umount $d && rmdir $d"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare/mount unavailable: {exc}"
    return None if proc.returncode == 0 else f"cannot mount a tmpfs (needs root): {proc.stderr.strip()[:200]}"


MOUNT_PROBLEM = _mount_problem()
needs_mount = pytest.mark.skipif(MOUNT_PROBLEM is not None, reason=str(MOUNT_PROBLEM))


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """A complete store holding one pipeline run, copied where a test needs one (a migration is slow)."""
    root = tmp_path_factory.mktemp("template")
    _record_run(MetadataStore(default_tracking_uri(str(root))))
    return root / "metadata.db"


def _store_with_a_run(root, template):
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, root / "metadata.db")
    return default_tracking_uri(str(root))


def _scenario(name, folder, template, timeout=240):
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, __file__, name, str(folder),
                           str(template)],
                          capture_output=True, text=True, env=_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _record_run(store, pipeline="p"):
    run_id = store.start_pipeline_run(pipeline)
    store.end_pipeline_run(run_id, EXECUTED, seconds=0.5)
    return run_id


def _failure(fn):
    """(the StoreError's text, seconds taken) of a call that must fail."""
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        fn()
    return str(info.value), time.monotonic() - start


def _one_quick_line(text, seconds, pattern):
    import re

    assert "\n" not in text and re.search(pattern, text), text
    assert seconds < QUICK, f"{seconds:.1f} s: {text}"


def _head(db):
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
    finally:
        con.close()


# -- kills and half-migrated databases ------------------------------------------------------

KILL_CHILD = """
import sys
from sluice.orchestration.metadata import MetadataStore, default_tracking_uri
import mlflow.store.tracking.sqlalchemy_store  # imports done before the clock starts
print("ready", flush=True)
MetadataStore(default_tracking_uri(sys.argv[1]))
print("done", flush=True)
"""


@pytest.mark.slow
def test_a_kill_during_store_creation_never_needs_hand_repair(tmp_path):
    landed = None
    for attempt in range(12):
        root = tmp_path / f"root{attempt}"
        # An empty cache: no kept store to copy, so MLflow migrates (and the kill can land inside).
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(root)], stdout=subprocess.PIPE, text=True,
                                 env={**_env(), "SLUICE_CACHE_DIR": str(tmp_path / f"cache{attempt}")})
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.1 + 0.25 * attempt)
        child.send_signal(signal.SIGKILL)
        child.wait()
        left = sorted(p.name for p in root.glob("metadata.db*"))
        if any(".creating-" in name for name in left):
            landed = root
            break
    assert landed is not None, "no kill landed inside the migration"
    assert not (landed / "metadata.db").exists()  # never a half-made store under the real name
    store = MetadataStore(default_tracking_uri(str(landed)))
    _record_run(store)
    assert [r.status for r in store.list_pipeline_runs("p")] == [EXECUTED]
    assert sorted(p.name for p in landed.iterdir() if p.name.startswith("metadata.db")) == ["metadata.db"]


def _legacy_half_migrated(db, stray_table):
    """What a kill inside MLflow's own migration of metadata.db left (as older versions created it)."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    InitialBase.metadata.create_all(engine)  # before alembic ran: no revision at all
    if stray_table:
        with engine.begin() as con:
            con.execute(sqlalchemy.text(f"CREATE TABLE {stray_table} (key VARCHAR(250))"))
    engine.dispose()


def _schema_and_default_experiment(db):
    con = sqlite3.connect(db)
    try:
        schema = sorted(r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        location = con.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()[0]
    finally:
        con.close()
    return schema, location


def test_new_stores_are_copies_of_a_kept_migrated_one_and_a_broken_copy_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path / "cache"))
    MetadataStore(default_tracking_uri(str(tmp_path / "a")))  # migrated by MLflow; a copy is kept
    (template,) = (tmp_path / "cache" / "stores").glob("mlflow-*.db")
    second = MetadataStore(default_tracking_uri(str(tmp_path / "b")))
    schema_a, location_a = _schema_and_default_experiment(tmp_path / "a" / "metadata.db")
    schema_b, location_b = _schema_and_default_experiment(tmp_path / "b" / "metadata.db")
    assert schema_b == schema_a
    assert location_b == location_a.replace(str(tmp_path / "a"), str(tmp_path / "b")) != location_a
    run_id = _record_run(second)
    assert [r.id for r in second.list_pipeline_runs("p")] == [run_id]

    template.write_bytes(b"not a database")
    third = MetadataStore(default_tracking_uri(str(tmp_path / "c")))
    assert _record_run(third)
    # Replaced by a good copy. (Two migrations in one process may word a table's SQL differently.)
    assert _schema_and_default_experiment(template)[0] == _schema_and_default_experiment(
        tmp_path / "c" / "metadata.db")[0]
    assert _head(template) == _head(tmp_path / "a" / "metadata.db")
    assert not list(tmp_path.glob("c/*.creating-*"))


@pytest.mark.parametrize("stray", ["", "_alembic_tmp_params"])
def test_a_half_migrated_store_without_runs_is_rebuilt(tmp_path, stray):
    _legacy_half_migrated(tmp_path / "metadata.db", stray)
    (tmp_path / "metadata.db-journal").write_bytes(b"")  # a stale journal must not be replayed
    store = MetadataStore(default_tracking_uri(str(tmp_path)))
    _record_run(store)
    assert len(store.list_pipeline_runs("p")) == 1
    assert len(_head(tmp_path / "metadata.db")) == 1


def test_a_half_migrated_store_with_runs_is_reported_not_touched(tmp_path, template_db):
    uri = _store_with_a_run(tmp_path, template_db)
    db = tmp_path / "metadata.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE _alembic_tmp_params (key VARCHAR(250))")
    before = db.read_bytes()
    text, seconds = _failure(lambda: MetadataStore(uri))
    _one_quick_line(text, seconds, r"metadata store sqlite:///.*metadata\.db: the database is half-migrated "
                                   r"\(leftover migration table _alembic_tmp_params\) and holds 1 runs: back it up, "
                                   r"drop _alembic_tmp_params .*mlflow db upgrade")
    assert db.read_bytes() == before


def test_a_file_that_is_not_a_database_is_left_alone(tmp_path):
    (tmp_path / "metadata.db").write_text("my notes\n" * 100)
    text, seconds = _failure(lambda: MetadataStore(default_tracking_uri(str(tmp_path))))
    _one_quick_line(text, seconds, r"metadata\.db: the file is not an SQLite database")
    assert (tmp_path / "metadata.db").read_text().startswith("my notes")


def test_mlflow_settings_leave_a_users_values_and_other_mlflow_versions_alone(monkeypatch):
    from sluice.orchestration.runtime import mlflow as runtime_mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", raising=False)
    runtime_mlflow.quiet_mlflow()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] == "0.5"
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
    monkeypatch.setattr(runtime_mlflow, "_mlflow_version", lambda: "4.0.0")
    runtime_mlflow.quiet_mlflow()
    assert "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER" not in os.environ


# -- unreachable servers -------------------------------------------------------------------


def test_a_dead_tracking_port_is_one_line_at_once():
    port = free_port()
    text, seconds = _failure(lambda: MetadataStore(f"http://user:secret@127.0.0.1:{port}"))
    _one_quick_line(text, seconds, rf"metadata store http://user:\*\*\*@127\.0\.0\.1:{port}: "
                                   rf"cannot connect to 127\.0\.0\.1:{port} \(connection refused\)")


def test_a_token_in_the_tracking_uris_query_is_refused_with_the_way_to_give_it(mlflow_server):
    text, seconds = _failure(lambda: MetadataStore(f"{mlflow_server}/?token=s3cr3t"))
    _one_quick_line(text, seconds, r"metadata store http://127\.0\.0\.1:\d+/\?token=\*\*\*: a tracking server URI "
                                   r"cannot carry a query or fragment; give a token in MLFLOW_TRACKING_TOKEN instead")


def test_a_web_server_that_is_not_mlflow_is_named_in_one_line(tmp_path):
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        text, seconds = _failure(lambda: MetadataStore(url).start_pipeline_run("toy"))
    finally:
        server.shutdown()
    _one_quick_line(text, seconds, rf"metadata store {re.escape(url)}: not an MLflow tracking server "
                                   r"\(HTTP 404 for /api/2\.0/mlflow/")


def test_a_server_that_hangs_up_mid_run_is_one_line_within_seconds():
    """The port answers (so opening works) but every request is dropped: MLflow's and our retries are bounded."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        store = MetadataStore(f"http://127.0.0.1:{port}")
        text, seconds = _failure(lambda: store.start_pipeline_run("p"))
    finally:
        listener.close()
    _one_quick_line(text, seconds, rf"metadata store http://127\.0\.0\.1:{port}: cannot reach the tracking server")


def test_cli_reports_a_dead_tracking_server_in_one_line(tmp_path):
    port = free_port()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "runs", "list", "--tracking-uri",
                           f"http://127.0.0.1:{port}"], capture_output=True, text=True, env=_env(), timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0] == f"error: metadata store http://127.0.0.1:{port}: cannot connect to 127.0.0.1:{port} " \
                       "(connection refused)"
    assert time.monotonic() - start < 60  # the interpreter's imports included; was 72 s before


def test_cli_reports_a_half_migrated_store_with_runs_in_one_line(tmp_path, template_db):
    _store_with_a_run(tmp_path, template_db)
    with sqlite3.connect(tmp_path / "metadata.db") as con:
        con.execute("UPDATE alembic_version SET version_num = 'abc123'")
    proc = subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "runs", "list", "--pipeline-root",
                           str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: metadata store sqlite:///") and "holds 1 runs" in lines[0], lines[0]
    assert "schema revision abc123, this MLflow expects" in lines[0]


# -- read-only and full file systems (in a private mount namespace) -------------------------


@needs_mount
def test_a_read_only_root_is_one_line_at_once_and_still_readable(tmp_path, template_db):
    seen = _scenario("read_only_root", tmp_path / "mnt", template_db)
    _one_quick_line(seen["write_error"], seen["write_seconds"], r"metadata\.db: the folder is read-only$")
    assert seen["runs_listed"] == 1  # reading a read-only store still works
    _one_quick_line(seen["create_error"], seen["create_seconds"],
                    r"metadata\.db: the folder is read-only; the store cannot be created$")
    _one_quick_line(seen["missing_error"], seen["missing_seconds"],
                    r"a/b/metadata\.db: cannot create the folder .*/mnt/a/b \(read-only file system\)$")


@needs_mount
def test_an_unwritable_store_file_is_one_line_at_once(tmp_path, template_db):
    seen = _scenario("unwritable_store", tmp_path / "mnt", template_db)
    _one_quick_line(seen["error"], seen["seconds"], r"metadata\.db: the database file is read-only$")


@needs_mount
def test_a_full_disk_while_creating_the_store_leaves_nothing_to_repair(tmp_path, template_db):
    seen = _scenario("full_while_creating", tmp_path / "mnt", template_db)
    _one_quick_line(seen["error"], seen["seconds"], r"metadata\.db: creating the store failed: the disk is full")
    assert seen["left"] == []
    assert seen["runs_after_space_freed"] == 1


LIMITED_CHILD = """
import resource, signal, sys, time
from sluice.orchestration.metadata import MetadataStore, StoreError, default_tracking_uri
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))  # less than an empty store needs
start = time.monotonic()
try:
    MetadataStore(default_tracking_uri(sys.argv[1]))
except StoreError as exc:
    print(f"{time.monotonic() - start:.2f} {exc}")
"""


@pytest.mark.slow
def test_a_file_size_limit_while_creating_the_store_leaves_nothing_to_repair(tmp_path):
    """The same as a full disk where no tmpfs can be mounted: writes fail (EFBIG) part-way."""
    out = subprocess.run([sys.executable, "-c", LIMITED_CHILD, str(tmp_path)], capture_output=True, text=True,
                         env=_env(), timeout=120).stdout.strip()
    seconds, text = out.split(" ", 1)
    _one_quick_line(text, float(seconds), r"metadata\.db: creating the store failed: "
                                          r"(a disk I/O error \(the disk may be full|the database file may not grow)")
    assert list(tmp_path.iterdir()) == []
    store = MetadataStore(default_tracking_uri(str(tmp_path)))
    _record_run(store)
    assert len(store.list_pipeline_runs("p")) == 1


@needs_mount
def test_a_full_disk_during_a_run_is_one_line_and_the_store_survives(tmp_path, template_db):
    seen = _scenario("full_while_running", tmp_path / "mnt", template_db)
    _one_quick_line(seen["error"], seen["seconds"], r"metadata\.db: the disk is full")
    assert seen["runs_after_space_freed"] == 2


@needs_mount
def test_cli_run_on_a_read_only_root_is_one_line(tmp_path, template_db):
    seen = _scenario("cli_read_only_run", tmp_path / "mnt", template_db)
    assert seen["returncode"] != 0 and len(seen["stderr"]) == 1, seen["stderr"]
    assert seen["stderr"][0].startswith("error: ") and "the folder is read-only" in seen["stderr"][0], seen
    assert seen["seconds"] < 60, seen  # the interpreter's imports included


# -- the scenarios, run as a script inside `unshare -m` ------------------------------------


def _mount(*args):
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _timed_failure(fn):
    start = time.monotonic()
    try:
        fn()
    except StoreError as exc:
        return str(exc), time.monotonic() - start
    raise AssertionError("no StoreError")


def scenario_read_only_root(mnt, template):
    mnt.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt))
    (mnt / "root").mkdir()
    (mnt / "empty").mkdir()
    uri = _store_with_a_run(mnt / "root", template)
    _mount("-o", "remount,ro", str(mnt))
    store = MetadataStore(uri)
    write_error, write_seconds = _timed_failure(lambda: _record_run(store))
    create_error, create_seconds = _timed_failure(lambda: MetadataStore(default_tracking_uri(str(mnt / "empty"))))
    missing_error, missing_seconds = _timed_failure(lambda: MetadataStore(default_tracking_uri(str(mnt / "a" / "b"))))
    return {"write_error": write_error, "write_seconds": write_seconds, "runs_listed": len(store.list_pipeline_runs()),
            "create_error": create_error, "create_seconds": create_seconds,
            "missing_error": missing_error, "missing_seconds": missing_seconds}


def scenario_unwritable_store(mnt, template):
    mnt.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt))
    uri = _store_with_a_run(mnt, template)
    db = str(mnt / "metadata.db")
    _mount("--bind", db, db)
    _mount("-o", "remount,bind,ro", db)
    error, seconds = _timed_failure(lambda: _record_run(MetadataStore(uri)))
    return {"error": error, "seconds": seconds}


def scenario_full_while_creating(mnt, template):
    mnt.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt))  # less than an empty store needs
    uri = default_tracking_uri(str(mnt))
    error, seconds = _timed_failure(lambda: MetadataStore(uri))
    left = sorted(p.name for p in mnt.iterdir())
    _mount("-o", "remount,size=20m", str(mnt))
    store = MetadataStore(uri)
    _record_run(store)
    return {"error": error, "seconds": seconds, "left": left, "runs_after_space_freed": len(store.list_pipeline_runs())}


def scenario_full_while_running(mnt, template):
    mnt.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt))
    uri = _store_with_a_run(mnt, template)
    store = MetadataStore(uri)
    filler = mnt / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    error, seconds = _timed_failure(lambda: [_record_run(store) for _ in range(50)])
    filler.unlink()
    store = MetadataStore(uri)
    _record_run(store)
    runs = [r for r in store.list_pipeline_runs("p") if r.status == EXECUTED]
    return {"error": error, "seconds": seconds, "runs_after_space_freed": len(runs)}


def scenario_cli_read_only_run(mnt, template):
    mnt.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt))
    ws = mnt / "ws"
    ws.mkdir()
    (ws / "numbers.txt").write_text("1 2 3\n")
    (ws / "toy_module.py").write_text("def transform(v):\n    return v + 1\n")
    (ws / "root").mkdir()
    _mount("-o", "remount,ro", str(mnt))
    toy = REPO / "tests" / "orchestration" / "fixtures" / "toy_pipeline.py"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "run", str(toy), "--param",
                           f"data_file={ws / 'numbers.txt'}", "--param", f"module_file={ws / 'toy_module.py'}",
                           "--pipeline-root", str(ws / "root")], capture_output=True, text=True, cwd="/")
    return {"returncode": proc.returncode, "stderr": proc.stderr.strip().splitlines(),
            "seconds": time.monotonic() - start}


if __name__ == "__main__":
    print(json.dumps(globals()["scenario_" + sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))))
