"""Multi-worker training on one machine: the Trainer's training run in several processes.

With ``distribution="multi_worker"``, ``num_workers`` > 1 and no cluster given (no
``cluster_spec``, no TF_CONFIG), the Trainer starts ``num_workers`` processes of this module,
each with a TF_CONFIG naming a cluster of that many workers on free loopback ports and its own
task index, and waits for them. Each process trains with ``MultiWorkerMirroredStrategy`` from
its start (TensorFlow configures collectives only before its runtime starts, which the
runner's process may already have done); worker 0 is the chief and writes the model into the
Trainer's outputs, the others into scratch folders. A worker that fails stops the others; its
one-line error names it.

Each worker runs ``main([REQUEST.json, RESULT.json])`` of this module in a process the runner
prepares as its own (``ExecutionContext.process_command``: the Keras workarounds for
distribution strategies are the runner's); its output and any traceback go to a log beside
them, which a failure's message names.
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
import traceback
from typing import Any

from sluice.components.artifacts import Artifact, Examples, Model, ModelRun, Schema, TransformGraph
from sluice.components.sdk import ComponentError, ExecutionContext

# After one worker fails, how long the others get to finish before they are stopped (they
# may be blocked in a collective that will never complete).
FAILURE_GRACE_SECONDS = 20.0
_ARTIFACTS = ("examples", "model", "model_run", "transform_graph", "schema")


@dataclasses.dataclass
class TrainingCall:
    """Everything one training process needs, resolved (artifacts, and values, not store lookups)."""

    examples: Examples
    model: Model
    model_run: ModelRun
    train_steps: int
    module_file: str | None
    run_fn: str | None
    transform_graph: TransformGraph | None
    schema: Schema | None
    eval_steps: int
    custom_config: dict[str, Any] | None
    hyperparameters: dict[str, Any] | None
    base_model_dir: str | None
    distribution: str
    cluster_spec: dict[str, Any] | None
    train_splits: list[str]
    eval_splits: list[str]

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for name in _ARTIFACTS:
            artifact = getattr(self, name)
            values[name] = artifact.to_record() if artifact is not None else None
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainingCall:
        values = dict(values)
        for name in _ARTIFACTS:
            if values[name] is not None:
                values[name] = Artifact.from_record(values[name])
        return cls(**values)


def launches_locally(distribution: str, cluster_spec: dict | None, num_workers: int) -> bool:
    """Whether the Trainer starts its own workers; a one-line error for settings that clash."""
    if num_workers < 1:
        raise ComponentError(f"Trainer: parameter 'num_workers' must be at least 1, got {num_workers}")
    if num_workers == 1:
        return False
    if distribution != "multi_worker":
        raise ComponentError(f"Trainer: parameter 'num_workers' is {num_workers}, which needs "
                             f"distribution='multi_worker' (got {distribution!r})")
    if cluster_spec is not None or os.environ.get("TF_CONFIG"):
        raise ComponentError("Trainer: parameter 'num_workers' starts local workers; give it, or a cluster "
                             "(parameter 'cluster_spec' or TF_CONFIG), not both")
    return True


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_local_workers(call: TrainingCall, num_workers: int, ctx: ExecutionContext) -> dict[str, Any]:
    """Trains with ``num_workers`` processes on loopback; the chief's result (replicas, final metrics)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(num_workers)]}
    folder = tempfile.mkdtemp(prefix="sluice-trainer-workers-")
    request = os.path.join(folder, "request.json")
    with open(request, "w") as out:
        json.dump(call.to_json(), out)
    processes = []
    for index in range(num_workers):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        log = open(os.path.join(folder, f"worker-{index}.log"), "wb")  # noqa: SIM115 - closed below
        command = ctx.process_command(f"{__name__}:main", ("tensorflow",))
        processes.append((subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [*command, request, os.path.join(folder, f"result-{index}.json")],
            stdout=log, stderr=subprocess.STDOUT, env=env), log))
    try:
        _wait(processes)
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    results = [_result(folder, index, num_workers) for index in range(num_workers)]
    shutil.rmtree(folder, ignore_errors=True)  # kept when a worker failed: its log is named
    return results[0]


def _wait(processes) -> None:
    """Waits for every worker; once one has failed, gives the rest ``FAILURE_GRACE_SECONDS``."""
    failed_at = None
    while any(process.poll() is None for process, _ in processes):
        if failed_at is None and any(process.poll() not in (None, 0) for process, _ in processes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_SECONDS:
            return
        time.sleep(0.2)


def _result(folder: str, index: int, count: int) -> dict[str, Any]:
    path = os.path.join(folder, f"result-{index}.json")
    if os.path.isfile(path):
        with open(path) as fh:
            result = json.load(fh)
        if "error" not in result:
            return result
        raise ComponentError(result["error"].replace("Trainer: ", f"Trainer (worker {index} of {count}): ", 1))
    with open(os.path.join(folder, f"worker-{index}.log"), "rb") as fh:
        lines = [line for line in fh.read().decode("utf-8", "replace").splitlines() if line.strip()]
    last = lines[-1][:300] if lines else "no output"
    raise ComponentError(f"Trainer (worker {index} of {count}): the worker process ended without a result "
                         f"({last}); its log: {os.path.join(folder, f'worker-{index}.log')}")


def main(argv: list[str]) -> int:
    """One worker: trains with the call in ``argv[0]`` and writes its result to ``argv[1]``."""
    request, result_path = argv
    with open(request) as fh:
        call = TrainingCall.from_json(json.load(fh))
    try:
        from sluice.components.trainer.component import train

        result = train(call, ExecutionContext())
    except ComponentError as exc:
        traceback.print_exc()  # into the worker's log; the error itself is one line
        result = {"error": str(exc).splitlines()[0]}
    except Exception as exc:  # noqa: BLE001 - reported as the worker's one line
        traceback.print_exc()
        result = {"error": f"Trainer: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"}
    with open(result_path, "w") as out:
        json.dump(result, out)
    return 0 if "error" not in result else 1

