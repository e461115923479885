"""The local runner: executes a compiled pipeline (its IR) in this process.

Components run in dependency order; independent ones run in parallel threads.
Beam components get the pipeline's Beam options and run in-process (see
``ExecutionContext.beam_pipeline``). A failed component stops its dependents,
which are recorded as skipped; independent branches still finish.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sluice.components.artifacts import Artifact
from sluice.orchestration import runtime
from sluice.orchestration.execution import ExecutionFailed, NodeResult, recover_abandoned, run_node
from sluice.orchestration.metadata import (
    BLOCKED,
    CACHED,
    EXECUTED,
    FAILED,
    SKIPPED,
    MetadataStore,
    default_tracking_uri,
)
from sluice.orchestration.pipeline import Pipeline, compile_pipeline
from sluice.orchestration.records import outcomes, overall_metrics
from sluice.orchestration.secrets import mask_text, mask_uri


@dataclasses.dataclass
class RunResult:
    pipeline: str
    run_id: str
    status: str  # executed | failed
    seconds: float
    pipeline_root: str
    tracking_uri: str
    components: list[NodeResult]
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == EXECUTED

    def outputs(self, node_id: str) -> dict[str, list[Artifact]]:
        return next(c.outputs for c in self.components if c.id == node_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "pipeline_root": self.pipeline_root,
            "tracking_uri": mask_uri(self.tracking_uri),
            "components": [c.to_json() for c in self.components],
            **({"error": self.error} if self.error else {}),
        }


class Progress:
    """Per-component progress on a terminal: a line per finished component and a
    live line with the running ones and their elapsed time. Silent elsewhere and
    under CI."""

    def __init__(self, enabled: bool | None = None, stream=None, terminal: bool | None = None):
        self.stream = stream or sys.stderr
        if terminal is None:
            terminal = self.stream.isatty()
        if enabled is None:
            enabled = terminal and not os.environ.get("CI")
        self.enabled = enabled
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}
        self._ticker: threading.Thread | None = None

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _status(self) -> str:
        now = time.monotonic()
        parts = [f"{node_id} {now - start:4.1f}s" for node_id, start in self._running.items()]
        return f"\r\033[K  … running: {', '.join(parts)}" if parts else "\r\033[K"

    def _tick(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                if not self._running:
                    self._write("\r\033[K")
                    self._ticker = None
                    return
                self._write(self._status())

    def started(self, node_id: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._running[node_id] = time.monotonic()
            self._write(self._status())
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()

    def finished(self, result: NodeResult) -> None:
        if not self.enabled:
            return
        mark = {"executed": "✓", "cached": "↺", "blocked": "■", "failed": "✗", "skipped": "-"}.get(result.status, "?")
        with self._lock:
            self._running.pop(result.id, None)
            self._write(f"\r\033[K  {mark} {result.id:<24} {result.status:<8} {result.seconds:6.1f}s\n")
            self._write(self._status())


# Upstream statuses that stop a component from running.
STOPPING = (FAILED, SKIPPED, BLOCKED)


def _run_overview(store: MetadataStore, run_id: str, results: list[NodeResult]) -> tuple[dict[str, float], str]:
    """The parent run's metrics (every component's overall ones, as ``<component>.<metric>``) and description
    (one line per component: its status and what its outputs say of themselves)."""
    metrics = {f"{e.component_id}.{key}": value for e in store.executions(run_id)
               for key, value in overall_metrics(e.metrics).items()}
    lines = []
    for result in results:
        detail = "; ".join(outcomes(result.outputs, result.status)) \
            or (result.error.splitlines()[0] if result.error else "")
        lines.append(f"- **{result.id}** {result.status}" + (f": {detail}" if detail else ""))
    return metrics, "\n".join(lines)


def run_pipeline(
    pipeline: Pipeline | dict[str, Any],
    tracking_uri: str | None = None,
    enable_cache: bool | None = None,
    max_parallel: int | None = None,
    progress: Progress | None = None,
    store: MetadataStore | None = None,
    resume: str | None = None,
) -> RunResult:
    """Runs a pipeline (or its IR) to completion and returns what happened."""
    runtime.prepare_process()  # before this run's threads start
    ir = compile_pipeline(pipeline) if isinstance(pipeline, Pipeline) else pipeline
    spec = ir["pipeline"]
    name, root = spec["name"], spec["pipeline_root"]
    uri = (tracking_uri or spec.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
           or default_tracking_uri(root))
    store = store or MetadataStore(uri, artifact_root=root)
    cache = spec["enable_cache"] if enable_cache is None else enable_cache
    progress = progress or Progress(enabled=False)
    started = time.monotonic()

    recover_abandoned(store, name)
    reusable = _reusable_executions(store, resume, name) if resume else {}
    run_id = store.start_pipeline_run(name, tags={"sluice.resumed_from": resume} if resume else None,
                                      params=spec.get("parameters"))
    nodes = {n["id"]: n for n in ir["nodes"]}
    results: dict[str, NodeResult] = {}
    pending = dict(nodes)
    running: dict[futures.Future, str] = {}
    workers = max_parallel or min(2, os.cpu_count() or 1)
    first_error = ""

    def inputs_of(node: dict[str, Any]) -> dict[str, list[Artifact]]:
        return {
            name: results[src["node"]].outputs[src["output"]]
            for name, src in node["inputs"].items()
        }

    on_start = _start_hook(nodes, progress)

    def task(node: dict[str, Any]) -> NodeResult:
        return run_node(node, spec, inputs_of(node), store, run_id, cache, on_start=on_start,
                        reuse=reusable.get(node["id"]))

    with futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sluice") as pool:
        try:
            while pending or running:
                for node_id, node in list(pending.items()):
                    deps = [results.get(d) for d in node["upstream"]]
                    if any(r is not None and r.status in STOPPING for r in deps):
                        # Another upstream may still be running: it has no result yet.
                        failed_dep = next(d for d in node["upstream"]
                                          if d in results and results[d].status in STOPPING)
                        reason = (f"blocked by {failed_dep}" if results[failed_dep].status == BLOCKED
                                  else f"upstream {failed_dep} did not complete")
                        exec_id = store.record_skipped(name, run_id, node_id, node["type"], reason)
                        results[node_id] = NodeResult(node_id, node["type"], SKIPPED, 0.0, {}, exec_id, reason)
                        progress.finished(results[node_id])
                        del pending[node_id]
                    elif all(r is not None for r in deps) and len(running) < workers:
                        running[pool.submit(task, node)] = node_id
                        del pending[node_id]
                if not running:
                    continue
                done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for fut in done:
                    node_id = running.pop(fut)
                    node = nodes[node_id]
                    try:
                        results[node_id] = fut.result()
                        if results[node_id].status == BLOCKED:
                            first_error = first_error or f"{node_id}: {results[node_id].error}"
                    except ExecutionFailed as exc:
                        # A library's message may quote the tracking URL, password included.
                        message = mask_text(str(exc))
                        first_error = first_error or message
                        results[node_id] = NodeResult(node_id, node["type"], FAILED, 0.0, {}, None,
                                                      message, exc.log)
                    progress.finished(results[node_id])
        except BaseException as exc:
            store.end_pipeline_run(run_id, FAILED, f"interrupted: {type(exc).__name__}",
                                   time.monotonic() - started)
            raise

    status = FAILED if first_error else EXECUTED
    seconds = time.monotonic() - started
    ordered = [results[n["id"]] for n in ir["nodes"]]
    store.end_pipeline_run(run_id, status, first_error, seconds, *_run_overview(store, run_id, ordered))
    return RunResult(name, run_id, status, seconds, root, uri, ordered, first_error)


def _start_hook(nodes: dict[str, dict[str, Any]], progress: Progress) -> Callable[[str], None]:
    """What ``run_node`` calls when a component starts executing (not on a cache hit)."""
    warming = threading.Event()

    def on_start(node_id: str) -> None:
        # The first cache miss: import what later components need while this one runs.
        if not warming.is_set():
            warming.set()
            runtime.freeze_long_lived()  # the runner's own imports: keeps each component's collection cheap
            modules = runtime.warm_order({m for n in nodes.values() for m in n.get("warm_imports", [])})
            if modules:
                threading.Thread(target=_warm_imports, args=(modules,), daemon=True).start()
        progress.started(node_id)

    return on_start


def _reusable_executions(store: MetadataStore, run_id: str, pipeline: str) -> dict[str, Any]:
    """The successful executions of an earlier run of this pipeline, by component id."""
    from sluice.orchestration.metadata import StoreError

    earlier = store.get_pipeline_run(run_id)
    if earlier.pipeline != pipeline:
        raise StoreError(f"--resume {run_id}: that is a run of pipeline {earlier.pipeline}, not {pipeline}")
    found = {}
    for execution in store.executions(run_id):
        if execution.status == EXECUTED:
            found[execution.component_id] = execution
        elif execution.status == CACHED and execution.cached_from:
            found[execution.component_id] = store.get_execution(execution.cached_from)
    return found


def _warm_imports(modules: list[str]) -> None:
    for module in modules:
        try:
            runtime.import_heavy_modules([module])
        except Exception:  # noqa: BLE001 - only a head start; the component imports it again
            pass
