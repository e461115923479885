"""Evaluation metrics (vectorized numpy) for binary, multiclass and regression problems.

Every function takes optional per-example ``weights`` (TFMA's example weights); without them
each example weighs 1. ``example_count`` is always the number of rows, ``weighted_example_count``
their total weight when weights are given.
"""

from __future__ import annotations

import math
from typing import Any


def _weights(weights, count: int):
    import numpy as np

    return np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)


def threshold_counts(labels, scores, weights=None):
    """(thresholds descending, true positives, false positives): the weighted counts of
    ``score >= threshold`` at each distinct score, positives and negatives in total.

    >>> import numpy as np
    >>> t, tp, fp, p, n = threshold_counts(np.array([0, 1, 1]), np.array([0.2, 0.6, 0.6]))
    >>> t.tolist(), tp.tolist(), fp.tolist(), p, n
    ([0.6, 0.2], [2.0, 2.0], [0.0, 1.0], 2.0, 1.0)
    """
    import numpy as np

    w = _weights(weights, len(labels))
    actual = labels == 1
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    positive_weight = np.where(actual, w, 0.0)[order]
    negative_weight = np.where(actual, 0.0, w)[order]
    true_positives = np.cumsum(positive_weight)[ends] if len(ends) else np.zeros(0)
    false_positives = np.cumsum(negative_weight)[ends] if len(ends) else np.zeros(0)
    return sorted_scores[ends], true_positives, false_positives, float(positive_weight.sum()), \
        float(negative_weight.sum())


def auc(labels, scores, weights=None) -> float | None:
    """ROC AUC: the trapezoids under every point of the curve (ties count half, as Mann-Whitney)."""
    import numpy as np

    _thresholds, tp, fp, positives, negatives = threshold_counts(labels, scores, weights)
    if positives <= 0 or negatives <= 0:
        return None
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(labels, scores, weights=None) -> float | None:
    """The area under the precision-recall curve as average precision: precision at each distinct
    score weighted by the recall it adds (no interpolation)."""
    import numpy as np

    _thresholds, tp, fp, positives, _negatives = threshold_counts(labels, scores, weights)
    if positives <= 0:
        return None
    precision = tp / np.maximum(tp + fp, 1e-300)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(labels, scores, decision_threshold: float = 0.5, weights=None) -> dict[str, float | None]:
    """example_count, binary_accuracy, auc, auc_pr, precision, recall, f1, log_loss, calibration,
    label/prediction means and the confusion counts at ``decision_threshold``.

    >>> import numpy as np
    >>> binary_metrics(np.array([0, 1, 1]), np.array([0.2, 0.6, 0.4]))["binary_accuracy"]
    0.6666666666666666
    """
    import numpy as np

    count = len(labels)
    if count == 0:
        return {"example_count": 0}
    w = _weights(weights, count)
    total = float(w.sum())
    predicted = scores >= decision_threshold
    actual = labels == 1
    tp, fp = float(w[predicted & actual].sum()), float(w[predicted & ~actual].sum())
    fn, tn = float(w[~predicted & actual].sum()), float(w[~predicted & ~actual].sum())
    precision = tp / (tp + fp) if tp + fp > 0 else None
    recall = tp / (tp + fn) if tp + fn > 0 else None
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    label_mean = float(np.dot(w, actual) / total) if total else None
    prediction_mean = float(np.dot(w, scores) / total) if total else None
    metrics = {
        "example_count": count,
        "binary_accuracy": (tp + tn) / total if total else None,
        "auc": auc(labels, scores, weights),
        "auc_pr": average_precision(labels, scores, weights),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision and recall else (
            0.0 if precision is not None and recall is not None else None),
        "log_loss": float(-np.dot(w, np.where(actual, np.log(clipped), np.log(1 - clipped))) / total)
        if total else None,
        "calibration": prediction_mean / label_mean if label_mean else None,
        "label_mean": label_mean,
        "prediction_mean": prediction_mean,
        "true_positives": tp, "false_positives": fp, "true_negatives": tn, "false_negatives": fn,
    }
    if weights is not None:
        metrics["weighted_example_count"] = total
    return metrics


