"""Worker processes a component starts (``ExecutionContext.run_workers``): one TensorFlow cluster.

The contract, whoever launches them: each of ``count`` workers runs ``entry`` (``"package.module:
function"``, as ``ExecutionContext.process_command`` takes it) called with ``[REQUEST.json,
RESULT.json]``, with TF_CONFIG in its environment naming the cluster (``{"worker": [...]}``) and its
own index; the function writes its result (a JSON object; one with an ``"error"`` key is a failed
worker) and returns its exit status. The launcher hands back each worker's result, in index order,
or why there is none (with where its log is).

Without a runner's launcher, the workers are processes on this machine, on free loopback ports,
started with ``process_command`` (so the runner prepares them as its own processes). A runner
whose workers live elsewhere installs its launcher for the process it runs components in
(Kubeflow: a TFJob, see ``orchestration.kubeflow_jobs``) through ``orchestration.runtime.processes``;
components never know which.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

# After one worker fails, how long the others get to finish before they are stopped (they
# may be blocked in a collective that will never complete).
FAILURE_GRACE_SECONDS = 20.0


@dataclasses.dataclass
class WorkerResult:
    """One worker's result: what it wrote, or None and why (naming where its log is)."""

    result: dict[str, Any] | None
    problem: str = ""


# The launcher a runner installed for this process (at most one; see the module docstring).
_LAUNCHER: list[Callable[..., list[WorkerResult]]] = []


def install_launcher(launcher: Callable[..., list[WorkerResult]] | None) -> Callable | None:
    """Makes ``launcher(ctx, entry, request, count, warm_imports)`` start this process's workers
    (None: local processes again); returns the one it replaces. Runners call it, components never."""
    previous = _LAUNCHER[0] if _LAUNCHER else None
    _LAUNCHER.clear()
    if launcher is not None:
        _LAUNCHER.append(launcher)
    return previous


def launch(ctx, entry: str, request: dict[str, Any], count: int,
           warm_imports: tuple[str, ...]) -> list[WorkerResult]:
    """Runs the workers with the installed launcher, else as local processes."""
    if _LAUNCHER:
        return _LAUNCHER[0](ctx, entry, request, count, warm_imports)
    return run_local(ctx, entry, request, count, warm_imports)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_local(ctx, entry: str, request: dict[str, Any], count: int,
              warm_imports: tuple[str, ...]) -> list[WorkerResult]:
    """``count`` processes on loopback; their folder (request, results, logs) is removed when all succeeded."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    folder = tempfile.mkdtemp(prefix="sluice-workers-")
    request_path = os.path.join(folder, "request.json")
    with open(request_path, "w") as out:
        json.dump(request, out)
    command = ctx.process_command(entry, warm_imports)
    processes = []
    for index in range(count):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        log = open(os.path.join(folder, f"worker-{index}.log"), "wb")  # noqa: SIM115 - closed below
        processes.append((subprocess.Popen(  # noqa: S603 - the runner's own command line
            [*command, request_path, os.path.join(folder, f"result-{index}.json")],
            stdout=log, stderr=subprocess.STDOUT, env=env), log))
    try:
        _wait(processes)
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    results = [_local_result(folder, index) for index in range(count)]
    if all(r.result is not None and "error" not in r.result for r in results):
        shutil.rmtree(folder, ignore_errors=True)  # kept when a worker failed: its log is named
    return results


def _wait(processes) -> None:
    """Waits for every worker; once one has failed, gives the rest ``FAILURE_GRACE_SECONDS``."""
    failed_at = None
    while any(process.poll() is None for process, _ in processes):
        if failed_at is None and any(process.poll() not in (None, 0) for process, _ in processes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_SECONDS:
            return
        time.sleep(0.2)


def read_result(path: str) -> dict[str, Any] | None:
    """A worker's result file, or None when it wrote none (or half of one)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _local_result(folder: str, index: int) -> WorkerResult:
    result = read_result(os.path.join(folder, f"result-{index}.json"))
    if result is not None:
        return WorkerResult(result)
    log = os.path.join(folder, f"worker-{index}.log")
    with open(log, "rb") as fh:
        lines = [line for line in fh.read().decode("utf-8", "replace").splitlines() if line.strip()]
    last = lines[-1][:300] if lines else "no output"
    return WorkerResult(None, f"the worker process ended without a result ({last}); its log: {log}")
