"""The records of the metadata store, and how they are written to and read from MLflow runs.

An execution or pipeline run is one MLflow run; everything Sluice knows of it lies in the
run's tags (names below), params and metrics. ``MetadataStore`` (metadata.py) makes the
calls; this module only translates between those runs and ``Execution``/``PipelineRun``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from typing import Any

from sluice.components.artifacts import Artifact

KIND = "sluice.kind"
PIPELINE = "sluice.pipeline"
NODE_ID = "sluice.component_id"
NODE_TYPE = "sluice.component_type"
STATUS = "sluice.status"
CACHE_KEY = "sluice.cache_key"
INPUTS = "sluice.inputs"
OUTPUTS = "sluice.outputs"
INPUT_IDS = "sluice.input_ids"
OUTPUT_URIS = "sluice.output_uris"
PLANNED = "sluice.planned_outputs"
ERROR = "sluice.error"
SECONDS = "sluice.seconds"
CACHED_FROM = "sluice.cached_from"
HOST = "sluice.host"
PID = "sluice.pid"
PID_START = "sluice.pid_start"
LOG = "sluice.log"
EXTERNAL_ID = "sluice.external_run_id"

# Execution statuses as Sluice reports them.
RUNNING, EXECUTED, CACHED, FAILED, SKIPPED = "running", "executed", "cached", "failed", "skipped"
# Published, but its component stopped what depends on it (``ExecutionContext.block``).
BLOCKED = "blocked"


@dataclasses.dataclass
class Execution:
    """One component execution as recorded in the store."""

    id: str
    pipeline: str
    pipeline_run_id: str
    component_id: str
    component_type: str
    status: str
    parameters: dict[str, str]
    inputs: dict[str, list[Artifact]]
    outputs: dict[str, list[Artifact]]
    cache_key: str
    seconds: float | None
    error: str
    metrics: dict[str, float]
    start_time: int
    cached_from: str = ""
    log: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "component_id": self.component_id,
            "component_type": self.component_type,
            "status": self.status,
            "seconds": self.seconds,
            "error": self.error,
            "cache_key": self.cache_key,
            "cached_from": self.cached_from or None,
            "parameters": self.parameters,
            "metrics": self.metrics,
            "log": self.log or None,
            "inputs": {k: [a.to_record() for a in v] for k, v in self.inputs.items()},
            "outputs": {k: [a.to_record() for a in v] for k, v in self.outputs.items()},
        }


@dataclasses.dataclass
class PipelineRun:
    id: str
    pipeline: str
    status: str
    start_time: int
    seconds: float | None
    error: str
    tags: dict[str, str]


def outcomes(outputs: dict[str, list[Artifact]], status: str) -> list[str]:
    """What an execution's output artifacts say of themselves (``Artifact.summary``), e.g. whether it
    pushed a model; ``status``: the execution's (a cache hit's outputs say so)."""
    cached = status == CACHED
    return [line for arts in outputs.values() for art in arts if (line := art.summary(cached=cached))]


def overall_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """An execution's overall metrics: not its per-slice ones (``<metric>/<slice>``)."""
    return {key: value for key, value in metrics.items() if "/" not in key}


def process_tags() -> dict[str, str]:
    """Which process runs the record: a later run marks it abandoned once that process is gone."""
    return {HOST: socket.gethostname(), PID: str(os.getpid()), PID_START: process_start(os.getpid())}


def execution_tags(pipeline: str, pipeline_run_id: str, component_id: str, component_type: str,
                   status: str) -> dict[str, str]:
    """The tags every execution's run starts with; it is a child of its pipeline run's."""
    return {KIND: "execution", PIPELINE: pipeline, NODE_ID: component_id, NODE_TYPE: component_type,
            STATUS: status, "mlflow.parentRunId": pipeline_run_id}


def input_tags(inputs: dict[str, list[Artifact]]) -> dict[str, str]:
    ids = [a.id for arts in inputs.values() for a in arts if a.id]
    return {
        INPUTS: json.dumps({k: [a.to_record() for a in v] for k, v in inputs.items()}),
        INPUT_IDS: "," + ",".join(ids) + ",",
    }


def output_tags(outputs: dict[str, list[Artifact]]) -> dict[str, str]:
    uris = [a.uri.rstrip("/") for arts in outputs.values() for a in arts]
    return {
        OUTPUTS: json.dumps({k: [a.to_record() for a in v] for k, v in outputs.items()}),
        OUTPUT_URIS: "\n".join(uris),
    }


def to_pipeline_run(run: Any) -> PipelineRun:
    tags = run.data.tags
    seconds = tags.get(SECONDS)
    return PipelineRun(
        id=run.info.run_id, pipeline=tags.get(PIPELINE, ""), status=tags.get(STATUS, ""),
        start_time=run.info.start_time, seconds=float(seconds) if seconds else None,
        error=tags.get(ERROR, ""), tags=dict(tags),
    )


def to_execution(run: Any) -> Execution:
    tags = run.data.tags

    def artifacts(key: str) -> dict[str, list[Artifact]]:
        raw = json.loads(tags.get(key) or "{}")
        return {k: [Artifact.from_record(r) for r in v] for k, v in raw.items()}

    status = tags.get(STATUS, "")
    if run.info.status == "RUNNING":
        status = RUNNING
    seconds = tags.get(SECONDS)
    return Execution(
        id=run.info.run_id,
        pipeline=tags.get(PIPELINE, ""),
        pipeline_run_id=tags.get("mlflow.parentRunId", ""),
        component_id=tags.get(NODE_ID, ""),
        component_type=tags.get(NODE_TYPE, ""),
        status=status,
        parameters=dict(run.data.params),
        inputs=artifacts(INPUTS),
        outputs=artifacts(OUTPUTS),
        cache_key=tags.get(CACHE_KEY, ""),
        seconds=float(seconds) if seconds else None,
        error=tags.get(ERROR, ""),
        metrics={k: v for k, v in run.data.metrics.items()},
        start_time=run.info.start_time,
        cached_from=tags.get(CACHED_FROM, ""),
        log=tags.get(LOG, ""),
    )


def process_start(pid: int) -> str:
    """The start time of process ``pid`` (tag ``PID_START``): with the pid, it tells a live process
    from a later one given the same pid; "" when there is none."""
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def quote(text: str) -> str:
    """``text`` inside a single-quoted MLflow search filter."""
    return text.replace("'", "''")


def pipeline_param(value: Any) -> str:
    """A pipeline parameter as recorded: a relative path that exists made absolute, credentials masked."""
    from sluice.orchestration.secrets import mask_text

    if isinstance(value, str) and value and "://" not in value and not os.path.isabs(value) \
            and os.path.exists(value):
        value = os.path.abspath(value)
    return mask_text(param_text(value))


def param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:6000]
