"""Beam's portable runner on loopback: a local job server and an external worker pool, as processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import _stop_group, free_port

HERE = Path(__file__).resolve().parent


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    _stop_group(proc)
    raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")


def _start(args: list[str], port: int, log: Path, what: str, env=None) -> subprocess.Popen:
    with open(log, "w") as out:  # the process keeps its own copy of the descriptor
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _wait_for_port(port, proc, log, what)
    return proc


@contextlib.contextmanager
def worker_pool_at(folder: Path):
    """Beam's external worker pool on 127.0.0.1 (each SDK worker it starts is a process); its port.

    Each worker boots as in Beam's SDK container (``boot.py``): with the job's pipeline options."""
    port = free_port()
    boot = folder / "boot"
    boot.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "boot.py"}" "$@"\n')
    boot.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    pool = _start([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}",
                   f"--container_executable={boot}"],
                  port, folder / "worker_pool.log", "Beam worker pool", env=env)
    try:
        yield port
    finally:
        _stop_group(pool)


@contextlib.contextmanager
def job_server_at(logs: Path, pool_port: int, command: list[str] | None = None,
                  extra: tuple[str, ...] = ("--direct_num_workers=2",)):
    """A Beam job server on loopback running jobs on the pool at ``pool_port``; the PortableRunner's
    options (``extra`` added). By default ``job_server.py``, two SDK workers a job."""
    command = command or [sys.executable, str(HERE / "job_server.py")]
    port = free_port()
    jobs = _start([*command, f"--port={port}"], port, logs / "job_server.log", "Beam job server")
    try:
        yield [
            "--runner=PortableRunner", f"--job_endpoint=localhost:{port}",
            "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}", *extra,
        ]
    finally:
        _stop_group(jobs)


@pytest.fixture(scope="session")
def worker_pool(tmp_path_factory):
    with worker_pool_at(tmp_path_factory.mktemp("worker-pool")) as port:
        yield port


@pytest.fixture(scope="session")
def portable_runner(worker_pool, tmp_path_factory):
    """Beam options for the PortableRunner on loopback, two SDK workers per job: the job server is
    ``job_server.py`` (Beam's, with the job's worker count passed on to its runner)."""
    with job_server_at(tmp_path_factory.mktemp("job-server"), worker_pool) as options:
        yield options


@pytest.fixture(scope="session")
def beams_own_portable_runner(worker_pool, tmp_path_factory):
    """Beam options for the PortableRunner on Beam's own local job server, unchanged (one SDK worker a job)."""
    command = [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main"]
    with job_server_at(tmp_path_factory.mktemp("beam-job-server"), worker_pool, command, extra=()) as options:
        yield options
