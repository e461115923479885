"""The HTML report of a statistics artifact (``reports/templates/statistics.html.j2``).

Every split side by side, and a baseline span's splits when given: one row per feature with
each split's statistics, its missing share, its drift (the Jensen-Shannon divergence, TFDV's
drift measure) against the first split and against the baseline, and a chart with every split
(numeric histograms on one value axis, categorical top values as bars; at most ``MAX_CHARTS``
charts, for the most drifted features). Rows sort by name, missing share and drift, and filter
by name, in the browser.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sluice.components import reports
from sluice.components.reports import charts
from sluice.components.tfdv import DatasetView, FeatureView, jensen_shannon_divergence

TOP_VALUES_CHARTED = 10
MAX_CHARTS = 100  # features charted per report: the most drifted, then the most missing
_CELL_KEYS = ("count", "missing_pct", "mean", "std_dev", "min", "median", "max", "zeros_pct", "unique",
              "avg_length", "top")


@dataclasses.dataclass(frozen=True)
class Column:
    """One dataset shown side by side with the others; drift is measured against ``compare_to``."""

    label: str
    view: DatasetView
    compare_to: str | None = None


def columns_for(splits: dict[str, Any], baseline: dict[str, Any] | None = None,
                baseline_span: int | None = None) -> list[Column]:
    """The report's columns: each split (drift against the first one), then each baseline split that
    matches one (drift of the current split against it)."""
    names = list(splits)
    columns = [Column(name, DatasetView(splits[name]), names[0] if i else None) for i, name in enumerate(names)]
    suffix = f"baseline span {baseline_span}" if baseline_span is not None else "baseline"
    for name, dataset in (baseline or {}).items():
        if name in splits:
            columns.append(Column(f"{name} ({suffix})", DatasetView(dataset), name))
    return columns


def render_report(columns: list[Column]) -> str:
    """A self-contained HTML page (inline CSS, SVG and script) comparing the columns' statistics."""
    keys: dict[str, None] = {}
    for column in columns:
        keys.update(dict.fromkeys(view.key for view in column.view.features))
    features = [_feature_row(key, columns) for key in keys]
    # A chart costs tens of milliseconds: a wide dataset gets them for its most drifted
    # (then most missing) features only.
    charted = sorted(features, key=lambda f: (-(f["drift_max"] or 0.0), -f["missing_max"]))[:MAX_CHARTS]
    for feature in charted:
        feature["chart"] = _chart(feature["name"], feature["kind"], feature.pop("present"))
    for feature in features:
        feature.pop("present", None)
    legend = [{"label": c.label, "color": charts.COLORS[i % len(charts.COLORS)],
               "num_examples": int(c.view.num_examples), "num_features": len(c.view.features)}
              for i, c in enumerate(columns)]
    return reports.render("statistics.html.j2", columns=legend, features=features,
                          charted=len(charted), max_charts=MAX_CHARTS)


def _kind(view: FeatureView) -> str:
    which = view.stats.WhichOneof("stats")
    return {"num_stats": "numeric", "string_stats": "categorical"}.get(which, "other")


def _feature_row(key: str, columns: list[Column]) -> dict[str, Any]:
    """What the report shows of one feature: per-column cells, missing shares, drifts and a chart."""
    present = {c.label: c.view.by_key.get(key) for c in columns}
    first = next(view for view in present.values() if view is not None)
    kind = _kind(first)
    cells = [_cell(column.label, present[column.label], kind) for column in columns]
    for cell, column in zip(cells, columns):
        current, previous = present[column.label], present.get(column.compare_to or "")
        cell["drift"], cell["drift_against"] = None, column.compare_to
        if current is not None and previous is not None and current.num_present and previous.num_present:
            cell["drift"] = jensen_shannon_divergence(current, previous)
    missing = [c["missing_pct"] for c in cells if c["missing_pct"] is not None]
    drifts = [c["drift"] for c in cells if c["drift"] is not None]
    return {
        "name": key, "type": first.type, "kind": kind, "cells": cells,
        "missing_max": max(missing, default=0.0), "drift_max": max(drifts, default=None),
        "chart": None, "present": present,
    }


def _cell(label: str, view: FeatureView | None, kind: str) -> dict[str, Any]:
    """One column's statistics of a feature; None values print as ``–`` (absent, or all missing)."""
    cell: dict[str, Any] = dict.fromkeys(_CELL_KEYS)
    cell["label"] = label
    if view is None:
        return cell
    count = int(view.num_present)
    cell["count"] = count
    cell["missing_pct"] = 100.0 * view.num_missing / view.num_examples if view.num_examples else None
    has_values = count > 0
    if kind == "numeric" and view.stats.HasField("num_stats"):
        stats = view.num_stats
        for name in ("mean", "std_dev", "min", "median", "max"):
            cell[name] = getattr(stats, name) if has_values else None
        total = view.total_value_count
        cell["zeros_pct"] = 100.0 * stats.num_zeros / total if has_values and total else None
    elif kind == "categorical" and view.stats.HasField("string_stats"):
        stats = view.stats.string_stats
        cell["unique"] = int(stats.unique) if has_values else None
        cell["avg_length"] = stats.avg_length if has_values else None
        top = stats.top_values[0] if has_values and len(stats.top_values) else None
        cell["top"] = top.value if top is not None else None
    return cell


def _chart(key: str, kind: str, present: dict[str, FeatureView | None]):
    """The feature's chart over every column that has values (None when nothing can be drawn)."""
    shown = {label: view for label, view in present.items() if view is not None and view.num_present}
    if kind == "numeric":
        series = {}
        for label, view in shown.items():
            histogram = view.standard_histogram()
            buckets = list(histogram.buckets) if histogram is not None else []
            total = sum(b.sample_count for b in buckets)
            if total:
                edges = [b.low_value for b in buckets] + [buckets[-1].high_value]
                series[label] = (edges, [b.sample_count / total for b in buckets])
        return charts.histograms(series, key=key) if series else None
    if kind == "categorical" and shown:
        counts = {label: _value_counts(view) for label, view in shown.items()}
        leading = next(iter(counts.values()))
        categories = sorted(leading, key=lambda value: (-leading[value], value))[:TOP_VALUES_CHARTED]
        series = {}
        for label, view in shown.items():
            total = view.total_value_count or 1.0
            series[label] = [counts[label].get(value, 0.0) / total for value in categories]
        return charts.bars(categories, series, key=key)
    return None


def _value_counts(view: FeatureView) -> dict[str, float]:
    """Value -> count, from the top values and the rank histogram (the top values win)."""
    counts = {v.value: float(v.frequency) for v in view.stats.string_stats.top_values}
    for value, count in view.string_counts.items():
        counts.setdefault(value, count)
    return counts
