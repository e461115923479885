"""The Evaluator's HTML report (``reports/templates/evaluation.html.j2``): the verdict and every
check, the overall metrics beside the baseline's, the curves, the confusion matrix, a
metric-by-slice chart per slicing spec with the baseline beside it, and the slices in a table
that sorts and filters."""

from __future__ import annotations

from typing import Any

from sluice.components import reports
from sluice.components.evaluator.metrics import headline_metric
from sluice.components.io.files import write_text
from sluice.components.reports import charts

SLICES_CHARTED = 30
_SLICE_COLUMNS = {
    "binary": ["binary_accuracy", "auc", "auc_pr", "precision", "recall", "f1", "log_loss", "calibration"],
    "multiclass": ["accuracy", "log_loss"],
    "regression": ["rmse", "mae", "mape", "r2", "label_mean", "prediction_mean"],
}


def write_report(path: str, analysis, *, blessed: bool, reason: str, model_uri: str, baseline_uri: str | None,
                 thresholds: list[dict], headline: str | None) -> None:
    """Writes ``report.html`` for ``analysis`` (an ``analysis.Analysis``)."""
    headline = headline if headline in analysis.overall else headline_metric(analysis.problem)
    columns = [m for m in _SLICE_COLUMNS.get(analysis.problem, []) if m in analysis.overall]
    if headline not in columns and headline != "example_count":
        columns.insert(0, headline)
    if analysis.problem == "multiclass":
        columns += [m for m in analysis.overall if m.startswith("recall/")]
    overall_names = [k for k in analysis.overall if k != "example_count"] + ["example_count"]
    slices = [{"name": name, "values": values, "small": name in analysis.small,
               "baseline": analysis.baseline_slices.get(name, {})}
              for name, values in analysis.slices.items()]
    write_text(path, reports.render(
        "evaluation.html.j2", blessed=blessed, reason=reason, model_uri=model_uri, baseline_uri=baseline_uri,
        problem=analysis.problem, overall=analysis.overall, baseline=analysis.baseline, overall_names=overall_names,
        thresholds=thresholds, headline=headline, columns=columns, slices=slices,
        curves=_curves(analysis), slice_charts=_slice_charts(analysis, headline)))


def _curves(analysis) -> list[dict[str, Any]]:
    """The charts of the model's (and baseline's) predictions: ROC, precision-recall, calibration,
    confusion matrix."""
    plots, base = analysis.plots, analysis.baseline_plots

    def both(name: str, x: str, y: str) -> dict[str, Any]:
        series = {"model": (plots[name][x], plots[name][y])}
        if name in base:
            series["baseline"] = (base[name][x], base[name][y])
        return series

    shown = []
    if "roc_curve" in plots:
        shown.append({"title": f"ROC curve (AUC {reports.fmt(analysis.overall.get('auc'), 3)})",
                      "svg": charts.curves(both("roc_curve", "fpr", "tpr"), key="roc", xlabel="false positive rate",
                                           ylabel="true positive rate", diagonal=True)})
    if "pr_curve" in plots:
        shown.append({"title": f"Precision-recall (AUC-PR {reports.fmt(analysis.overall.get('auc_pr'), 3)})",
                      "svg": charts.curves(both("pr_curve", "recall", "precision"), key="pr", xlabel="recall",
                                           ylabel="precision")})
    if "calibration" in plots:
        shown.append({"title": f"Calibration (mean prediction / mean label "
                               f"{reports.fmt(analysis.overall.get('calibration'), 3)})",
                      "svg": charts.curves(both("calibration", "mean_prediction", "mean_label"), key="calibration",
                                           xlabel="mean prediction (bucket)", ylabel="mean label", diagonal=True)})
    if "residuals" in plots:
        shown.append({"title": "Residuals (prediction - label): share of examples by bucket",
                      "svg": _residual_bars(plots["residuals"], base.get("residuals"))})
    if "confusion_matrix" in plots:
        matrix = plots["confusion_matrix"]
        shown.append({"title": "Confusion matrix" + (" (at the decision threshold)" if analysis.problem == "binary"
                                                     else ""),
                      "svg": charts.matrix(matrix["labels"], matrix["matrix"], key="confusion")})
    return shown


def _slice_charts(analysis, metric: str) -> list[dict[str, Any]]:
    """One bar chart of ``metric`` per slicing spec: each slice of at least ``min_slice_size``
    examples (the largest ``SLICES_CHARTED``, in slice order), the baseline's bar beside it."""
    by_spec: dict[str, list[str]] = {}
    for name, spec in analysis.specs.items():
        if name not in analysis.small and analysis.slices[name].get(metric) is not None:
            by_spec.setdefault(spec, []).append(name)
    shown = []
    for index, (spec, names) in enumerate(by_spec.items()):
        largest = set(sorted(names, key=lambda n: -analysis.slices[n]["example_count"])[:SLICES_CHARTED])
        names = [n for n in names if n in largest]
        series = {"model": [analysis.slices[n][metric] for n in names]}
        if analysis.baseline is not None:
            series["baseline"] = [analysis.baseline_slices.get(n, {}).get(metric) or 0.0 for n in names]
        labels = [n.replace(f"{spec}=", "") if " × " not in spec else n for n in names]
        shown.append({"title": f"{metric} by {spec}" + (f" (the {SLICES_CHARTED} largest slices)"
                                                        if len(largest) < len(by_spec[spec]) else ""),
                      "svg": charts.bars(labels, series, key=f"slices{index}", xlabel=metric,
                                         reference=analysis.overall.get(metric), legend=True)})
    return shown


def _residual_bars(model: dict, baseline: dict | None):
    """The residual buckets as bars (shares of each model's weight), the baseline's beside the model's."""
    names = {(low, high) for part in (model, baseline or {"low": [], "high": []})
             for low, high in zip(part["low"], part["high"])}
    buckets = sorted(names)

    def shares(part):
        total = sum(part["weight"]) or 1.0
        found = {(low, high): w / total for low, high, w in zip(part["low"], part["high"], part["weight"])}
        return [found.get(bucket, 0.0) for bucket in buckets]

    series = {"model": shares(model)}
    if baseline is not None:
        series["baseline"] = shares(baseline)
    labels = ["0" if low == high else f"[{reports.fmt(low, 3)}, {reports.fmt(high, 3)})" for low, high in buckets]
    return charts.bars(labels, series, key="residuals", legend=True)
