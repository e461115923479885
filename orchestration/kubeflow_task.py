"""What a compiled Kubeflow task runs: one node, through ``run_node``.

The task gets the compiled IR, its node id, the KFP run id, the pipeline
parameters and its KFP artifacts. If the parameters differ from those the IR
was compiled with, the node is rebuilt from the pipeline's ``create_pipeline``.
It logs to MLflow at ``MLFLOW_TRACKING_URI`` (as KFP's MLflow integration
injects it), else the compile-time URI, else SQLite beside the artifacts;
``MLFLOW_RUN_ID``, when injected, is the parent run.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sluice.components.artifacts import Artifact
from sluice.components.sdk import ComponentError
from sluice.orchestration import runtime
from sluice.orchestration.execution import run_node
from sluice.orchestration.kubeflow import decode_ir
from sluice.orchestration.kubeflow_jobs import TFJobLauncher
from sluice.orchestration.metadata import BLOCKED, EXECUTED, MetadataStore, default_tracking_uri
from sluice.orchestration.runtime import processes
from sluice.orchestration.secrets import mask_text

SLUICE_META = "sluice"


def _rebuild_ir(ir: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    compiled = ir["pipeline"].get("parameters") or {}
    if all(compiled.get(k) == v for k, v in params.items()) or not ir["pipeline"].get("source"):
        return ir
    from sluice.orchestration.loader import build_pipeline
    from sluice.orchestration.pipeline import compile_pipeline

    pipe = build_pipeline(ir["pipeline"]["source"], [f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                                                     for k, v in params.items()])
    fresh = compile_pipeline(pipe)
    fresh["pipeline"]["source"] = ir["pipeline"]["source"]
    fresh["pipeline"]["tracking_uri"] = ir["pipeline"].get("tracking_uri")
    fresh["pipeline"]["image"] = ir["pipeline"].get("image")
    return fresh


class TaskFailed(RuntimeError):
    """A task's failure as KFP shows it: its message with credentials masked."""


def run_task(ir_json: str, node_id: str, kfp_run_id: str, params: dict[str, Any],
             inputs: dict[str, Any], outputs: dict[str, Any], ui: dict[str, Any] | None = None) -> None:
    from sluice.orchestration.runtime import stderr

    runtime.prepare_process()
    # The pod log is the task's stdout and stderr: what components and libraries print there too.
    with stderr.masked_stdout(), stderr.filtered_stderr(quiet=False):
        _run_masked(ir_json, node_id, kfp_run_id, params, inputs, outputs, ui)


def _run_masked(ir_json: str, node_id: str, kfp_run_id: str, params: dict[str, Any],
                inputs: dict[str, Any], outputs: dict[str, Any], ui: dict[str, Any] | None) -> None:
    try:
        _run_task(ir_json, node_id, kfp_run_id, params, inputs, outputs, ui)
    except Exception as exc:
        # KFP prints the traceback of what a task raises to the pod log; a library's message
        # may quote the tracking URL with its password. The masked traceback, then a masked error.
        runtime.log_masking.print_masked_traceback(exc)
        raise TaskFailed(mask_text(str(exc).strip() or type(exc).__name__)) from None


def _run_task(ir_json: str, node_id: str, kfp_run_id: str, params: dict[str, Any],
              inputs: dict[str, Any], outputs: dict[str, Any], ui: dict[str, Any] | None) -> None:
    ir = _rebuild_ir(decode_ir(ir_json), params)
    spec = dict(ir["pipeline"])
    node = next(n for n in ir["nodes"] if n["id"] == node_id)
    first_output = next(iter(outputs.values()), None)
    # The store lives beside the artifacts unless a tracking URI is configured.
    artifacts_root = _kfp_root(first_output.path if first_output else next(iter(inputs.values())).path)
    spec["pipeline_root"] = artifacts_root
    uri = (os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("SLUICE_TRACKING_URI")
           or spec.get("tracking_uri") or default_tracking_uri(artifacts_root))
    store = MetadataStore(uri, artifact_root=artifacts_root)
    parent = os.environ.get("MLFLOW_RUN_ID") or store.find_or_start_pipeline_run(spec["name"], kfp_run_id)

    in_artifacts: dict[str, list[Artifact]] = {}
    for name, kfp_artifact in inputs.items():
        if kfp_artifact is None:
            continue
        record = dict(kfp_artifact.metadata.get(SLUICE_META) or {"type": node["inputs"][name]["type"]})
        record["uri"] = kfp_artifact.path
        in_artifacts[name] = [Artifact.from_record(record)]
    # Workers a component starts are a TFJob's replicas (kubeflow_jobs), made only if it asks for them.
    timeout = (node["platform_config"].get("kubeflow") or {}).get("workers_timeout_seconds", 86400)
    with processes.worker_launcher(TFJobLauncher(spec.get("image"), kfp_run_id, timeout)):
        result = run_node(node, spec, in_artifacts, store, parent, enable_cache=False,
                          output_uris={name: art.path for name, art in outputs.items()})
    for name, kfp_artifact in outputs.items():
        published = result.outputs[name][0]
        kfp_artifact.metadata[SLUICE_META] = published.to_record()
        kfp_artifact.metadata["sluice_type"] = f"sluice.{published.TYPE_NAME}"  # shown in KFP's UI
        kfp_artifact.metadata.update({k: v for k, v in published.properties().items()
                                      if isinstance(v, (str, int, float, bool))})
    for name, published in result.outputs.items():
        _emit_ui(published[0], name, ui or {})
    if result.status == BLOCKED:  # published; the task fails so that KFP runs nothing downstream
        raise ComponentError(f"{node['id']}: {result.error}")
    done = {e.component_id for e in store.executions(parent) if e.status == EXECUTED}
    if not os.environ.get("MLFLOW_RUN_ID") and done >= {n["id"] for n in ir["nodes"]}:
        store.end_pipeline_run(parent, EXECUTED)


def _kfp_root(path: str) -> str:
    """The KFP pipeline root: artifact paths are <root>/<run>/<task>/<output>."""
    parts = os.path.normpath(path).split(os.sep)
    return os.sep.join(parts[:-3]) or os.path.dirname(path)


def _emit_ui(artifact: Artifact, name: str, ui: dict[str, Any]) -> None:
    """Fills the Kubeflow UI outputs of one published artifact (see kubeflow.ui_outputs)."""
    outputs = {suffix: ui.get(f"{name}_{suffix}") for suffix in artifact.ui_outputs()}
    artifact.fill_ui({suffix: out for suffix, out in outputs.items() if out is not None})
