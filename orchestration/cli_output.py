"""What the ``sluice`` command prints: its one-line errors, its JSON documents and its text tables.

Every line and document goes out with credentials masked.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from typing import Any

import click

from sluice.components.sdk import ComponentError, DefinitionError
from sluice.orchestration.records import outcomes, overall_metrics


class CliError(Exception):
    """A user-facing error: printed as one line."""


def echo(text: str = "", err: bool = False) -> None:
    """Every line the CLI prints, credentials masked."""
    from sluice.orchestration.secrets import mask_text

    click.echo(mask_text(text), err=err)


def echo_json(doc: Any) -> None:
    from sluice.orchestration.secrets import masked

    click.echo(json.dumps(masked(doc)))


def is_store_error(exc: BaseException) -> bool:
    from sluice.orchestration.metadata import StoreError

    return isinstance(exc, StoreError)


def failed_json(pipeline: str, root: str, tracking_uri: str | None, exc: BaseException) -> dict[str, Any]:
    """The --json document of a run that failed before it had a result."""
    from sluice.orchestration.metadata import default_tracking_uri

    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (CliError, DefinitionError, ComponentError)) and not is_store_error(exc):
        text = f"{type(exc).__name__}: {text}"
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        with contextlib.suppress(Exception):  # the document must come out, whatever the root is
            uri = default_tracking_uri(root)
    return {"pipeline": pipeline, "run_id": None, "status": "failed", "seconds": None, "pipeline_root": root,
            "tracking_uri": uri, "components": [],
            "error": text.splitlines()[0]}


def print_result(result, components: bool = True) -> None:
    from sluice.orchestration.secrets import mask_uri

    for comp in result.components if components else []:
        echo(f"{comp.id:<24} {comp.status:<9} {comp.seconds:7.2f}s")
    echo(f"run {result.run_id}: {result.status} in {result.seconds:.1f}s")
    for comp in result.components:
        for line in outcomes(comp.outputs, comp.status):
            echo(f"{comp.id}: {line}")
    reports = [(title, path) for comp in result.components for arts in comp.outputs.values() for art in arts
               for title, path in art.report_files().items() if os.path.isfile(path)]
    if reports:
        echo("reports:")
        for title, path in reports:
            echo(f"  {title}: {path}")
    echo(f"metadata: {mask_uri(result.tracking_uri)}")


def run_summary(store, run_id: str) -> str:
    """What the run's artifacts say of themselves (``Artifact.summary``), e.g. whether it pushed a model."""
    return "; ".join(f"{execution.component_id}: {line}" for execution in store.executions(run_id)
                     for line in outcomes(execution.outputs, execution.status))


def run_json(r, store=None) -> dict[str, Any]:
    doc = {"run_id": r.id, "pipeline": r.pipeline, "status": r.status, "start_time": time_text(r.start_time),
           "seconds": r.seconds, "error": r.error or None}
    if store is not None:
        doc["push"] = run_summary(store, r.id) or None
    return doc


def time_text(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_runs(items, store) -> None:
    """The table of ``sluice runs list``."""
    if not items:
        echo("no runs")
        return
    echo(f"{'RUN ID':<34} {'PIPELINE':<16} {'STATUS':<9} {'STARTED':<20} SECONDS")
    for r in items:
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "-"
        echo(f"{r.id:<34} {r.pipeline:<16} {r.status:<9} {time_text(r.start_time):<20} {secs}")
        if r.error:
            echo(f"    {r.error.splitlines()[0]}")
        outcome = run_summary(store, r.id)
        if outcome:
            echo(f"    {outcome}")


def print_run(run_record, executions) -> None:
    """The text of ``sluice runs show``: every component, its status, outputs and errors."""
    echo(f"run {run_record.id}  pipeline {run_record.pipeline}  {run_record.status}  "
         f"started {time_text(run_record.start_time)}")
    if run_record.error:
        echo(f"error: {run_record.error.splitlines()[0]}")
    for e in executions:
        secs = f"{e.seconds:.2f}s" if e.seconds is not None else "-"
        echo(f"  {e.component_id:<24} {e.component_type:<18} {e.status:<9} {secs}")
        for line in outcomes(e.outputs, e.status):
            echo(f"      {line}")
        overall = dict(sorted(overall_metrics(e.metrics).items()))
        if overall:
            echo("      metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in list(overall.items())[:12])
                 + (f" (+{len(overall) - 12} more)" if len(overall) > 12 else ""))
        for name, arts in e.outputs.items():
            for art in arts:
                echo(f"      {name}: {art.uri}")
        if e.error:
            echo(f"      error: {e.error}")
        if e.log:
            echo(f"      log: {e.log}")


def print_lineage(graph: dict[str, Any]) -> None:
    """The text of ``sluice lineage``: the artifact, then its upstream and downstream steps."""
    echo(f"artifact {graph['artifact']['type']} {graph['artifact']['uri']}")
    echo("upstream:")
    for step in graph["upstream"]:
        echo(f"  {'  ' * step['depth']}{step['component_id']} ({step['component_type']}, "
             f"execution {step['execution_id']})")
        for art in step["inputs"]:
            echo(f"  {'  ' * step['depth']}  <- {art['type']} {art['uri']}")
    echo("downstream:")
    for step in graph["downstream"]:
        echo(f"  {'  ' * step['depth']}{step['component_id']} ({step['component_type']}, "
             f"{step['status']}, execution {step['execution_id']})")
        for art in step["outputs"]:
            echo(f"  {'  ' * step['depth']}  -> {art['type']} {art['uri']}")
