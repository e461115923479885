"""Evaluation metrics (vectorized numpy): binary, multiclass and regression metrics, AUC, ROC, confusion matrix."""

from __future__ import annotations

import math
from typing import Any

ROC_CURVE_MAX_POINTS = 200


def _auc(labels, scores) -> float | None:
    """ROC AUC via the rank-sum (Mann-Whitney) statistic, ties averaged."""
    import numpy as np

    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    unique, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct score.
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    rank_sum = average_rank[inverse][labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def binary_metrics(labels, scores, decision_threshold: float = 0.5) -> dict[str, float | None]:
    """example_count, binary_accuracy, auc, precision, recall, log_loss, label/prediction means.

    >>> import numpy as np
    >>> binary_metrics(np.array([0, 1, 1]), np.array([0.2, 0.6, 0.4]))["binary_accuracy"]
    0.6666666666666666
    """
    import numpy as np

    count = len(labels)
    if count == 0:
        return {"example_count": 0}
    predicted = scores >= decision_threshold
    actual = labels == 1
    true_positives = int(np.sum(predicted & actual))
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    return {
        "example_count": count,
        "binary_accuracy": float(np.mean(predicted == actual)),
        "auc": _auc(labels, scores),
        "precision": true_positives / int(predicted.sum()) if predicted.any() else None,
        "recall": true_positives / int(actual.sum()) if actual.any() else None,
        "log_loss": float(-np.mean(np.where(actual, np.log(clipped), np.log(1 - clipped)))),
        "label_mean": float(actual.mean()),
        "prediction_mean": float(scores.mean()),
    }


def multiclass_metrics(labels, probabilities) -> dict[str, float | None]:
    """example_count, accuracy and log_loss of class probabilities ``[n, classes]``."""
    import numpy as np

    count = len(labels)
    if count == 0:
        return {"example_count": 0}
    picked = probabilities[np.arange(count), labels]
    return {
        "example_count": count,
        "accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
        "log_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
    }


def regression_metrics(labels, predictions) -> dict[str, float | None]:
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
    errors = predictions - labels
    mse = float(np.mean(errors ** 2))
    nonzero = labels != 0
    spread = float(np.sum((labels - labels.mean()) ** 2))
    return {
        "example_count": count,
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(errors))),
        "mape": float(100.0 * np.mean(np.abs(errors[nonzero] / labels[nonzero]))) if nonzero.any() else None,
        "r2": 1.0 - float(np.sum(errors ** 2)) / spread if spread > 0 else None,
        "label_mean": float(labels.mean()),
        "prediction_mean": float(predictions.mean()),
    }


def json_safe(metrics: dict) -> dict:
    """``metrics`` with non-finite floats as None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def confusion_matrix(labels, predicted, class_count: int) -> list[list[int]]:
    """Counts ``matrix[actual][predicted]`` of integer class ids.

    >>> import numpy as np
    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    [[1, 0], [1, 1]]
    """
    import numpy as np

    counts = np.bincount(labels * class_count + predicted, minlength=class_count * class_count)
    return counts[:class_count * class_count].reshape(class_count, class_count).tolist()


def roc_curve(labels, scores, max_points: int = ROC_CURVE_MAX_POINTS) -> dict[str, list[float]] | None:
    """ROC points (fpr, tpr at ``score >= threshold``), thresholds descending, at most ``max_points``.

    Starts at (0, 0) (a threshold above every score) and ends at (1, 1); None without both
    classes.

    >>> import numpy as np
    >>> curve = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    >>> curve["fpr"], curve["tpr"]
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    import numpy as np

    actual = labels == 1
    positives = int(actual.sum())
    negatives = len(actual) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_actual = scores[order], actual[order]
    # The last row of each run of equal scores: the point where that threshold's counts are final.
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_positives = np.cumsum(sorted_actual)[ends]
    false_positives = (ends + 1) - true_positives
    thresholds = sorted_scores[ends]
    if len(ends) > max_points - 1:  # evenly spaced along the curve, keeping the last point (1, 1)
        keep = np.unique(np.linspace(0, len(ends) - 1, max_points - 1).round().astype(np.int64))
        true_positives, false_positives, thresholds = true_positives[keep], false_positives[keep], thresholds[keep]
    above_all = float(np.nextafter(sorted_scores[0], np.inf))
    return {"fpr": [0.0] + (false_positives / negatives).tolist(),
            "tpr": [0.0] + (true_positives / positives).tolist(),
            "thresholds": [above_all] + thresholds.astype(np.float64).tolist()}


def evaluation_plots(labels, scores, problem: str, decision_threshold: float = 0.5,
                     label_vocabulary: list[str] | None = None) -> dict[str, Any]:
    """Plot data for metrics.json (read by the Kubeflow UI): a confusion matrix, and for binary
    problems a ROC curve. ``labels``/``scores`` are the rows with a label."""
    import numpy as np

    if problem == "regression":
        return {}
    if problem == "binary":
        predicted = (scores >= decision_threshold).astype(np.int64)
        plots: dict[str, Any] = {"confusion_matrix": {"labels": ["0", "1"],
                                                      "matrix": confusion_matrix(labels, predicted, 2)}}
        finite = np.isfinite(scores)  # a NaN score has no place on the curve
        curve = roc_curve(labels[finite], scores[finite])
        if curve is not None:
            plots["roc_curve"] = curve
        return plots
    class_count = scores.shape[1] if scores.ndim == 2 else 0
    names = list(label_vocabulary) if label_vocabulary is not None else []
    names += [str(i) for i in range(len(names), class_count)]
    predicted = np.argmax(scores, axis=1) if len(scores) else np.zeros([0], dtype=np.int64)
    return {"confusion_matrix": {"labels": names[:class_count],
                                 "matrix": confusion_matrix(labels, predicted, class_count)}}
