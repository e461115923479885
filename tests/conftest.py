import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "orchestration" / "fixtures"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Importing tensorflow_transform (the oracle some tests use in-process) sets TF_USE_LEGACY_KERAS=1
# when it is unset, which turns every later ``tf.keras`` in this process, and in every child
# process (``sluice run``), into Keras 2. Sluice runs on Keras 3; tensorflow_transform uses the
# tf_keras package directly either way.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")


class _RepoFoldersAreNotPackages:
    """Pytest puts the repository root on ``sys.path``, where ``components/`` would import as a
    top-level package beside the installed ``sluice.components``: a second copy of every module.
    Code and tests import ``sluice.*``; this finder makes the old names fail loudly."""

    NAMES = {"components", "orchestration", "pipelines", "schemas"}

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.NAMES and path is None:
            origin = REPO / fullname.partition(".")[0]
            raise ModuleNotFoundError(
                f"No module named {fullname!r} here: {origin} is sluice.{fullname}; import it so", name=fullname)
        return None


sys.meta_path.insert(0, _RepoFoldersAreNotPackages())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def toy_workspace(tmp_path):
    """A folder with the toy pipeline's data file and module file."""
    (tmp_path / "numbers.txt").write_text("1 2 3\n")
    (tmp_path / "toy_module.py").write_text("def transform(v):\n    return v + 1\n")
    return tmp_path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` process on loopback, over its own SQLite file."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    # The server keeps its own copy of the log's descriptor.
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{root}/server.db",
             "--default-artifact-root", str(root / "artifacts"), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not start")
    yield url
    _stop_group(proc)


def _stop_group(proc):
    """Stops a server and every worker it started (its own process group)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for(url: str, proc: subprocess.Popen, log: Path, what: str, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.5)
    _stop_group(proc)
    raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")


def _as_unprivileged() -> list[str]:
    """A command prefix that drops root: PostgreSQL refuses to run as root (CI runs as root)."""
    if os.getuid() != 0:
        return []
    import pwd

    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 on a free loopback port, its data in a fresh folder; yields a database URI.

    The folder lives under the system temporary folder, not pytest's (that one is private to
    root, and the server may run as ``nobody``).
    """
    import shutil
    import signal
    import tempfile

    import psycopg2

    base = Path(tempfile.mkdtemp(prefix="sluice-postgres-"))
    prefix = _as_unprivileged()
    if prefix:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
    data = base / "data"
    subprocess.run([*prefix, "/usr/local/bin/initdb", "-D", str(data), "-U", "sluice", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    log_path = base / "postgres.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*prefix, "/usr/local/bin/postgres", "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
             "-k", str(base), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="sluice", dbname="postgres")
            break
        except psycopg2.OperationalError:
            if proc.poll() is not None or time.time() > deadline:
                _stop_group(proc)
                raise RuntimeError(f"postgres did not start: {log_path.read_text()[-2000:]}") from None
            time.sleep(0.3)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("CREATE DATABASE mlflow")
    conn.close()
    # psycopg2 named explicitly: SQLAlchemy 2 would pick psycopg 3, which is not installed.
    yield f"postgresql+psycopg2://sluice@127.0.0.1:{port}/mlflow"
    proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def team_server(tmp_path_factory, postgres):
    """The README's team setup: `mlflow server` over PostgreSQL, serving artifacts from its own folder.

    Yields ``(url, artifacts folder)``. Clients upload artifacts through the server
    (``mlflow-artifacts:`` URIs), as they would from another machine.
    """
    root = tmp_path_factory.mktemp("team-server")
    port = free_port()
    log_path = root / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", postgres, "--artifacts-destination", str(root / "artifacts"),
             "--workers", "2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    url = f"http://127.0.0.1:{port}"
    _wait_for(url + "/health", proc, log_path, "mlflow server over postgres")
    yield url, root / "artifacts"
    _stop_group(proc)


class PenguinGolden:
    """One completed ``sluice run penguin --pipeline-root <ws>/root --json`` (run in ``<ws>``), kept aside.

    Its artifact URIs are absolute, so the saved root is only valid at ``<ws>/root``:
    ``checkout()`` puts it back there, undoing whatever the previous user of the run did.
    """

    def __init__(self, ws: Path, saved: Path, doc: dict, stderr: str):
        self.ws, self.root, self.saved, self.doc, self.stderr = ws, ws / "root", saved, doc, stderr
        self.cwd_entries = sorted(os.listdir(ws))  # what the run left in its working folder

    def checkout(self) -> Path:
        restore(self.saved, self.root)
        return self.root


@pytest.fixture(scope="session")
def penguin_golden(tmp_path_factory) -> PenguinGolden:
    """The full penguin run that the crash-safety tests and tests/pipelines/test_penguin.py start from:
    one run for the session instead of one per module."""
    ws = tmp_path_factory.mktemp("penguin")
    temp = tmp_path_factory.mktemp("penguin-tmpdir")  # what the run leaves in its temp folder
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)}
    for name in ("MLFLOW_TRACKING_URI", "SLUICE_PIPELINE_ROOT", "SLUICE_FAULT"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "run", "penguin", "--pipeline-root",
                           str(ws / "root"), "--json"], capture_output=True, text=True, cwd=ws, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = tmp_path_factory.mktemp("penguin-golden") / "root"
    shutil.copytree(ws / "root", saved, symlinks=True)
    golden = PenguinGolden(ws, saved, json.loads(proc.stdout), proc.stderr)
    golden.temp_entries = sorted(os.listdir(temp))
    return golden


def restore(saved: Path, root: Path) -> None:
    """Puts the pipeline root saved at ``saved`` back at ``root``.

    The database file is overwritten in place: MLflow keeps a pooled connection
    per tracking URI in this process, which would go on reading a replaced
    (deleted) file.
    """
    db = root / "metadata.db"
    if root.exists():
        for entry in root.iterdir():
            if entry != db:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    shutil.copytree(saved, root, symlinks=True, dirs_exist_ok=True)


def pytest_collection_modifyitems(session, config, items):
    """When TFDV parity tests are collected, the TFDV side venv (minutes of pip the first time) is
    built in a child process from the start, beside the tests before them; the parity tests wait
    for it on the build's lock (``tfdv_env.ensure_tfdv_venv``)."""
    from tests.oracle import tfdv_env

    if not any("tfdv_parity" in item.nodeid for item in items) or tfdv_env._is_ready(tfdv_env.venv_dir()):
        return
    subprocess.Popen([sys.executable, "-m", "tests.oracle.tfdv_env"], cwd=Path(__file__).resolve().parents[1],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def start_at_module_start(request, fixture: str) -> None:
    """Starts ``fixture`` (a module fixture running in the background) when the module starts, if a
    selected test of the module uses it (that test comes last in its module and waits for it)."""
    if any(item.module is request.module and fixture in item.fixturenames for item in request.session.items):
        request.getfixturevalue(fixture)
