"""Mergeable evaluation accumulators: what the Evaluator's Beam path keeps per slice, instead of the rows.

Each accumulator folds batches of (labels, scores, weights) with ``add`` and combines with
``merge`` in any order, so workers summarize their rows and a combine merges them. ``metrics``
gives the keys of ``metrics.binary_metrics`` / ``multiclass_metrics`` / ``regression_metrics``,
and ``plots`` what ``plots.evaluation_plots`` gives.

Counts, sums and confusion counts are exact (up to the order of float additions). Binary
``auc`` and ``auc_pr`` come from weighted histograms of the score over ``GRID`` equal buckets
of [0, 1], as TFMA computes them: scores in one bucket count as ties; the ROC and PR curves'
points are the buckets' lower edges. A NaN score sits below every bucket (as it sorts last in
the exact computation) and stays off the curves.

``ExactAccumulator`` keeps its rows instead and gives ``metrics``' exact figures: the in-process
path uses it for splits of up to ``stream.EXACT_ROWS`` rows.
"""

from __future__ import annotations

import math

import numpy as np

from sluice.components.evaluator.metrics import class_names_for, json_safe
from sluice.components.evaluator.plots import (
    CALIBRATION_BUCKETS,
    CURVE_MAX_POINTS,
    _thinned,
    residual_histogram,
    residual_keys,
)

GRID = 10_000


def _weights(weights, count: int):
    return np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)


def _sparse_merge(indices, values):
    """Sums ``values`` (rows: one array each) by index: (sorted unique indices, summed rows)."""
    unique, inverse = np.unique(indices, return_inverse=True)
    return unique, np.stack([np.bincount(inverse, weights=v, minlength=len(unique)) for v in values])


