"""The Evaluator's HTML report: metrics per slice and the threshold checks."""

from __future__ import annotations

from typing import Any

from sluice.components import reports
from sluice.components.io.files import write_text


def write_report(path: str, *, blessed: bool, reason: str, model_uri: str, baseline_uri: str | None,
                 overall: dict, baseline_metrics: dict | None, slices: dict, thresholds: list[dict]) -> None:
    """Writes ``report.html``: one row per slice (overall, the baseline's overall, then each slice)."""
    metric_names = [k for k in overall if k != "example_count"] + ["example_count"]
    rows: list[tuple[str, Any]] = [("overall", overall)] \
        + ([("baseline (overall)", baseline_metrics)] if baseline_metrics else []) + sorted(slices.items())
    write_text(path, reports.render("evaluation.html.j2", blessed=blessed, reason=reason, model_uri=model_uri,
                                    baseline_uri=baseline_uri, metric_names=metric_names, rows=rows,
                                    thresholds=thresholds))
