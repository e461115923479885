"""Running one component: cache lookup, execution, and atomic publication.

This is the one place an executor is invoked. The local runner calls it for
each node, and so do the Kubeflow tasks, so no component has a second
implementation. Around each executor, ``orchestration.runtime`` prepares the
process (heavy imports, memory) and ``orchestration.hooks`` calls whatever
follows executions (nothing, outside tests).

Publication protocol:

1. The execution is recorded RUNNING, with its planned output URIs.
2. The executor writes each output to ``<output>/.tmp-<execution_id>-<output>``,
   a sibling of its final URI ``<output>/<execution_id>`` (same filesystem).
3. On success, each temporary folder is renamed to its final URI, and only then
   is the execution recorded as executed, with its output artifacts.
4. On failure the temporary folders are removed and the execution is recorded
   failed. A process killed mid-way leaves a RUNNING record; the next run marks
   it failed and removes what it left (``recover_abandoned``).

A cache hit needs a successful record with the same cache key (``cache_keys.cache_key``) *and* its outputs
still on disk, under this run's pipeline root (a store shared by several roots holds
other roots' outputs: see ``roots``).

On an object-store root (``s3://``, ``gs://``) there is no rename: inputs are staged to local
copies, the executor writes to local temporary folders, and step 3 uploads each one to
``<output>/<execution_id>/`` with its marker object written last; a cache hit also needs the
marker (see ``object_store``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from sluice.components.artifacts import ARTIFACT_TYPES, Artifact
from sluice.components.sdk import Component, ComponentError, DefinitionError
from sluice.orchestration import hooks, object_store, roots, runtime
from sluice.orchestration.cache_keys import cache_key, fingerprint_path
from sluice.orchestration.metadata import BLOCKED, CACHED, EXECUTED, FAILED, Execution, MetadataStore
from sluice.orchestration.pipeline import load_component
from sluice.orchestration.secrets import mask_text


@dataclasses.dataclass
class NodeResult:
    id: str
    type: str
    status: str  # executed | cached | blocked | failed | skipped
    seconds: float
    outputs: dict[str, list[Artifact]]
    execution_id: str | None = None
    error: str = ""
    log: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "execution_id": self.execution_id,
            "outputs": {k: [a.uri for a in v] for k, v in self.outputs.items()},
            **({"error": self.error} if self.error else {}),
        }


class ExecutionFailed(RuntimeError):
    def __init__(self, node_id: str, message: str, log: str = ""):
        super().__init__(f"component {node_id} failed: {message}")
        self.node_id = node_id
        self.log = log


# --- paths ---------------------------------------------------------------------------


def output_base(pipeline_root: str, pipeline: str, node_id: str, output: str) -> str:
    return os.path.join(pipeline_root, pipeline, node_id, output)


def outputs_exist(outputs: dict[str, list[Artifact]]) -> bool:
    """Every output is still there: a folder, or on an object store a prefix with its marker."""
    return all(object_store.is_published(a.uri) if object_store.is_remote(a.uri) else os.path.isdir(a.uri)
               for arts in outputs.values() for a in arts)


# --- running a node ---------------------------------------------------------------------


def resolve_parameters(comp: Component, node: dict[str, Any]) -> dict[str, Any]:
    """IR parameter values, validated again into their typed form."""
    values = {}
    for name, raw in node["parameters"].items():
        spec = comp.parameters.get(name)
        if spec is None:
            raise DefinitionError(f"component {node['id']}: unknown parameter '{name}'")
        values[name] = spec.validate(raw, f"component {node['id']}") if raw is not None else None
    return values


def run_node(
    node: dict[str, Any],
    pipeline: dict[str, Any],
    inputs: dict[str, list[Artifact]],
    store: MetadataStore,
    pipeline_run_id: str,
    enable_cache: bool = True,
    on_start: Callable[[str], None] | None = None,
    output_uris: dict[str, str] | None = None,
    reuse: Execution | None = None,
) -> NodeResult:
    """Executes (or reuses) one node and records it. Raises ExecutionFailed.

    ``output_uris`` fixes where outputs are published (Kubeflow hands each task
    its artifact paths); by default they go under the pipeline root.
    """
    started = time.monotonic()
    name, root = pipeline["name"], pipeline["pipeline_root"]
    comp = load_component(node["component"])
    params = resolve_parameters(comp, node)
    object_store.configure(pipeline.get("beam_pipeline_args"))  # before the key: it may hash remote data
    key = cache_key(node, inputs)

    hit = _reusable_execution(node, store, name, root, key, enable_cache, reuse)
    if hit is not None:
        store.record_cached(name, pipeline_run_id, node["id"], node["type"], node["parameters"],
                            inputs, key, hit)
        return NodeResult(node["id"], node["type"], CACHED, time.monotonic() - started,
                          hit.outputs, hit.id)

    if on_start:
        on_start(node["id"])
    bases = _output_bases(node, root, name, output_uris)
    execution_id = store.start_execution(
        name, pipeline_run_id, node["id"], node["type"], node["parameters"], inputs, key,
        planned_outputs={out: base for out, base in bases.items()},
    )
    final, log_dir = _final_uris(node, root, name, bases, execution_id, output_uris)
    log_path = os.path.join(log_dir, f"{execution_id}.log")
    remote = any(object_store.is_remote(uri) for uri in final.values())
    # The IR's flag: a component found again by its function's name is rebuilt without it.
    direct = remote and node.get("remote_io", comp.remote_io) and _workers_elsewhere(pipeline)
    home = roots.local_root(root)
    tmp = _working_folders(final, bases, home, execution_id, remote, direct)
    outputs = {
        out: ARTIFACT_TYPES[spec["type"]](uri=tmp[out]) for out, spec in node["outputs"].items()
    }
    ctx = runtime.RunnerContext(
        pipeline_name=name, component_id=node["id"], execution_id=execution_id,
        beam_pipeline_args=list(pipeline.get("beam_pipeline_args") or []),
        tracking_uri=store.tracking_uri, mlflow_run_id=execution_id, pipeline_root=root,
        lookup=store,
    )

    try:
        ctx.artifact_uri = store.artifact_uri(execution_id, root)
        # The IR's warm imports: a component found again by its function's name is rebuilt without them.
        unstaged = node.get("remote_inputs", comp.remote_inputs)  # the IR's, as for remote_io
        staged = inputs if direct else _stage_inputs(inputs, home, unstaged)
        _execute(comp, node["id"], _executor_kwargs(comp, params, staged, outputs, ctx), tmp, outputs,
                 node.get("warm_imports", comp.warm_imports))
        log_small_outputs(ctx, tmp)
        if remote:  # marker last, before the record: see object_store
            _upload_into_place(node["id"], execution_id, outputs, tmp, final, None if direct else home)
    except BaseException as exc:  # noqa: BLE001 - also KeyboardInterrupt: never publish
        seconds = time.monotonic() - started
        message = _describe(exc)
        _write_log(log_path, traceback.format_exc())
        _discard(tmp, final, remote, direct)
        store.fail_execution(execution_id, message, seconds, log=log_path)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ExecutionFailed(node["id"], message, log_path) from exc

    # Publish: move every output into place, then record. A crash between the
    # two leaves a RUNNING record, which the next run cleans up.
    if not remote:
        _move_into_place(node["id"], execution_id, outputs, tmp, final)
    seconds = time.monotonic() - started
    published = {out: [art] for out, art in outputs.items()}
    store.publish_execution(name, execution_id, inputs, published, ctx.metrics, seconds,
                            blocked=mask_text(ctx.blocked))
    if ctx.blocked:
        return NodeResult(node["id"], node["type"], BLOCKED, seconds, published, execution_id, mask_text(ctx.blocked))
    return NodeResult(node["id"], node["type"], EXECUTED, seconds, published, execution_id)


# Output files up to this size are copied into the execution's MLflow run (reports, statistics,
# schemas, anomalies, metrics, analyses), up to SMALL_OUTPUTS_BYTES per execution; the rest of the
# data, and every SavedModel folder, stays in the pipeline root, linked from the run's tags.
SMALL_OUTPUT_FILE_BYTES = 2 << 20
SMALL_OUTPUTS_BYTES = 32 << 20


def log_small_outputs(ctx: runtime.RunnerContext, folders: dict[str, str]) -> None:
    """Copies each output's small files into the execution's MLflow artifacts, under ``outputs/<output>/``."""
    if not (ctx.tracking_uri and ctx.mlflow_run_id):
        return
    with tempfile.TemporaryDirectory(prefix="sluice-outputs-") as scratch:
        total = 0
        for name, folder in folders.items():
            remote = object_store.is_remote(folder)
            for rel, size in _output_files(folder):
                if size > SMALL_OUTPUT_FILE_BYTES or total + size > SMALL_OUTPUTS_BYTES:
                    continue
                copy = os.path.join(scratch, name, *rel.split("/"))
                os.makedirs(os.path.dirname(copy), exist_ok=True)
                if remote:
                    with open(copy, "wb") as fh:
                        fh.write(object_store.read_bytes(object_store.join(folder, rel)))
                else:
                    shutil.copyfile(os.path.join(folder, *rel.split("/")), copy)
                total += size
        if os.listdir(scratch):
            ctx.log_artifacts(scratch, "outputs")


def _output_files(folder: str) -> list[tuple[str, int]]:
    """(path relative to ``folder``, size) of an output's files, sorted; hidden files and folders
    (``.x``) and SavedModel folders (not copied piecemeal) left out."""
    if object_store.is_remote(folder):
        found = [(rel, size) for rel, size, _ in object_store.describe(folder)]
    else:
        found = [(os.path.relpath(os.path.join(where, file), folder).replace(os.sep, "/"),
                  os.path.getsize(os.path.join(where, file)))
                 for where, _, files in os.walk(folder) for file in files]
    models = [rel[:-len("saved_model.pb")] for rel, _ in found if rel.split("/")[-1] == "saved_model.pb"]
    return sorted((rel, size) for rel, size in found
                  if not any(part.startswith(".") for part in rel.split("/"))
                  and not any(rel.startswith(model) for model in models))


def _reusable_execution(node: dict[str, Any], store: MetadataStore, name: str, root: str, key: str,
                        enable_cache: bool, reuse: Execution | None) -> Execution | None:
    """The first earlier execution with this cache key whose outputs are still on disk, under this root."""
    # --resume reuses what the earlier run published (same cache key), even with the cache off.
    candidates = [reuse] if reuse is not None and reuse.cache_key == key else []
    if enable_cache:
        candidates += store.find_cached(name, node["id"], key, pipeline_root=root)
    for hit in candidates:
        # A store shared by several roots: another root's outputs are not ours to reuse.
        uris = [a.uri for arts in hit.outputs.values() for a in arts]
        try:
            present = outputs_exist(hit.outputs)
        except Exception as exc:  # noqa: BLE001 - an object store that does not answer
            raise ExecutionFailed(node["id"], f"looking for its cached outputs: {_describe(exc)}") from None
        if present and roots.all_inside(uris, root):
            return hit
    return None


def _output_bases(node: dict[str, Any], root: str, name: str, output_uris: dict[str, str] | None) -> dict[str, str]:
    """The folder each output is published in (its temporary sibling goes there too)."""
    if output_uris:
        return {out: os.path.dirname(output_uris[out].rstrip("/")) for out in node["outputs"]}
    try:
        bases = {out: roots.safe_join(root, name, node["id"], out) for out in node["outputs"]}
        roots.safe_join(root, name, node["id"], ".logs")
    except DefinitionError as exc:
        raise ExecutionFailed(node["id"], str(exc)) from None
    return bases


def _final_uris(node: dict[str, Any], root: str, name: str, bases: dict[str, str], execution_id: str,
                output_uris: dict[str, str] | None) -> tuple[dict[str, str], str]:
    """Each output's final URI, and the folder of the execution's log."""
    if output_uris:
        final = {out: output_uris[out].rstrip("/") for out in node["outputs"]}
        log_dir = os.path.join(os.path.dirname(next(iter(bases.values()), root)), ".logs")
    else:
        final = {out: roots.safe_join(base, execution_id) for out, base in bases.items()}
        # A remote root's logs stay in its local folder (roots.local_root).
        log_dir = roots.safe_join(roots.local_root(root), name, node["id"], ".logs")
    return final, log_dir


def _working_folders(final: dict[str, str], bases: dict[str, str], home: str, execution_id: str,
                     remote: bool, direct: bool) -> dict[str, str]:
    """Where the executor writes each output: a new temporary folder beside it (a local root) or in
    the root's local folder (an object store); with ``direct``, the final URIs themselves (the
    marker, written last, makes them artifacts)."""
    if direct:
        return dict(final)
    tmp = {out: (os.path.join(home, "tmp", f"{execution_id}-{out}") if remote
                 else os.path.join(bases[out], f".tmp-{execution_id}-{out}")) for out in final}
    for path in tmp.values():
        os.makedirs(path)
    return tmp


def _executor_kwargs(comp: Component, params: dict[str, Any], inputs: dict[str, list[Artifact]],
                     outputs: dict[str, Artifact], ctx: runtime.RunnerContext) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(params)
    for in_name in comp.inputs:
        arts = inputs.get(in_name) or []
        if arts or in_name not in kwargs:  # an input that also takes a value keeps the value when unwired
            kwargs[in_name] = arts[0] if arts else None
    kwargs.update({out: art for out, art in outputs.items()})
    if comp.context_parameter:
        kwargs[comp.context_parameter] = ctx
    return kwargs


def _execute(comp: Component, node_id: str, kwargs: dict[str, Any], tmp: dict[str, str],
             outputs: dict[str, Artifact], warm_imports: tuple[str, ...] | list[str]) -> None:
    """Runs the executor into the temporary folders, then fingerprints what it wrote."""
    runtime.prepare_executor(warm_imports)
    with hooks.around_executor(node_id, list(tmp.values())):
        try:
            comp.fn(**kwargs)
        finally:
            runtime.after_executor()
    for art in outputs.values():
        art.fingerprint = fingerprint_path(art.uri)


def _move_into_place(node_id: str, execution_id: str, outputs: dict[str, Artifact], tmp: dict[str, str],
                     final: dict[str, str]) -> None:
    for out, art in outputs.items():
        if os.path.isdir(final[out]) and not os.listdir(final[out]):
            os.rmdir(final[out])  # an empty folder made for us by Kubeflow's launcher
        os.replace(tmp[out], final[out])
        art.uri = final[out]
        art.id = f"{execution_id}:{out}"
        hooks.during_publish(node_id, out)


def _stage_inputs(inputs: dict[str, list[Artifact]], home: str,
                  unstaged: tuple[str, ...] | list[str] = ()) -> dict[str, list[Artifact]]:
    """The inputs as the executor gets them: an artifact on an object store as its local staged copy,
    but those of the ``unstaged`` inputs, which the executor reads by URI."""
    return {name: [dataclasses.replace(a, uri=object_store.stage_in(a.uri, home))
                   if object_store.is_remote(a.uri) and name not in unstaged else a for a in arts]
            for name, arts in inputs.items()}


def _upload_into_place(node_id: str, execution_id: str, outputs: dict[str, Artifact], tmp: dict[str, str],
                       final: dict[str, str], home: str | None) -> None:
    """Uploads every output, each with its marker last; the local folders become their staged copies.
    Without ``home``, the executor wrote the outputs in place: only their markers are written."""
    for out in outputs:
        if home is None:
            object_store.publish_in_place(final[out], execution_id)
        else:
            object_store.publish(tmp[out], final[out], execution_id)
        hooks.during_publish(node_id, out)
    for out, art in outputs.items():
        if home is not None:
            object_store.keep_staged(tmp[out], final[out], home)
        art.uri = final[out]
        art.id = f"{execution_id}:{out}"


def _workers_elsewhere(pipeline: dict[str, Any]) -> bool:
    """Whether the pipeline's Beam runner has workers that may not share this disk."""
    from sluice.components.beam_workers import runs_elsewhere

    return runs_elsewhere(pipeline.get("beam_pipeline_args") or [])


