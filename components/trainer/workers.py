"""Multi-worker training: the Trainer's training run in several worker processes.

With ``distribution="multi_worker"``, ``num_workers`` > 1 and no cluster given (no
``cluster_spec``, no TF_CONFIG), the Trainer asks its runner for ``num_workers`` workers
(``ExecutionContext.run_workers``: processes on loopback with the local runner, a TFJob's
replicas on Kubeflow), each with a TF_CONFIG naming the cluster and its task index, and waits for
them. Each worker trains with ``MultiWorkerMirroredStrategy`` from its start (TensorFlow
configures collectives only before its runtime starts, which the runner's process may already
have done); worker 0 is the chief and writes the model into the Trainer's outputs, the others
into scratch folders. A worker that fails stops the others; its one-line error names it.

Each worker runs ``main([REQUEST.json, RESULT.json])`` of this module; its output and any
traceback go to its log, which a failure's message names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import traceback
from typing import Any

from sluice.components.artifacts import Artifact, Examples, Model, ModelRun, Schema, TransformGraph
from sluice.components.sdk import ComponentError, ExecutionContext

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


def launches_workers(distribution: str, cluster_spec: dict | None, num_workers: int) -> bool:
    """Whether the Trainer starts its own workers; a one-line error for settings that clash."""
    if num_workers < 1:
        raise ComponentError(f"Trainer: parameter 'num_workers' must be at least 1, got {num_workers}")
    if num_workers == 1:
        return False
    if distribution != "multi_worker":
        raise ComponentError(f"Trainer: parameter 'num_workers' is {num_workers}, which needs "
                             f"distribution='multi_worker' (got {distribution!r})")
    if cluster_spec is not None or os.environ.get("TF_CONFIG"):
        raise ComponentError("Trainer: parameter 'num_workers' starts the Trainer's own workers; give it, or a "
                             "cluster (parameter 'cluster_spec' or TF_CONFIG), not both")
    return True


def run_workers(call: TrainingCall, num_workers: int, ctx: ExecutionContext) -> dict[str, Any]:
    """Trains with ``num_workers`` workers; the chief's result (replicas, final metrics)."""
    results = ctx.run_workers(f"{__name__}:main", call.to_json(), num_workers, ("tensorflow",))
    for index, worker in enumerate(results):
        where = f"Trainer (worker {index} of {num_workers})"
        if worker.result is None:
            raise ComponentError(f"{where}: {worker.problem}")
        if "error" in worker.result:
            raise ComponentError(worker.result["error"].replace("Trainer: ", f"{where}: ", 1))
    return results[0].result


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

