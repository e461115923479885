"""One evaluation's numbers: metrics overall and per slice, for the model and its baseline, and
the plot data. Pure numpy over arrays the component has read; no files."""

from __future__ import annotations

import dataclasses
from typing import Any

from sluice.components.evaluator.metrics import binary_metrics, json_safe, multiclass_metrics, regression_metrics
from sluice.components.evaluator.plots import evaluation_plots
from sluice.components.evaluator.slicing import slice_masks
from sluice.components.sdk import ComponentError


@dataclasses.dataclass
class Analysis:
    """Metrics by slice name (``overall`` first) for the model and, when there is one, the baseline.

    ``small``: the slices under ``min_slice_size`` examples (reported, not charted or judged);
    ``specs``: each slice's spec (``payment_type``, ``payment_type × trip_start_hour``).
    """

    problem: str
    overall: dict[str, Any]
    slices: dict[str, dict[str, Any]]
    specs: dict[str, str]
    small: list[str]
    baseline: dict[str, Any] | None = None
    baseline_slices: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    plots: dict[str, Any] = dataclasses.field(default_factory=dict)
    baseline_plots: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Scored:
    """The eval rows as numbers: labels (class ids or values), which rows have one, the model's
    scores, the baseline's (or None) and the example weights (or None)."""

    labels: Any
    has_label: Any
    scores: Any
    baseline_scores: Any = None
    weights: Any = None


def metric_function(problem: str, decision_threshold: float, class_names: list[str] | None):
    """``compute(labels, scores, weights) -> metrics`` for the problem."""
    def compute(labels, scores, weights):
        if problem == "binary":
            return json_safe(binary_metrics(labels, scores, decision_threshold, weights))
        if problem == "regression":
            return json_safe(regression_metrics(labels, scores, weights))
        return json_safe(multiclass_metrics(labels, scores, weights, class_names))
    return compute


def analyze(scored: Scored, table, problem: str, *, specs: list[str | list[str]], buckets: dict[str, int],
            min_slice_size: int, decision_threshold: float, label_vocabulary: list[str] | None,
            data_file: str) -> Analysis:
    """Metrics overall and per slice (model and baseline) and the model's plot data."""
    import numpy as np

    compute = metric_function(problem, decision_threshold, label_vocabulary)

    def on(mask, scores):
        usable = mask & scored.has_label
        weights = scored.weights[usable] if scored.weights is not None else None
        return compute(scored.labels[usable], scores[usable], weights)

    everything = np.ones(table.num_rows, dtype=bool)
    analysis = Analysis(problem, on(everything, scored.scores), {}, {}, [])
    with_baseline = scored.baseline_scores is not None
    if with_baseline:
        analysis.baseline = on(everything, scored.baseline_scores)
    for spec, name, mask in slice_masks(table, specs, data_file, buckets):
        analysis.slices[name] = on(mask, scored.scores)
        analysis.specs[name] = spec
        if analysis.slices[name]["example_count"] < min_slice_size:
            analysis.small.append(name)
        if with_baseline:
            analysis.baseline_slices[name] = on(mask, scored.baseline_scores)
    labelled = scored.has_label
    weights = scored.weights[labelled] if scored.weights is not None else None
    analysis.plots = evaluation_plots(scored.labels[labelled], scored.scores[labelled], problem,
                                      decision_threshold, label_vocabulary, weights)
    if with_baseline:
        analysis.baseline_plots = evaluation_plots(scored.labels[labelled], scored.baseline_scores[labelled],
                                                   problem, decision_threshold, label_vocabulary, weights)
    return analysis


def read_weights(table, weight_key: str, data_file: str):
    """The example weights of the ``weight_key`` column: numbers, none missing or negative."""
    import numpy as np
    import pyarrow as pa

    if weight_key not in table.column_names:
        raise ComponentError(f"Evaluator: parameter 'example_weight_key' names '{weight_key}', which is not a "
                             f"column of {data_file}")
    column = table.column(weight_key).combine_chunks()
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise ComponentError(f"Evaluator: example weight '{weight_key}' in {data_file} has type {column.type}; "
                             f"weights are numbers")
    weights = column.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ComponentError(f"Evaluator: example weight '{weight_key}' in {data_file} row {row} is "
                             f"{weights[row]}; weights are finite and >= 0")
    return weights