class BinaryAccumulator:
    """Sums of a binary problem's rows and the score histograms of positives and negatives
    (sparse: only the buckets with rows)."""

    def __init__(self, decision_threshold: float, weighted: bool):
        self.decision_threshold = decision_threshold
        self.weighted = weighted
        self.count = 0
        # weight, positive weight, weighted score, weighted log loss, tp, fp, fn, tn
        self.sums = np.zeros(8)
        self.buckets = np.zeros(0, dtype=np.int64)  # 0: NaN scores; 1 + floor(score * GRID)
        self.histogram = np.zeros((2, 0))  # positive and negative weight per bucket
        self.calibration = np.zeros((3, CALIBRATION_BUCKETS))  # weight, weighted score, positive weight

    def add(self, labels, scores, weights=None) -> BinaryAccumulator:
        w = _weights(weights, len(labels))
        actual = labels == 1
        positive = np.where(actual, w, 0.0)
        clipped = np.clip(scores, 1e-7, 1 - 1e-7)
        loss = -np.log(np.where(actual, clipped, 1 - clipped))
        # 0: true negative, 1: false negative, 2: false positive, 3: true positive (NaN scores: not predicted)
        tn, fn, fp, tp = np.bincount((scores >= self.decision_threshold) * 2 + actual, weights=w, minlength=4)
        self.count += len(labels)
        self.sums += [w.sum(), positive.sum(), np.dot(w, scores), np.dot(w, loss), tp, fp, fn, tn]
        finite = np.isfinite(scores)
        every = bool(finite.all())
        unit = np.clip(scores if every else np.where(finite, scores, 0.0), 0.0, 1.0)
        bucket = 1 + np.minimum(unit * GRID, GRID - 1).astype(np.int64)
        if not every:
            bucket[~finite] = 0
        # Dense over the grid (counting, no sort), then sparse again: the buckets with rows.
        rows = np.bincount(bucket, minlength=GRID + 1)
        dense = np.stack([np.bincount(bucket, weights=positive, minlength=GRID + 1),
                          np.bincount(bucket, weights=w - positive, minlength=GRID + 1)])
        dense[:, self.buckets] += self.histogram
        rows[self.buckets] += 1
        self.buckets = np.flatnonzero(rows)
        self.histogram = dense[:, self.buckets]
        # The calibration table's own buckets, exactly as plots.calibration cuts them.
        if not every:
            unit, w, positive, scores = unit[finite], w[finite], positive[finite], scores[finite]
        which = np.minimum((unit * CALIBRATION_BUCKETS).astype(np.int64), CALIBRATION_BUCKETS - 1)
        self.calibration += [np.bincount(which, weights=v, minlength=CALIBRATION_BUCKETS)
                             for v in (w, w * scores, positive)]
        return self

    def merge(self, other: BinaryAccumulator) -> BinaryAccumulator:
        self.count += other.count
        self.sums += other.sums
        self.calibration += other.calibration
        self.buckets, self.histogram = _sparse_merge(np.r_[self.buckets, other.buckets],
                                                     list(np.c_[self.histogram, other.histogram]))
        return self

    def _curve(self, finite_only: bool):
        """(thresholds descending, tp, fp, positives, negatives) at each bucket with rows."""
        keep = self.buckets > 0 if finite_only else np.ones(len(self.buckets), dtype=bool)
        order = np.argsort(-self.buckets[keep], kind="stable")
        positive, negative = self.histogram[0][keep][order], self.histogram[1][keep][order]
        thresholds = np.maximum(self.buckets[keep][order] - 1, 0) / GRID
        return thresholds, np.cumsum(positive), np.cumsum(negative), float(positive.sum()), float(negative.sum())

    def _auc(self):
        _t, tp, fp, positives, negatives = self._curve(finite_only=False)
        if positives <= 0 or negatives <= 0:
            return None
        tpr, fpr = np.r_[0.0, tp / positives], np.r_[0.0, fp / negatives]
        return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))

    def _auc_pr(self):
        _t, tp, fp, positives, _n = self._curve(finite_only=False)
        if positives <= 0:
            return None
        precision = tp / np.maximum(tp + fp, 1e-300)
        return float(np.sum(np.diff(np.r_[0.0, tp / positives]) * precision))

    def metrics(self, class_names=None) -> dict:
        """The keys and formulas of ``metrics.binary_metrics``."""
        if self.count == 0:
            return {"example_count": 0}
        total, positive, scored, loss, tp, fp, fn, tn = (float(v) for v in self.sums)
        precision = tp / (tp + fp) if tp + fp > 0 else None
        recall = tp / (tp + fn) if tp + fn > 0 else None
        label_mean = positive / total if total else None
        prediction_mean = scored / total if total else None
        metrics = {
            "example_count": self.count,
            "binary_accuracy": (tp + tn) / total if total else None,
            "auc": self._auc(),
            "auc_pr": self._auc_pr(),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision and recall else (
                0.0 if precision is not None and recall is not None else None),
            "log_loss": loss / total if total else None,
            "calibration": prediction_mean / label_mean if label_mean else None,
            "label_mean": label_mean,
            "prediction_mean": prediction_mean,
            "true_positives": tp, "false_positives": fp, "true_negatives": tn, "false_negatives": fn,
        }
        if self.weighted:
            metrics["weighted_example_count"] = total
        return json_safe(metrics)

    def plots(self, class_names=None) -> dict:
        """What ``plots.evaluation_plots`` gives, the curves' points at the buckets' edges."""
        tp, fp, fn, tn = (float(v) for v in self.sums[4:])
        matrix = [[tn, fp], [fn, tp]] if self.weighted else [[int(tn), int(fp)], [int(fn), int(tp)]]
        plots: dict = {"confusion_matrix": {"labels": ["0", "1"], "matrix": matrix}}
        thresholds, tps, fps, positives, negatives = self._curve(finite_only=True)
        keep = _thinned(len(thresholds), CURVE_MAX_POINTS)
        if positives > 0 and negatives > 0:
            plots["roc_curve"] = {"fpr": [0.0] + (fps[keep] / negatives).tolist(),
                                  "tpr": [0.0] + (tps[keep] / positives).tolist(),
                                  "thresholds": [float(np.nextafter(thresholds[0], np.inf))]
                                  + thresholds[keep].tolist()}
        if positives > 0:
            precision = tps[keep] / np.maximum(tps[keep] + fps[keep], 1e-300)
            plots["pr_curve"] = {"recall": (tps[keep] / positives).tolist(), "precision": precision.tolist(),
                                 "thresholds": thresholds[keep].tolist()}
        if (self.buckets > 0).any():
            total, predicted, actual = self.calibration
            used = total > 0
            plots["calibration"] = {"mean_prediction": (predicted[used] / total[used]).tolist(),
                                    "mean_label": (actual[used] / total[used]).tolist(),
                                    "weight": total[used].tolist()}
        return plots


