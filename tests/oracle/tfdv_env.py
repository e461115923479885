"""A side virtualenv with real TFDV, used as a reference oracle in parity tests.

TFDV does not install next to Sluice's stack (TF 2.21, Beam 2.77, pyarrow 25),
so the oracle runs in its own interpreter: a virtualenv built once from the
base Python 3.11 and cached at ``~/.cache/sluice/tfdv-venv`` (override with the
environment variable ``SLUICE_TFDV_VENV``). Scripts run there as subprocesses
and exchange files (CSV, Parquet, binary protos) with the test.

Usage from a test (``tests`` is a package, so this import works under pytest)::

    from tests.oracle import tfdv_env

    tfdv_env.require_tfdv()   # builds the venv (minutes, once) or pytest.skip()s
    done = tfdv_env.run_tfdv(tfdv_env.ORACLE_DIR / "tfdv_stats.py", "in.csv", "out.pb")
    assert done.returncode == 0, done.stderr

From a shell (build it ahead of time, e.g. in the background)::

    .venv/bin/python -m tests.oracle.tfdv_env          # prints the venv's python

Oracle scripts here (run them with run_tfdv):
    tfdv_stats.py INPUT OUT.pb [--schema S.pbtxt]   TFDV statistics of a Parquet file/folder
                                  (fed as typed) or a CSV (via pandas); binary proto out.
    tfdv_load_stats.py STATS.pb OUT_DIR              loads our stats with TFDV's loaders, writes
                                  summary.json, the inferred schema.pbtxt and anomalies.pbtxt.

API:
    ensure_tfdv_venv() -> Path    python of the venv; builds it if needed (locked, so
                                  concurrent callers wait for one build); raises
                                  TfdvUnavailable with the pip log tail on failure.
    tfdv_available() -> bool      ensure_tfdv_venv() succeeded (never raises).
    require_tfdv() -> Path        for pytest: ensure_tfdv_venv() or pytest.skip(reason).
    run_tfdv(script, *args, check=False, timeout=1800) -> CompletedProcess
                                  runs ``python script *args`` in the venv, text output
                                  captured; check=True raises CalledProcessError on failure.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Newest TFDV that installs on Python 3.11, with the stack it was built against.
REQUIREMENTS = [
    "tensorflow-data-validation==1.16.1",
    "tensorflow==2.16.2",
    "apache-beam[gcp]==2.61.0",
    "pyarrow==10.0.1",
    "protobuf==4.25.5",
    "numpy<2",
    "pandas<2",
]

ORACLE_DIR = Path(__file__).resolve().parent
_READY_MARKER = ".sluice-tfdv-ready"


class TfdvUnavailable(RuntimeError):
    """The TFDV side environment could not be built."""


def venv_dir() -> Path:
    """Where the side virtualenv lives."""
    override = os.environ.get("SLUICE_TFDV_VENV")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "sluice" / "tfdv-venv"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def base_python() -> str:
    """A Python 3.11 interpreter that is not itself inside a virtualenv."""
    candidates = [getattr(sys, "_base_executable", None), shutil.which("python3.11")]
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
            capture_output=True, text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    raise TfdvUnavailable("no Python 3.11 interpreter found for the TFDV venv (tried sys._base_executable, python3.11)")


def _is_ready(directory: Path) -> bool:
    return (directory / _READY_MARKER).exists() and (directory / "bin" / "python").exists()


def ensure_tfdv_venv() -> Path:
    """Returns the venv's python, building the venv first if it is not there yet."""
    directory = venv_dir()
    if _is_ready(directory):
        return directory / "bin" / "python"
    directory.parent.mkdir(parents=True, exist_ok=True)
    log_path = directory.parent / (directory.name + "-install.log")
    # One build at a time across processes; others wait, then find it ready.
    with open(directory.parent / (directory.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_ready(directory):
            return directory / "bin" / "python"
        if directory.exists():  # a half-built venv from an interrupted build
            shutil.rmtree(directory)
        with open(log_path, "w") as log:
            steps = [
                [base_python(), "-m", "venv", str(directory)],
                [str(directory / "bin" / "python"), "-m", "pip", "install", "--upgrade", "pip"],
                [str(directory / "bin" / "python"), "-m", "pip", "install", *REQUIREMENTS],
                [str(directory / "bin" / "python"), "-c",
                 "import tensorflow_data_validation as t; print('tfdv', t.__version__)"],
            ]
            for step in steps:
                log.write(f"$ {' '.join(step)}\n")
                log.flush()
                result = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
                if result.returncode != 0:
                    tail = log_path.read_text()[-2000:] if log_path.exists() else ""
                    raise TfdvUnavailable(
                        f"building the TFDV venv failed at {' '.join(step[:4])} "
                        f"(log: {log_path}):\n{tail}"
                    )
        (directory / _READY_MARKER).write_text("\n".join(REQUIREMENTS) + "\n")
    return directory / "bin" / "python"


def tfdv_available() -> bool:
    try:
        ensure_tfdv_venv()
        return True
    except TfdvUnavailable:
        return False


def require_tfdv() -> Path:
    """For tests: the venv's python, or a clean ``pytest.skip`` saying why it is missing."""
    import pytest

    try:
        return ensure_tfdv_venv()
    except TfdvUnavailable as exc:
        pytest.skip(f"TFDV oracle venv unavailable: {str(exc).splitlines()[0]}")


def run_tfdv(script_path: str | os.PathLike, *args: str | os.PathLike, check: bool = False,
             timeout: float | None = 1800) -> subprocess.CompletedProcess:
    """Runs ``python script_path *args`` in the TFDV venv (built first if needed).

    stdout/stderr are captured as text. The oracle scripts live in ORACLE_DIR.
    """
    python = ensure_tfdv_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ORACLE_DIR), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [str(python), str(script_path), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=timeout, check=check,
    )


if __name__ == "__main__":
    print(ensure_tfdv_venv())
