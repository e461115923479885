"""Plot data of an evaluation (metrics.json ``plots``): ROC and precision-recall curves, a
calibration table and the confusion matrix; for regression, a histogram of the residuals. The
report draws them; the Kubeflow UI reads the ROC curve and the confusion matrix."""

from __future__ import annotations

from typing import Any

from sluice.components.evaluator.metrics import class_names_for, confusion_matrix, threshold_counts

CURVE_MAX_POINTS = 200
ROC_CURVE_MAX_POINTS = CURVE_MAX_POINTS
CALIBRATION_BUCKETS = 10


def _thinned(count: int, max_points: int):
    """Indices of at most ``max_points - 1`` points evenly spaced along a curve, the last kept."""
    import numpy as np

    if count <= max_points - 1:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max_points - 1).round().astype(np.int64))


def roc_curve(labels, scores, max_points: int = CURVE_MAX_POINTS, weights=None) -> dict[str, list[float]] | None:
    """ROC points (fpr, tpr at ``score >= threshold``), thresholds descending, at most ``max_points``.

    Starts at (0, 0) (a threshold above every score) and ends at (1, 1); None without both
    classes.

    >>> import numpy as np
    >>> curve = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    >>> curve["fpr"], curve["tpr"]
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    import numpy as np

    thresholds, tp, fp, positives, negatives = threshold_counts(labels, scores, weights)
    if positives <= 0 or negatives <= 0:
        return None
    keep = _thinned(len(thresholds), max_points)
    above_all = float(np.nextafter(thresholds[0], np.inf))
    return {"fpr": [0.0] + (fp[keep] / negatives).tolist(),
            "tpr": [0.0] + (tp[keep] / positives).tolist(),
            "thresholds": [above_all] + thresholds[keep].astype(np.float64).tolist()}


def pr_curve(labels, scores, max_points: int = CURVE_MAX_POINTS, weights=None) -> dict[str, list[float]] | None:
    """Precision-recall points at each distinct score (descending), at most ``max_points``; None
    without positives."""
    import numpy as np

    thresholds, tp, fp, positives, _negatives = threshold_counts(labels, scores, weights)
    if positives <= 0:
        return None
    keep = _thinned(len(thresholds), max_points)
    precision = tp[keep] / np.maximum(tp[keep] + fp[keep], 1e-300)
    return {"recall": (tp[keep] / positives).tolist(), "precision": precision.tolist(),
            "thresholds": thresholds[keep].astype(np.float64).tolist()}


def calibration(labels, scores, buckets: int = CALIBRATION_BUCKETS, weights=None) -> dict[str, list[float]]:
    """Mean prediction against mean label in equal-width buckets of the prediction over [0, 1]
    (the buckets with examples)."""
    import numpy as np

    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    which = np.clip((np.clip(scores, 0.0, 1.0) * buckets).astype(np.int64), 0, buckets - 1)
    total = np.bincount(which, weights=w, minlength=buckets)
    predicted = np.bincount(which, weights=w * scores, minlength=buckets)
    actual = np.bincount(which, weights=w * (labels == 1), minlength=buckets)
    used = total > 0
    return {"mean_prediction": (predicted[used] / total[used]).tolist(),
            "mean_label": (actual[used] / total[used]).tolist(),
            "weight": total[used].tolist()}


# Residual buckets per doubling of |prediction - label|: scale-free, so accumulators merge them unchanged.
RESIDUAL_BUCKETS_PER_OCTAVE = 2
_RESIDUAL_OFFSET = 100_000  # keeps a bucket's octave index positive inside its signed key


def residual_keys(errors):
    """Each error's bucket key: 0 for no error, else sign x (offset + floor(log2|e| x buckets per octave))."""
    import numpy as np

    size = np.abs(errors)
    with np.errstate(divide="ignore", invalid="ignore"):
        octave = np.floor(np.log2(np.where(size > 0, size, 1.0)) * RESIDUAL_BUCKETS_PER_OCTAVE)
    keys = np.sign(errors) * (_RESIDUAL_OFFSET + octave)
    return np.where(np.isfinite(errors), keys, 0).astype(np.int64), np.isfinite(errors)


def residual_histogram(keys, weights) -> dict[str, list[float]]:
    """Residual (prediction - label) buckets in value order: ``low``, ``high`` edges and the ``weight``
    in each (from ``residual_keys``' keys and the rows' weights summed by key)."""
    import numpy as np

    low, high = [], []
    for key in keys:
        if key == 0:
            low.append(0.0)
            high.append(0.0)
            continue
        index = (abs(int(key)) - _RESIDUAL_OFFSET) / RESIDUAL_BUCKETS_PER_OCTAVE
        bounds = (2.0 ** index, 2.0 ** (index + 1 / RESIDUAL_BUCKETS_PER_OCTAVE))
        low.append(bounds[0] if key > 0 else -bounds[1])
        high.append(bounds[1] if key > 0 else -bounds[0])
    order = np.argsort(low, kind="stable")
    return {"low": [low[i] for i in order], "high": [high[i] for i in order],
            "weight": [float(weights[i]) for i in order]}


def residuals(labels, predictions, weights=None) -> dict[str, list[float]]:
    """The residual histogram of the rows (see ``residual_histogram``)."""
    import numpy as np

    keys, finite = residual_keys(predictions - labels)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    unique, inverse = np.unique(keys[finite], return_inverse=True)
    return residual_histogram(unique, np.bincount(inverse, weights=w[finite], minlength=len(unique)))


def evaluation_plots(labels, scores, problem: str, decision_threshold: float = 0.5,
                     label_vocabulary: list[str] | None = None, weights=None) -> dict[str, Any]:
    """Plot data for metrics.json: a confusion matrix, and for binary problems the ROC and
    precision-recall curves and the calibration table. ``labels``/``scores`` are the rows with a label."""
    import numpy as np

    if problem == "regression":
        return {"residuals": residuals(labels, scores, weights)} if len(labels) else {}
    if problem == "binary":
        predicted = (scores >= decision_threshold).astype(np.int64)
        plots: dict[str, Any] = {"confusion_matrix": {"labels": ["0", "1"],
                                                      "matrix": confusion_matrix(labels, predicted, 2, weights)}}
        finite = np.isfinite(scores)  # a NaN score has no place on a curve
        kept = None if weights is None else weights[finite]
        for name, curve in (("roc_curve", roc_curve(labels[finite], scores[finite], weights=kept)),
                            ("pr_curve", pr_curve(labels[finite], scores[finite], weights=kept))):
            if curve is not None:
                plots[name] = curve
        if finite.any():
            plots["calibration"] = calibration(labels[finite], scores[finite], weights=kept)
        return plots
    class_count = scores.shape[1] if scores.ndim == 2 else 0
    predicted = np.argmax(scores, axis=1) if len(scores) else np.zeros([0], dtype=np.int64)
    return {"confusion_matrix": {"labels": class_names_for(label_vocabulary, class_count),
                                 "matrix": confusion_matrix(labels, predicted, class_count, weights)}}
