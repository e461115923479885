import os
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