class MulticlassAccumulator:
    """The weighted confusion matrix ``[actual][predicted]`` and the log-loss sum of class probabilities."""

    def __init__(self, class_count: int, weighted: bool):
        self.weighted = weighted
        self.count = 0
        self.loss = 0.0
        self.matrix = np.zeros((class_count, class_count))

    def add(self, labels, probabilities, weights=None) -> MulticlassAccumulator:
        w = _weights(weights, len(labels))
        classes = len(self.matrix)
        picked = probabilities[np.arange(len(labels)), labels]
        predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
        self.count += len(labels)
        self.loss += float(-np.dot(w, np.log(np.clip(picked, 1e-7, 1.0))))
        self.matrix += np.bincount(labels * classes + predicted, weights=w,
                                   minlength=classes * classes)[:classes * classes].reshape(classes, classes)
        return self

    def merge(self, other: MulticlassAccumulator) -> MulticlassAccumulator:
        self.count += other.count
        self.loss += other.loss
        self.matrix += other.matrix
        return self

    def metrics(self, class_names=None) -> dict:
        """The keys and formulas of ``metrics.multiclass_metrics``."""
        if self.count == 0:
            return {"example_count": 0}
        total = float(self.matrix.sum())
        metrics = {"example_count": self.count,
                   "accuracy": float(np.trace(self.matrix)) / total if total else None,
                   "log_loss": self.loss / total if total else None}
        for class_id, name in enumerate(class_names_for(class_names, len(self.matrix))):
            hits = float(self.matrix[class_id, class_id])
            called, actual = float(self.matrix[:, class_id].sum()), float(self.matrix[class_id].sum())
            metrics[f"precision/{name}"] = hits / called if called else None
            metrics[f"recall/{name}"] = hits / actual if actual else None
        if self.weighted:
            metrics["weighted_example_count"] = total
        return json_safe(metrics)

    def plots(self, class_names=None) -> dict:
        matrix = self.matrix.tolist() if self.weighted else self.matrix.astype(np.int64).tolist()
        return {"confusion_matrix": {"labels": class_names_for(class_names, len(self.matrix)), "matrix": matrix}}


