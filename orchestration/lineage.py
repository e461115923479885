"""Walking lineage through the metadata store's records, both ways.

Upstream: the execution that produced an artifact, the artifacts it consumed,
their producers, and so on. Downstream: the executions that consumed the
artifact, the artifacts they produced, and so on.
"""

from __future__ import annotations

from typing import Any

from sluice.orchestration.metadata import MetadataStore


def walk_lineage(store: MetadataStore, uri: str, max_depth: int = 20) -> dict[str, Any] | None:
    """The lineage graph of the artifact at ``uri``, or None if no execution produced it."""
    producer = store.producer_of(uri)
    if producer is None:
        return None
    artifact = next(
        a for arts in producer.outputs.values() for a in arts if a.uri.rstrip("/") == uri.rstrip("/")
    )
    upstream: list[dict[str, Any]] = []
    seen: set[str] = set()
    frontier = [(producer, 0)]
    while frontier:
        execution, depth = frontier.pop(0)
        if execution.id in seen or depth > max_depth:
            continue
        seen.add(execution.id)
        inputs = [a for arts in execution.inputs.values() for a in arts]
        upstream.append(_step(execution, depth, inputs=inputs))
        for art in inputs:
            parent = store.producer_of(art.uri)
            if parent is not None:
                frontier.append((parent, depth + 1))

    downstream: list[dict[str, Any]] = []
    seen = set()
    frontier_ids = [(artifact.id, 0)]
    while frontier_ids:
        artifact_id, depth = frontier_ids.pop(0)
        if not artifact_id or depth > max_depth:
            continue
        for execution in store.consumers_of(artifact_id):
            if execution.id in seen:
                continue
            seen.add(execution.id)
            outputs = [a for arts in execution.outputs.values() for a in arts]
            downstream.append(_step(execution, depth, outputs=outputs))
            if execution.status == "executed":
                frontier_ids.extend((a.id, depth + 1) for a in outputs)
    return {"artifact": artifact.to_record(), "producer": producer.id, "upstream": upstream,
            "downstream": downstream}


def _step(execution, depth: int, inputs=(), outputs=()) -> dict[str, Any]:
    return {
        "depth": depth,
        "execution_id": execution.id,
        "component_id": execution.component_id,
        "component_type": execution.component_type,
        "status": execution.status,
        "pipeline_run_id": execution.pipeline_run_id,
        "inputs": [a.to_record() for a in inputs],
        "outputs": [a.to_record() for a in outputs],
    }
