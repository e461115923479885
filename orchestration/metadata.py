"""The metadata store: MLflow runs record every execution and artifact.

Layout in MLflow:

- one experiment per pipeline (named after the pipeline);
- one parent run per pipeline run (tag ``sluice.kind=pipeline_run``);
- one child run per component execution (``sluice.kind=execution``), nested
  under its pipeline run with ``mlflow.parentRunId``.

A child run records the component id and type, its status, parameters (as
MLflow params), input and output artifacts (ids, URIs, types, properties and
fingerprints, as JSON tags), the cache key, the duration and the component's
metrics. Lineage is walked from these records alone: an artifact's producer
is the execution whose outputs list it, its consumers the executions whose
inputs list it.

The default store is embedded SQLite under the pipeline root; any MLflow
tracking URI (e.g. ``http://mlflow:5000``) works the same.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sluice.components.artifacts import Artifact
from sluice.orchestration import roots
from sluice.orchestration.secrets import mask_uri

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


def default_tracking_uri(pipeline_root: str) -> str:
    """Embedded SQLite under the pipeline root: no server to start.

    Raises DefinitionError when ``<root>/metadata.db`` is a symlink leading out of the root.
    """
    return roots.sqlite_uri(roots.store_file(pipeline_root))


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


class StoreError(RuntimeError):
    """The metadata store could not be reached or used."""


_LOCKED = ("database is locked", "database table is locked", "database is busy")
_UNREACHABLE = ("connection refused", "connection reset", "temporarily unavailable", "max retries exceeded")
# Waiting on another process's lock is contention, not failure: it may take a while. A server
# that does not answer is retried only briefly (MLflow retries each request twice more itself),
# so a dead one is reported within seconds.
_LOCKED_SECONDS, _UNREACHABLE_SECONDS = 60.0, 3.0
# Client methods that write: refused at once on a store opened read-only.
_WRITES = frozenset({"create_experiment", "create_run", "log_batch", "set_terminated", "set_tag",
                     "update_run", "delete_run", "log_param", "log_metric", "set_experiment_tag"})


def _retrying(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Retries transient store errors (a locked SQLite file, a restarting server), within bounds."""
    import tenacity

    def text(exc: BaseException | None) -> str:
        return str(exc).lower()

    def transient(exc: BaseException) -> bool:
        return any(s in text(exc) for s in _LOCKED + _UNREACHABLE)

    def stop(state: Any) -> bool:
        locked = any(s in text(state.outcome.exception()) for s in _LOCKED)
        return state.seconds_since_start >= (_LOCKED_SECONDS if locked else _UNREACHABLE_SECONDS)

    return tenacity.retry(
        retry=tenacity.retry_if_exception(transient),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=2),
        stop=stop,
        reraise=True,
    )(fn)


def _process_start(pid: int) -> str:
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