class RegressionAccumulator:
    """Weighted sums of labels, predictions and errors; the labels' spread merged as Chan et al.'s
    parallel variance (a mean and a sum of squared deviations), so r2 keeps its precision."""

    def __init__(self, weighted: bool):
        self.weighted = weighted
        self.count = 0
        # weight, weighted label mean, squared deviations of labels, prediction, e^2, |e|, nonzero weight, |e/y|
        self.sums = np.zeros(8)
        self.residual_keys = np.zeros(0, dtype=np.int64)  # plots.residual_keys, with their weights
        self.residual_weights = np.zeros(0)

    def add(self, labels, predictions, weights=None) -> RegressionAccumulator:
        w = _weights(weights, len(labels))
        total = float(w.sum())
        errors = predictions - labels
        nonzero = labels != 0
        mean = float(np.dot(w, labels) / total) if total else 0.0
        batch = np.array([total, mean, float(np.dot(w, (labels - mean) ** 2)), np.dot(w, predictions),
                          np.dot(w, errors ** 2), np.dot(w, np.abs(errors)), w[nonzero].sum(),
                          np.dot(w[nonzero], np.abs(errors[nonzero] / labels[nonzero]))])
        self.count += len(labels)
        self._combine(batch)
        keys, finite = residual_keys(errors)
        self._merge_residuals(keys[finite], w[finite])
        return self

    def _merge_residuals(self, keys, weights) -> None:
        self.residual_keys, (self.residual_weights,) = _sparse_merge(np.r_[self.residual_keys, keys],
                                                                     [np.r_[self.residual_weights, weights]])

    def _combine(self, other) -> None:
        weight, mean, spread = self.sums[:3]
        total = weight + other[0]
        if total:
            delta = other[1] - mean
            self.sums[1] = mean + delta * other[0] / total
            self.sums[2] = spread + other[2] + delta * delta * weight * other[0] / total
        self.sums[0] = total
        self.sums[3:] += other[3:]

    def merge(self, other: RegressionAccumulator) -> RegressionAccumulator:
        self.count += other.count
        self._combine(other.sums)
        self._merge_residuals(other.residual_keys, other.residual_weights)
        return self

    def metrics(self, class_names=None) -> dict:
        """The keys and formulas of ``metrics.regression_metrics``."""
        if self.count == 0:
            return {"example_count": 0}
        total, label_mean, spread, predicted, squared, absolute, nonzero, relative = (float(v) for v in self.sums)
        if not total:
            return {"example_count": self.count}
        mse = squared / total
        metrics = {
            "example_count": self.count, "mse": mse, "rmse": math.sqrt(mse), "mae": absolute / total,
            "mape": 100.0 * relative / nonzero if nonzero else None,
            "r2": 1.0 - squared / spread if spread > 0 else None,
            "label_mean": label_mean, "prediction_mean": predicted / total,
        }
        if self.weighted:
            metrics["weighted_example_count"] = total
        return json_safe(metrics)

    def plots(self, class_names=None) -> dict:
        """What ``plots.evaluation_plots`` gives: the residual histogram."""
        return {"residuals": residual_histogram(self.residual_keys, self.residual_weights)} if self.count else {}


class ExactAccumulator:
    """Keeps its rows' labels, scores and weights and computes ``metrics``' and ``plots``' exact
    figures over them at the end, as over a whole split read at once: for splits small enough to keep."""

    def __init__(self, problem: str, decision_threshold: float, class_count: int, weighted: bool):
        self.problem, self.decision_threshold, self.weighted = problem, decision_threshold, weighted
        self.empty_scores = np.zeros((0, class_count)) if problem == "multiclass" else np.zeros(0)
        self.parts: list[tuple] = []
        self.count = 0

    def add(self, labels, scores, weights=None) -> ExactAccumulator:
        self.parts.append((labels, scores, weights))
        self.count += len(labels)
        return self

    def merge(self, other: ExactAccumulator) -> ExactAccumulator:
        self.parts += other.parts
        self.count += other.count
        return self

    def _rows(self):
        if not self.parts:
            return np.zeros(0, dtype=np.int64), self.empty_scores, np.zeros(0) if self.weighted else None
        labels, scores, weights = zip(*self.parts)
        return np.concatenate(labels), np.concatenate(scores), np.concatenate(weights) if self.weighted else None

    def metrics(self, class_names=None) -> dict:
        from sluice.components.evaluator.analysis import metric_function

        return metric_function(self.problem, self.decision_threshold, class_names)(*self._rows())

    def plots(self, class_names=None) -> dict:
        from sluice.components.evaluator.plots import evaluation_plots

        labels, scores, weights = self._rows()
        return evaluation_plots(labels, scores, self.problem, self.decision_threshold, class_names, weights)


def new_accumulator(problem: str, decision_threshold: float, class_count: int, weighted: bool,
                    exact: bool = False):
    """An empty accumulator of the problem's kind (``exact``: one that keeps its rows)."""
    if exact:
        return ExactAccumulator(problem, decision_threshold, class_count, weighted)
    if problem == "binary":
        return BinaryAccumulator(decision_threshold, weighted)
    if problem == "multiclass":
        return MulticlassAccumulator(class_count, weighted)
    return RegressionAccumulator(weighted)
