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
tracking URI (e.g. ``http://mlflow:5000``) works the same. The records and their tags are
records.py's, the MLflow calls store_client.py's; their statuses, record types and ``StoreError``
are importable from here too.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from sluice.components.artifacts import Artifact
from sluice.orchestration import records, roots
from sluice.orchestration.records import (
    BLOCKED,
    CACHED,
    EXECUTED,
    FAILED,
    RUNNING,
    SKIPPED,
    Execution,
    PipelineRun,
)
from sluice.orchestration.secrets import mask_uri
from sluice.orchestration.store_client import StoreClient, StoreError


def default_tracking_uri(pipeline_root: str) -> str:
    """Embedded SQLite under the pipeline root: no server to start.

    Raises DefinitionError when ``<root>/metadata.db`` is a symlink leading out of the root.
    """
    return roots.sqlite_uri(roots.store_file(pipeline_root))


NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI


def lineage_note(experiment_id: str, inputs: dict[str, list[Artifact]], outputs: dict[str, list[Artifact]]) -> str:
    """An execution's description: its inputs, each linked to the run that produced it, and its outputs."""
    lines = []
    for title, found in (("Inputs", inputs), ("Outputs", outputs)):
        if not found:
            continue
        lines.append(f"**{title}**")
        for name, artifacts in sorted(found.items()):
            for artifact in artifacts:
                producer = (artifact.id or "").split(":", 1)[0]
                link = f" from [run {producer}](#/experiments/{experiment_id}/runs/{producer})" \
                    if producer and title == "Inputs" else ""
                lines.append(f"- `{name}`: {artifact.TYPE_NAME} `{mask_uri(artifact.uri)}`{link}")
    return "\n".join(lines)[:7900]


class MetadataStore(StoreClient):
    """Executions and artifacts of pipeline runs, stored as MLflow runs."""

    # -- pipeline runs ---------------------------------------------------------

    def start_pipeline_run(self, pipeline: str, tags: dict[str, str] | None = None,
                           params: dict[str, Any] | None = None) -> str:
        """A parent run; ``params``: the pipeline's own (``create_pipeline``'s), recorded as its params."""
        exp_id = self.experiment_id(pipeline)
        run = self._call(
            "create_run", exp_id,
            run_name=f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={records.KIND: "pipeline_run", records.PIPELINE: pipeline, records.STATUS: RUNNING,
                  **records.process_tags(), **(tags or {})},
        )
        if params:
            self._log(run.info.run_id, params={k: records.pipeline_param(v) for k, v in params.items()})
        return run.info.run_id

    def find_or_start_pipeline_run(self, pipeline: str, external_id: str) -> str:
        """The pipeline run tagged with an orchestrator's run id (e.g. KFP's), created once."""
        exp_id = self.experiment_id(pipeline)
        found = self._search([exp_id], f"tags.`{records.EXTERNAL_ID}` = '{records.quote(external_id)}'",
                             max_results=1, order_by=["attributes.start_time ASC"])
        if found:
            return found[0].info.run_id
        return self.start_pipeline_run(pipeline, tags={records.EXTERNAL_ID: external_id})

    def end_pipeline_run(self, run_id: str, status: str, error: str = "", seconds: float | None = None,
                         metrics: dict[str, float] | None = None, summary: str = "") -> None:
        """Ends a parent run; ``metrics`` (its components', as ``<component>.<metric>``) and ``summary``
        (its description: what each component produced) make it readable in the MLflow UI."""
        tags = {records.STATUS: status}
        if summary:
            tags[NOTE_TAG] = summary[:7900]
        if error:
            tags[records.ERROR] = error[:7900]
        if seconds is not None:
            tags[records.SECONDS] = f"{seconds:.3f}"
        self._log(run_id, metrics=metrics, tags=tags)
        self._call("set_terminated", run_id, status="FINISHED" if status == EXECUTED else "FAILED")

    def get_pipeline_run(self, run_id: str) -> PipelineRun:
        try:
            run = self._call("get_run", run_id)
        except StoreError:
            raise
        except Exception:
            raise StoreError(f"no run {run_id!r} in {mask_uri(self.tracking_uri)}") from None
        if run.data.tags.get(records.KIND) != "pipeline_run":
            raise StoreError(f"{run_id!r} is not a pipeline run")
        return records.to_pipeline_run(run)

    def list_pipeline_runs(self, pipeline: str | None = None, limit: int = 100) -> list[PipelineRun]:
        if pipeline:
            exp = self.experiment_id(pipeline, create=False)
            exp_ids = [exp] if exp else []
        else:
            exp_ids = self._all_experiment_ids()
        if not exp_ids:
            return []
        runs = self._search(exp_ids, f"tags.`{records.KIND}` = 'pipeline_run'", max_results=limit)
        return [records.to_pipeline_run(r) for r in runs]

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
        tags = {**records.execution_tags(pipeline, pipeline_run_id, component_id, component_type, RUNNING),
                records.CACHE_KEY: cache_key, **records.process_tags(), **records.input_tags(inputs)}
        run = self._call("create_run", exp_id, run_name=component_id, tags=tags)
        execution_id = run.info.run_id
        extra = {NOTE_TAG: lineage_note(exp_id, inputs, {})}
        if planned_outputs:
            extra[records.PLANNED] = json.dumps(planned_outputs)
        self._log(execution_id, params=parameters, tags=extra)
        return execution_id

    def publish_execution(self, pipeline: str, execution_id: str, inputs: dict[str, list[Artifact]],
                          outputs: dict[str, list[Artifact]], metrics: dict[str, float], seconds: float,
                          log: str = "", blocked: str = "") -> None:
        """Marks an execution successful, with its (already moved) outputs; ``inputs``: those it was
        started with (``start_execution``), for its description; ``blocked``: it also stopped what
        depends on it, for this reason (never a cache hit then)."""
        tags = {records.STATUS: BLOCKED if blocked else EXECUTED, records.SECONDS: f"{seconds:.3f}",
                **records.output_tags(outputs)}
        if blocked:
            tags[records.ERROR] = blocked[:7900]
        tags[NOTE_TAG] = lineage_note(self.experiment_id(pipeline), inputs, outputs)
        if log:
            tags[records.LOG] = log
        self._log(execution_id, metrics={**metrics, "sluice.duration_seconds": seconds}, tags=tags)
        self._call("set_terminated", execution_id, status="FINISHED")

    def fail_execution(self, execution_id: str, error: str, seconds: float | None = None, log: str = "") -> None:
        tags = {records.STATUS: FAILED, records.ERROR: error[:7900] or "failed"}
        if seconds is not None:
            tags[records.SECONDS] = f"{seconds:.3f}"
        if log:
            tags[records.LOG] = log
        self._set_tags(execution_id, tags)
        self._call("set_terminated", execution_id, status="FAILED")

    def record_skipped(self, pipeline: str, pipeline_run_id: str, component_id: str,
                       component_type: str, reason: str) -> str:
        exp_id = self.experiment_id(pipeline)
        run = self._call(
            "create_run", exp_id, run_name=component_id,
            tags={**records.execution_tags(pipeline, pipeline_run_id, component_id, component_type, SKIPPED),
                  records.ERROR: reason[:7900]},
        )
        self._call("set_terminated", run.info.run_id, status="KILLED")
        return run.info.run_id

    def record_cached(self, pipeline: str, pipeline_run_id: str, component_id: str, component_type: str,
                      parameters: dict[str, Any], inputs: dict[str, list[Artifact]], cache_key: str,
                      source: Execution) -> str:
        """Records a cache hit: a child run that reuses ``source``'s outputs."""
        exp_id = self.experiment_id(pipeline)
        tags = {
            **records.execution_tags(pipeline, pipeline_run_id, component_id, component_type, CACHED),
            records.CACHE_KEY: cache_key, records.CACHED_FROM: source.id, records.SECONDS: "0",
            **records.input_tags(inputs), **records.output_tags(source.outputs),
        }
        source_link = f"[execution {source.id}](#/experiments/{exp_id}/runs/{source.id})"
        lineage = lineage_note(exp_id, inputs, source.outputs)
        tags[NOTE_TAG] = f"Cached: reuses the outputs of {source_link}.\n\n{lineage}"
        run = self._call("create_run", exp_id, run_name=f"{component_id} (cached)", tags=tags)
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
            f"tags.`{records.CACHE_KEY}` = '{cache_key}' and tags.`{records.STATUS}` = '{EXECUTED}' "
            f"and tags.`{records.NODE_ID}` = '{records.quote(component_id)}'",
            max_results=100 if pipeline_root else 20,
        )
        found = [records.to_execution(r) for r in runs]
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
        return [records.to_execution(r) for r in runs]

    def get_execution(self, execution_id: str) -> Execution:
        return records.to_execution(self._call("get_run", execution_id))

    def running_executions(self, pipeline: str) -> list[Execution]:
        exp_id = self.experiment_id(pipeline, create=False)
        if exp_id is None:
            return []
        runs = self._search([exp_id], "attributes.status = 'RUNNING'")
        return [records.to_execution(r) for r in runs if r.data.tags.get(records.KIND) == "execution"] + [
            records.to_execution(r) for r in runs if r.data.tags.get(records.KIND) == "pipeline_run"
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
            if tags.get(records.HOST) != host or not tags.get(records.PID):
                continue  # another machine's process: not ours to judge
            pid = int(tags[records.PID])
            if records.process_start(pid) == tags.get(records.PID_START, "") and records.process_start(pid):
                continue  # still alive
            planned = json.loads(tags.get(records.PLANNED, "{}"))
            found.append((records.to_execution(run), planned))
        return found

    def mark_abandoned(self, record: Execution) -> None:
        tags = self._call("get_run", record.id).data.tags
        pid = tags.get(records.PID)
        who = f"its process (pid {pid} on {tags.get(records.HOST, '?')})" if pid else "the process running it"
        msg = f"abandoned: {who} died while running it, e.g. killed (marked failed by a later run)"
        self._set_tags(record.id, {records.STATUS: FAILED, records.ERROR: msg})
        self._call("set_terminated", record.id, status="FAILED")

    # -- lineage --------------------------------------------------------------

    def producer_of(self, uri: str) -> Execution | None:
        """The execution that produced the artifact at ``uri``."""
        uri = uri.rstrip("/")
        for run in self._search(
            self._all_experiment_ids(),
            f"tags.`{records.OUTPUT_URIS}` LIKE '%{records.quote(uri)}%' and tags.`{records.STATUS}` = '{EXECUTED}'",
        ):
            execution = records.to_execution(run)
            if any(a.uri.rstrip("/") == uri for arts in execution.outputs.values() for a in arts):
                return execution
        return None

    def consumers_of(self, artifact_id: str) -> list[Execution]:
        """Executions (run or cached) that took the artifact as an input."""
        result = []
        for run in self._search(
            self._all_experiment_ids(), f"tags.`{records.INPUT_IDS}` LIKE '%,{records.quote(artifact_id)},%'"
        ):
            result.append(records.to_execution(run))
        return result

    def find_artifacts(self, pipeline: str, type_name: str,
                       predicate: Callable[[Artifact], bool] = lambda a: True) -> list[tuple[Artifact, Execution]]:
        """Published artifacts of a type in a pipeline, newest first."""
        exp_id = self.experiment_id(pipeline, create=False)
        if exp_id is None:
            return []
        found = []
        for run in self._search([exp_id], f"tags.`{records.STATUS}` = '{EXECUTED}'"):
            execution = records.to_execution(run)
            for arts in execution.outputs.values():
                for art in arts:
                    if type_name == art.TYPE_NAME and predicate(art):
                        found.append((art, execution))
        return found