class MetadataStore:
    """Executions and artifacts of pipeline runs, stored as MLflow runs."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None):
        from sluice.orchestration.runtime.mlflow import quiet_mlflow
        from sluice.orchestration.store_access import known_cause, open_checks

        quiet_mlflow()
        from mlflow.tracking import MlflowClient

        quiet_mlflow()  # mlflow sets its own levels on import
        self.tracking_uri = tracking_uri
        self._artifact_root = artifact_root
        self._lock = threading.RLock()
        self._experiments: dict[str, str] = {}
        # Creates (or repairs) an SQLite store; None, or why this store cannot be written.
        self._read_only = open_checks(tracking_uri)
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
        except Exception as exc:
            why = known_cause(exc, self._folder()) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"metadata store {mask_uri(tracking_uri)}: {why}") from None

    # -- low level -----------------------------------------------------------

    def _folder(self) -> str | None:
        from sluice.orchestration.store_access import sqlite_path

        path = sqlite_path(self.tracking_uri)
        return os.path.dirname(path) if path else None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client call; failures of the disk, permissions or network become one-line StoreErrors."""
        from sluice.orchestration.store_access import known_cause

        if self._read_only and method in _WRITES:
            raise StoreError(f"metadata store {mask_uri(self.tracking_uri)}: {self._read_only}")
        with self._lock:
            try:
                return _retrying(getattr(self.client, method))(*args, **kwargs)
            except Exception as exc:
                why = known_cause(exc, self._folder())
                if why is None:
                    raise
                raise StoreError(f"metadata store {mask_uri(self.tracking_uri)}: {why}") from exc

    def experiment_id(self, pipeline: str, create: bool = True) -> str | None:
        if pipeline in self._experiments:
            return self._experiments[pipeline]
        exp = self._call("get_experiment_by_name", pipeline)
        if exp is None:
            if not create:
                return None
            location = roots.experiment_location(self.tracking_uri, self._artifact_root)
            try:
                exp_id = self._call("create_experiment", pipeline, artifact_location=location)
            except Exception:  # created concurrently by another process
                exp = self._call("get_experiment_by_name", pipeline)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self._experiments[pipeline] = exp_id
        return exp_id

    def _search(self, experiment_ids: list[str], filter_string: str, max_results: int = 5000,
                order_by: list[str] | None = None) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self._call(
                "search_runs", experiment_ids, filter_string=filter_string,
                max_results=min(max_results, 1000), order_by=order_by or ["attributes.start_time DESC"],
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token or len(runs) >= max_results:
                return runs

    def _all_experiment_ids(self) -> list[str]:
        from mlflow.entities import ViewType

        exps = self._call("search_experiments", view_type=ViewType.ACTIVE_ONLY, max_results=1000)
        return [e.experiment_id for e in exps]

    # -- pipeline runs ---------------------------------------------------------

    def start_pipeline_run(self, pipeline: str, tags: dict[str, str] | None = None) -> str:
        exp_id = self.experiment_id(pipeline)
        run = self._call(
            "create_run", exp_id,
            run_name=f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={KIND: "pipeline_run", PIPELINE: pipeline, STATUS: RUNNING, HOST: socket.gethostname(),
                  PID: str(os.getpid()), PID_START: _process_start(os.getpid()), **(tags or {})},
        )
        return run.info.run_id

    def find_or_start_pipeline_run(self, pipeline: str, external_id: str) -> str:
        """The pipeline run tagged with an orchestrator's run id (e.g. KFP's), created once."""
        exp_id = self.experiment_id(pipeline)
        found = self._search([exp_id], f"tags.`{EXTERNAL_ID}` = '{_quote(external_id)}'", max_results=1,
                             order_by=["attributes.start_time ASC"])
        if found:
            return found[0].info.run_id
        return self.start_pipeline_run(pipeline, tags={EXTERNAL_ID: external_id})

    def end_pipeline_run(self, run_id: str, status: str, error: str = "", seconds: float | None = None) -> None:
        tags = {STATUS: status}
        if error:
            tags[ERROR] = error[:7900]
        if seconds is not None:
            tags[SECONDS] = f"{seconds:.3f}"
        self._set_tags(run_id, tags)
        self._call("set_terminated", run_id, status="FINISHED" if status == EXECUTED else "FAILED")

    def get_pipeline_run(self, run_id: str) -> PipelineRun:
        try:
            run = self._call("get_run", run_id)
        except StoreError:
            raise
        except Exception:
            raise StoreError(f"no run {run_id!r} in {mask_uri(self.tracking_uri)}") from None
        if run.data.tags.get(KIND) != "pipeline_run":
            raise StoreError(f"{run_id!r} is not a pipeline run")
        return self._to_pipeline_run(run)

    def list_pipeline_runs(self, pipeline: str | None = None, limit: int = 100) -> list[PipelineRun]:
        if pipeline:
            exp = self.experiment_id(pipeline, create=False)
            exp_ids = [exp] if exp else []
        else:
            exp_ids = self._all_experiment_ids()
        if not exp_ids:
            return []
        runs = self._search(exp_ids, f"tags.`{KIND}` = 'pipeline_run'", max_results=limit)
        return [self._to_pipeline_run(r) for r in runs]

    @staticmethod
    def _to_pipeline_run(run: Any) -> PipelineRun:
        tags = run.data.tags
        seconds = tags.get(SECONDS)
        return PipelineRun(
            id=run.info.run_id, pipeline=tags.get(PIPELINE, ""), status=tags.get(STATUS, ""),
            start_time=run.info.start_time, seconds=float(seconds) if seconds else None,
            error=tags.get(ERROR, ""), tags=dict(tags),
        )

    # -- executions -----------------------------------------------------------

    def start_execution(
        self,
        pipeline: str,
        pipeline_run_id: str,
        component_id: str,
        component_type: str,
        parameters: dict[str, Any],
        inputs: dict[str, list[Artifact]],
        cache_key: str,
        planned_outputs: dict[str, str] | None = None,
    ) -> str:
        """Records a RUNNING execution; its run id is the execution id."""
        exp_id = self.experiment_id(pipeline)
        tags = {
            KIND: "execution", PIPELINE: pipeline, NODE_ID: component_id, NODE_TYPE: component_type,
            STATUS: RUNNING, CACHE_KEY: cache_key, "mlflow.parentRunId": pipeline_run_id,
            HOST: socket.gethostname(), PID: str(os.getpid()), PID_START: _process_start(os.getpid()),
            **self._input_tags(inputs),
        }
        run = self._call("create_run", exp_id, run_name=component_id, tags=tags)
        execution_id = run.info.run_id
        extra = {}
        if planned_outputs:
            extra[PLANNED] = json.dumps(planned_outputs)
        self._log(execution_id, params=parameters, tags=extra)
        return execution_id

    def publish_execution(self, execution_id: str, outputs: dict[str, list[Artifact]],
                          metrics: dict[str, float], seconds: float, log: str = "") -> None:
        """Marks an execution successful, with its (already moved) outputs."""
        tags = {STATUS: EXECUTED, SECONDS: f"{seconds:.3f}", **self._output_tags(outputs)}
        if log:
            tags[LOG] = log
        self._log(execution_id, metrics={**metrics, "sluice.duration_seconds": seconds}, tags=tags)
        self._call("set_terminated", execution_id, status="FINISHED")

    def fail_execution(self, execution_id: str, error: str, seconds: float | None = None, log: str = "") -> None:
        tags = {STATUS: FAILED, ERROR: error[:7900] or "failed"}
        if seconds is not None:
            tags[SECONDS] = f"{seconds:.3f}"
        if log:
            tags[LOG] = log
        self._set_tags(execution_id, tags)
        self._call("set_terminated", execution_id, status="FAILED")

    def record_skipped(self, pipeline: str, pipeline_run_id: str, component_id: str,
                       component_type: str, reason: str) -> str:
        exp_id = self.experiment_id(pipeline)
        run = self._call(
            "create_run", exp_id, run_name=component_id,
            tags={KIND: "execution", PIPELINE: pipeline, NODE_ID: component_id, NODE_TYPE: component_type,
                  STATUS: SKIPPED, ERROR: reason[:7900], "mlflow.parentRunId": pipeline_run_id},
        )
        self._call("set_terminated", run.info.run_id, status="KILLED")
        return run.info.run_id

    def record_cached(self, pipeline: str, pipeline_run_id: str, component_id: str, component_type: str,
                      parameters: dict[str, Any], inputs: dict[str, list[Artifact]], cache_key: str,
                      source: Execution) -> str:
        """Records a cache hit: a child run that reuses ``source``'s outputs."""
        exp_id = self.experiment_id(pipeline)
        tags = {
            KIND: "execution", PIPELINE: pipeline, NODE_ID: component_id, NODE_TYPE: component_type,
            STATUS: CACHED, CACHE_KEY: cache_key, CACHED_FROM: source.id, SECONDS: "0",
            "mlflow.parentRunId": pipeline_run_id, **self._input_tags(inputs),
            **self._output_tags(source.outputs),
        }
        run = self._call("create_run", exp_id, run_name=component_id, tags=tags)
        self._log(run.info.run_id, params=parameters, metrics=source.metrics)
        self._call("set_terminated", run.info.run_id, status="FINISHED")
        return run.info.run_id

    def find_cached(self, pipeline: str, component_id: str, cache_key: str,
                    pipeline_root: str | None = None) -> list[Execution]:
        """Successful executions with this cache key, newest first.

        With ``pipeline_root``, only those whose outputs all lie under it: a store shared by
        several roots holds executions whose outputs another run's root owns.
        """
        exp_id = self.experiment_id(pipeline, create=False)
        if exp_id is None:
            return []
        runs = self._search(
            [exp_id],
            f"tags.`{CACHE_KEY}` = '{cache_key}' and tags.`{STATUS}` = '{EXECUTED}' "
            f"and tags.`{NODE_ID}` = '{_quote(component_id)}'",
            max_results=100 if pipeline_root else 20,
        )
        found = [self._to_execution(r) for r in runs]
        if pipeline_root:
            found = [e for e in found if roots.all_inside([a.uri for arts in e.outputs.values() for a in arts],
                                                          pipeline_root)]
        return found

    def artifact_uri(self, run_id: str, pipeline_root: str) -> str:
        """Where run ``run_id`` logs its MLflow artifacts: under ``pipeline_root`` (``roots.artifact_destination``).

        A destination other than MLflow's own is recorded on the run (tag ``sluice.artifact_uri``).
        """
        own = self._call("get_run", run_id).info.artifact_uri
        uri = roots.artifact_destination(self.tracking_uri, own, pipeline_root, run_id)
        if uri != own:
            self._set_tags(run_id, {roots.ARTIFACT_URI_TAG: uri})
        return uri

    def executions(self, pipeline_run_id: str) -> list[Execution]:
        """The executions of one pipeline run, oldest first."""
        parent = self._call("get_run", pipeline_run_id)
        runs = self._search(
            [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{pipeline_run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        return [self._to_execution(r) for r in runs]

    def get_execution(self, execution_id: str) -> Execution:
        return self._to_execution(self._call("get_run", execution_id))

    def running_executions(self, pipeline: str) -> list[Execution]:
        exp_id = self.experiment_id(pipeline, create=False)
        if exp_id is None:
            return []
        runs = self._search([exp_id], "attributes.status = 'RUNNING'")
        return [self._to_execution(r) for r in runs if r.data.tags.get(KIND) == "execution"] + [
            self._to_execution(r) for r in runs if r.data.tags.get(KIND) == "pipeline_run"
        ]

    def find_abandoned(self, pipeline: str) -> list[tuple[Execution, dict[str, str]]]:
        """RUNNING records (executions and pipeline runs) whose process on this host is gone.

        Returns each with its planned output locations, so the caller can remove
        what the dead process left behind.
        """
        exp_id = self.experiment_id(pipeline, create=False)
        if exp_id is None:
            return []
        host = socket.gethostname()
        found = []
        for run in self._search([exp_id], "attributes.status = 'RUNNING'"):
            tags = run.data.tags
            if tags.get(HOST) != host or not tags.get(PID):
                continue  # another machine's process: not ours to judge
            pid = int(tags[PID])
            if _process_start(pid) == tags.get(PID_START, "") and _process_start(pid):
                continue  # still alive
            planned = json.loads(tags.get(PLANNED, "{}"))
            found.append((self._to_execution(run), planned))
        return found

    def mark_abandoned(self, record: Execution) -> None:
        tags = self._call("get_run", record.id).data.tags
        who = f"its process (pid {tags[PID]} on {tags.get(HOST, '?')})" if tags.get(PID) else "the process running it"
        msg = f"abandoned: {who} died while running it, e.g. killed (marked failed by a later run)"
        self._set_tags(record.id, {STATUS: FAILED, ERROR: msg})
        self._call("set_terminated", record.id, status="FAILED")

    # -- lineage --------------------------------------------------------------

    def producer_of(self, uri: str) -> Execution | None:
        """The execution that produced the artifact at ``uri``."""
        uri = uri.rstrip("/")
        for run in self._search(
            self._all_experiment_ids(),
            f"tags.`{OUTPUT_URIS}` LIKE '%{_quote(uri)}%' and tags.`{STATUS}` = '{EXECUTED}'",
        ):
            execution = self._to_execution(run)
            if any(a.uri.rstrip("/") == uri for arts in execution.outputs.values() for a in arts):
                return execution
        return None

    def consumers_of(self, artifact_id: str) -> list[Execution]:
        """Executions (run or cached) that took the artifact as an input."""
        result = []
        for run in self._search(
            self._all_experiment_ids(), f"tags.`{INPUT_IDS}` LIKE '%,{_quote(artifact_id)},%'"
        ):
            result.append(self._to_execution(run))
        return result

    def find_artifacts(self, pipeline: str, type_name: str,
                       predicate: Callable[[Artifact], bool] = lambda a: True) -> list[tuple[Artifact, Execution]]:
        """Published artifacts of a type in a pipeline, newest first."""
        exp_id = self.experiment_id(pipeline, create=False)
        if exp_id is None:
            return []
        found = []
        for run in self._search([exp_id], f"tags.`{STATUS}` = '{EXECUTED}'"):
            execution = self._to_execution(run)
            for arts in execution.outputs.values():
                for art in arts:
                    if type_name == art.TYPE_NAME and predicate(art):
                        found.append((art, execution))
        return found

    # -- helpers ----------------------------------------------------------------

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._log(run_id, tags=tags)

    def _log(self, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
             tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        p = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        m = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        t = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for start in range(0, max(len(p), len(m), len(t), 1), 100):
            self._call("log_batch", run_id, metrics=m[start:start + 100], params=p[start:start + 100],
                       tags=t[start:start + 100], synchronous=True)

    @staticmethod
    def _input_tags(inputs: dict[str, list[Artifact]]) -> dict[str, str]:
        ids = [a.id for arts in inputs.values() for a in arts if a.id]
        return {
            INPUTS: json.dumps({k: [a.to_record() for a in v] for k, v in inputs.items()}),
            INPUT_IDS: "," + ",".join(ids) + ",",
        }

    @staticmethod
    def _output_tags(outputs: dict[str, list[Artifact]]) -> dict[str, str]:
        uris = [a.uri.rstrip("/") for arts in outputs.values() for a in arts]
        return {
            OUTPUTS: json.dumps({k: [a.to_record() for a in v] for k, v in outputs.items()}),
            OUTPUT_URIS: "\n".join(uris),
        }

    @staticmethod
    def _to_execution(run: Any) -> Execution:
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


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:6000]