def _discard(tmp: dict[str, str], final: dict[str, str], remote: bool, direct: bool) -> None:
    """Removes what a failed execution wrote: its temporary folders, and on an object store
    anything uploaded or written in place (no marker, so never read)."""
    if not direct:
        for path in tmp.values():
            shutil.rmtree(path, ignore_errors=True)
    if remote:
        _remove_unpublished(final.values())


def _remove_unpublished(uris) -> None:
    """Deletes what a failed upload left (no marker, so never read); what stays is harmless."""
    for uri in uris:
        try:
            object_store.delete_prefix(uri)
        except Exception:  # noqa: BLE001 - the store may be what failed
            pass


def _describe(exc: BaseException) -> str:
    """The failure as recorded in the store and raised to the runner, credentials masked."""
    if isinstance(exc, (ComponentError, DefinitionError)):
        return mask_text(str(exc))
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return mask_text(f"{type(exc).__name__}: {first}") if first else type(exc).__name__


def _write_log(path: str, text: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(mask_text(text))
    except OSError:
        pass


def recover_abandoned(store: MetadataStore, pipeline: str) -> list[Execution]:
    """Marks RUNNING records of dead processes failed and removes their leftovers."""
    recovered = []
    for record, planned in store.find_abandoned(pipeline):
        for out, base in planned.items():
            if object_store.is_remote(base):  # its upload may be half done: never marked, so deleted
                _remove_unpublished([object_store.join(base, record.id)])
                continue
            for leftover in (os.path.join(base, f".tmp-{record.id}-{out}"), os.path.join(base, record.id)):
                shutil.rmtree(leftover, ignore_errors=True)
        store.mark_abandoned(record)
        recovered.append(record)
    return recovered


__all__ = ["run_node", "recover_abandoned", "cache_key", "fingerprint_path", "NodeResult", "ExecutionFailed",
           "FAILED", "EXECUTED", "CACHED"]