def multiclass_metrics(labels, probabilities, weights=None,
                       class_names: list[str] | None = None) -> dict[str, float | None]:
    """example_count, accuracy and log_loss of class probabilities ``[n, classes]``, and each
    class's ``precision/<class>`` and ``recall/<class>`` (the class's name, or its id)."""
    import numpy as np

    count = len(labels)
    if count == 0:
        return {"example_count": 0}
    w = _weights(weights, count)
    total = float(w.sum())
    picked = probabilities[np.arange(count), labels]
    predicted = np.argmax(probabilities, axis=1)
    metrics: dict[str, float | None] = {
        "example_count": count,
        "accuracy": float(np.dot(w, predicted == labels) / total) if total else None,
        "log_loss": float(-np.dot(w, np.log(np.clip(picked, 1e-7, 1.0))) / total) if total else None,
    }
    for class_id, name in enumerate(class_names_for(class_names, probabilities.shape[1])):
        hits = float(w[(predicted == class_id) & (labels == class_id)].sum())
        called, actual = float(w[predicted == class_id].sum()), float(w[labels == class_id].sum())
        metrics[f"precision/{name}"] = hits / called if called else None
        metrics[f"recall/{name}"] = hits / actual if actual else None
    if weights is not None:
        metrics["weighted_example_count"] = total
    return metrics


def class_names_for(names: list[str] | None, class_count: int) -> list[str]:
    names = list(names or [])[:class_count]
    return names + [str(i) for i in range(len(names), class_count)]


def regression_metrics(labels, predictions, weights=None) -> dict[str, float | None]:
    """example_count, mse, rmse, mae, mape (percent, over the rows whose label is not 0), r2,
    label and prediction means.

    >>> import numpy as np
    >>> regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]))["mae"]
    0.6666666666666666
    """
    import numpy as np

    count = len(labels)
    if count == 0:
        return {"example_count": 0}
    w = _weights(weights, count)
    total = float(w.sum())
    if not total:
        return {"example_count": count}
    errors = predictions - labels
    mse = float(np.dot(w, errors ** 2) / total)
    nonzero = labels != 0
    label_mean = float(np.dot(w, labels) / total)
    spread = float(np.dot(w, (labels - label_mean) ** 2))
    nonzero_weight = float(w[nonzero].sum())
    metrics = {
        "example_count": count,
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.dot(w, np.abs(errors)) / total),
        "mape": float(100.0 * np.dot(w[nonzero], np.abs(errors[nonzero] / labels[nonzero])) / nonzero_weight)
        if nonzero_weight else None,
        "r2": 1.0 - float(np.dot(w, errors ** 2)) / spread if spread > 0 else None,
        "label_mean": label_mean,
        "prediction_mean": float(np.dot(w, predictions) / total),
    }
    if weights is not None:
        metrics["weighted_example_count"] = total
    return metrics


def json_safe(metrics: dict) -> dict:
    """``metrics`` with non-finite floats as None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def confusion_matrix(labels, predicted, class_count: int, weights=None) -> list[list[float]]:
    """Counts (or total weights) ``matrix[actual][predicted]`` of integer class ids.

    >>> import numpy as np
    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    [[1, 0], [1, 1]]
    """
    import numpy as np

    cells = labels * class_count + predicted
    counts = np.bincount(cells, weights=weights, minlength=class_count * class_count)
    matrix = counts[:class_count * class_count].reshape(class_count, class_count)
    return matrix.tolist() if weights is not None else matrix.astype(np.int64).tolist()


def headline_metric(problem: str) -> str:
    """The metric a report charts by slice when no threshold names one."""
    return {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}.get(problem, "example_count")


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
