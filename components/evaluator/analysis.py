"""One evaluation's numbers (metrics overall and per slice, for the model and its baseline, and the
plot data), the exact metric function of each problem, and the example weights of a table."""

from __future__ import annotations

import dataclasses
from typing import Any

from sluice.components.evaluator.metrics import binary_metrics, json_safe, multiclass_metrics, regression_metrics
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


def metric_function(problem: str, decision_threshold: float, class_names: list[str] | None):
    """``compute(labels, scores, weights) -> metrics`` for the problem."""
    def compute(labels, scores, weights):
        if problem == "binary":
            return json_safe(binary_metrics(labels, scores, decision_threshold, weights))
        if problem == "regression":
            return json_safe(regression_metrics(labels, scores, weights))
        return json_safe(multiclass_metrics(labels, scores, weights, class_names))
    return compute


def read_weights(table, weight_key: str, data_file: str, first_row: int = 0):
    """The example weights of the ``weight_key`` column: numbers, none missing or negative
    (``first_row``: the file's row number of the table's first row, for errors)."""
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
        raise ComponentError(f"Evaluator: example weight '{weight_key}' in {data_file} row {first_row + row} is "
                             f"{weights[row]}; weights are finite and >= 0")
    return weights
