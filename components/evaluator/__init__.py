"""Evaluator: scores a model on an eval split, overall and per slice, and blesses it or not.

The model is called through the serving-model contract (``sluice.components.serving``):
a model exported by ``export_serving_model`` is fed the raw Parquet columns through its
``evaluate_raw_features`` function; any other SavedModel's ``serving_default`` signature
is fed serialized ``tf.Example``s built from the raw rows. Labels come from the
``label_key`` column of the data, or, when the data has no such column (a label made by
Transform, e.g. ``tips_xf``), from the model's transformed features
(``evaluate_raw_features``, else the ``transform_features`` signature), as TFMA's
``preprocessing_function_names``.

Problems: ``binary``, ``multiclass`` and ``regression`` (mse, rmse, mae, mape over non-zero
labels, r2, label and prediction means), given or inferred (``problem="auto"``, said on
stderr); logits become probabilities (``from_logits``, or detected when an output lies
outside [0, 1]); class probabilities that do not sum to 1 are an error.

``metrics.json`` also holds ``"plots"`` for the Kubeflow UI: a confusion matrix
(binary at ``decision_threshold``, or multiclass) and, for binary problems, a ROC
curve of at most ``ROC_CURVE_MAX_POINTS`` points.

Thresholds, keyed by metric name::

    thresholds={
        "binary_accuracy": MetricThreshold(lower_bound=0.85),
        "auc": MetricThreshold(max_regression=0.01),            # vs the baseline model
        "log_loss": MetricThreshold(higher_is_better=False, min_improvement=0.0),
    }

Value thresholds (``lower_bound`` / ``upper_bound``) always apply; change
thresholds (``min_improvement`` / ``max_regression``, absolute or, with
``relative=True``, a fraction of the baseline's value) compare against the
baseline: the ``baseline_model`` input, else the pipeline's latest blessed
model from the metadata store; without one they are recorded as skipped.

In process, the eval split is read in record batches, each scored and folded into mergeable
accumulators per slice, so memory is bounded by a batch, whatever the split's size; splits of
up to 1M rows keep exact metrics, larger ones take AUC and the curves from a 10,000-bucket score
histogram. On runners with workers (any Beam option but the in-process runner) the same runs
as a Beam pipeline: each file (or run of row groups) is scored by a worker, always with the
histogram (``engine`` in metrics.json says that path ran).

Modules: ``metrics`` (exact, numpy), ``plots``, ``slicing``, ``analysis`` (the result and the
metric functions), ``thresholds``, ``predict`` (calling the serving models), ``accumulators``,
``stream`` (the in-process path), ``beam`` (the Beam path), ``report`` (report.html),
``component`` (the executor ``evaluate_model`` and ``Evaluator``).
"""

from sluice.components.evaluator.component import Evaluator, evaluate_model
from sluice.components.evaluator.metrics import (
    average_precision,
    binary_metrics,
    confusion_matrix,
    multiclass_metrics,
    regression_metrics,
)
from sluice.components.evaluator.plots import ROC_CURVE_MAX_POINTS, calibration, pr_curve, roc_curve
from sluice.components.evaluator.thresholds import MetricThreshold

__all__ = [
    "Evaluator",
    "MetricThreshold",
    "ROC_CURVE_MAX_POINTS",
    "average_precision",
    "binary_metrics",
    "calibration",
    "confusion_matrix",
    "evaluate_model",
    "multiclass_metrics",
    "pr_curve",
    "regression_metrics",
    "roc_curve",
]
