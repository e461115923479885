"""The Evaluator component: scores a model on an eval split, overall and per slice, and blesses it or not."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

from sluice.components.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from sluice.components.evaluator import predict
from sluice.components.evaluator.analysis import Analysis, Scored, analyze, read_weights
from sluice.components.evaluator.report import write_report
from sluice.components.evaluator.thresholds import (
    MetricThreshold,
    as_thresholds,
    blessing_reason,
    check_slice_thresholds,
    check_thresholds,
)
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component

OWNER = "Evaluator"


def _eval_table(examples: Examples, split: str, limit: int | None):
    """The split's rows (the first ``limit``) and its first file (named in errors)."""
    from sluice.components.io.examples import read_table, split_files

    files = split_files(examples, split, OWNER)
    return read_table(files, OWNER, limit=limit), files[0]


def _resolve_baseline(ctx: ExecutionContext, model: Model) -> Model | None:
    """The pipeline's latest blessed model other than ``model`` (None without a store or match)."""
    if ctx.lookup is None:
        return None
    found = ctx.lookup.find_artifacts(ctx.pipeline_name, "ModelBlessing", lambda a: a.blessed)
    for blessing, _execution in found:
        candidate_uri = getattr(blessing, "model_uri", "")
        if candidate_uri and candidate_uri != model.uri and \
                os.path.isfile(os.path.join(candidate_uri, "Format-Serving", "saved_model.pb")):
            return Model(uri=candidate_uri)
    return None


def _predict(table, data_file, model, baseline, label_key, prediction_key, problem, label_vocabulary):
    """Runs the model (and baseline) over the table: (labels, has_label, [model, baseline] outputs).

    Labels come from the ``label_key`` column, or, when the data has no such column (a
    label made by Transform), from the model's transformed features.
    """
    import pyarrow as pa

    loaded = predict.load_serving(model, "model")
    label_call = predict.label_call(table, label_key, loaded, data_file)
    if label_call is None:  # validate labels before the expensive predictions
        labels, has_label = predict.read_labels(table.column(label_key).combine_chunks(), label_key, problem,
                                                label_vocabulary, data_file)
    loaded_baseline = predict.load_serving(baseline, "baseline model") if baseline is not None else None

    calls = [predict.model_call(loaded, prediction_key, "model")]
    if loaded_baseline is not None:
        calls.append(predict.model_call(loaded_baseline, prediction_key, "baseline model"))
    if label_call is not None:
        calls.append(label_call)
    outputs = predict.run_signatures(table, calls)
    if label_call is not None:
        labels, has_label = predict.read_labels(pa.array(outputs[-1].reshape(-1)), label_key, problem,
                                                label_vocabulary, data_file)
    return labels, has_label, outputs[:2 if loaded_baseline is not None else 1]


def evaluate_model(
    examples: Input[Examples],
    model: Input[Model],
    evaluation: Output[ModelEvaluation],
    blessing: Output[ModelBlessing],
    label_key: str,
    baseline_model: Input[Model] | None = None,
    prediction_key: str | None = None,
    slicing_features: list[str | list[str]] = [],  # noqa: B006 - never mutated; the declared default
    slice_buckets: dict[str, int] = {},  # noqa: B006 - never mutated; the declared default
    min_slice_size: int = 10,
    thresholds: dict[str, MetricThreshold] = {},  # noqa: B006 - never mutated; the declared default
    slice_thresholds: dict[str, dict[str, MetricThreshold]] = {},  # noqa: B006 - never mutated
    eval_split: str = "eval",
    problem: Literal["auto", "binary", "multiclass", "regression"] = "auto",
    from_logits: bool | None = None,
    decision_threshold: float = 0.5,
    label_vocabulary: list[str] | None = None,
    example_weight_key: str | None = None,
    example_count_limit: int | None = None,
    ctx: ExecutionContext = None,
) -> None:
    """Evaluates ``model`` (and a baseline) on the raw ``eval_split``; blesses it if thresholds pass.

    ``prediction_key`` picks the serving output (default: the only output, or
    ``outputs`` / ``probabilities``). Binary problems take one probability per
    example (or two-class probabilities); multiclass ones class probabilities;
    regression ones one value per example. ``problem="auto"`` infers which from the
    output and the labels, and says so on stderr. Logits are turned into probabilities
    when ``from_logits`` is true, or, left None, when an output lies outside [0, 1].
    String labels map to class ids through ``label_vocabulary``.

    ``slicing_features``: feature names, or lists of names for crosses; float features (and
    those in ``slice_buckets``) in quantile buckets. Slices under ``min_slice_size`` examples
    are reported but neither charted nor judged. ``slice_thresholds`` holds thresholds by
    slice (``island=Biscoe``) or by spec (``island``: each of its slices), checked against
    the baseline's same slice. ``example_weight_key`` names a column of example weights.

    With Beam options asking for a real pipeline (another runner, workers), predictions and
    metric accumulation run on Beam's workers with bounded memory (``evaluator.beam``):
    binary ``auc``/``auc_pr`` and curves then come from score histograms (``GRID`` buckets), and
    ``problem="auto"`` / ``from_logits=None`` are decided from the split's first rows only.
    """
    ctx = ctx or ExecutionContext()
    thresholds = as_thresholds(thresholds)
    slice_thresholds = {key: as_thresholds(checks) for key, checks in slice_thresholds.items()}
    baseline = baseline_model or _resolve_baseline(ctx, model)
    settings = dict(label_key=label_key, prediction_key=prediction_key, slicing_features=slicing_features,
                    slice_buckets=slice_buckets, min_slice_size=min_slice_size, eval_split=eval_split,
                    problem=problem, from_logits=from_logits, decision_threshold=decision_threshold,
                    label_vocabulary=label_vocabulary, example_weight_key=example_weight_key,
                    example_count_limit=example_count_limit)
    engine = None
    if ctx.beam_default_runner:
        analysis = _analyze_here(examples, model, baseline, **settings)
    else:  # Beam options ask for a real pipeline: predictions and metrics on its workers
        from sluice.components.evaluator import beam as on_beam

        analysis, engine = on_beam.analyze(ctx, examples, model, baseline, evaluation, settings=settings)
        if "workers" in engine:
            ctx.log_metric("workers", engine["workers"])
    evaluation.problem = analysis.problem
    results = check_thresholds(thresholds, analysis.overall, analysis.baseline)
    results += check_slice_thresholds(slice_thresholds, analysis)
    blessed, reason = blessing_reason(results)
    _write_outputs(evaluation, blessing, model, baseline, blessed, reason, analysis, results,
                   headline=next(iter(thresholds), None), engine=engine)
    ctx.log_metrics({k: v for k, v in analysis.overall.items() if v is not None})
    ctx.log_metrics(slice_metric_names(analysis.slices))


def _analyze_here(examples, model, baseline, *, label_key, prediction_key, slicing_features, slice_buckets,
                  min_slice_size, eval_split, problem, from_logits, decision_threshold, label_vocabulary,
                  example_weight_key, example_count_limit) -> Analysis:
    """The evaluation computed in this process over the whole split, read at once."""
    table, data_file = _eval_table(examples, eval_split, example_count_limit)
    weights = read_weights(table, example_weight_key, data_file) if example_weight_key else None
    labels, has_label, outputs = _predict(table, data_file, model, baseline, label_key, prediction_key, problem,
                                          label_vocabulary)
    if problem == "auto":
        problem, why = predict.infer_problem(outputs[0], labels, has_label)
        print(f"Evaluator: problem inferred as {problem} ({why}); set parameter 'problem' to choose",
              file=sys.stderr)
    labels = _class_ids(labels, has_label, problem, label_key, data_file)
    scores = predict.read_scores(outputs[0], problem, "model", from_logits)
    if problem == "multiclass" and has_label.any() and labels[has_label].max() >= scores.shape[1]:
        raise ComponentError(f"Evaluator: label '{label_key}' has class id {labels[has_label].max()} but the "
                             f"model predicts {scores.shape[1]} classes")
    baseline_scores = predict.read_scores(outputs[1], problem, "baseline model", from_logits) \
        if len(outputs) > 1 else None
    return analyze(Scored(labels, has_label, scores, baseline_scores, weights), table, problem,
                   specs=slicing_features, buckets=slice_buckets, min_slice_size=min_slice_size,
                   decision_threshold=decision_threshold, label_vocabulary=label_vocabulary,
                   data_file=data_file)


def _class_ids(labels, has_label, problem: str, label_key: str, data_file: str):
    """Labels read as numbers (``problem="auto"``), as class ids once the problem is known."""
    import numpy as np

    if problem == "regression" or labels.dtype.kind != "f":
        return labels
    present = labels[has_label]
    wrong = present[~np.isin(present, (0.0, 1.0))] if problem == "binary" else present[present != np.round(present)]
    if len(wrong):
        need = "labels 0/1" if problem == "binary" else "integer class ids"
        raise ComponentError(f"Evaluator: label '{label_key}' in {data_file} has value {wrong[0]}; a {problem} "
                             f"problem needs {need}")
    return labels.astype(np.int64)


def slice_metric_names(slices: dict[str, dict]) -> dict[str, float]:
    """Per-slice numbers as MLflow metrics: ``slice/<feature>: <value>/<metric>`` (MLflow's key
    characters only: ``island=Biscoe`` becomes ``island: Biscoe``)."""
    import re

    named = {}
    for name, values in slices.items():
        label = re.sub(r"[^\w./\- :]", "_", name.replace("=", ": ", 1))
        for metric, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                named[f"slice/{label}/{metric}"] = float(value)
    return named


def _write_outputs(evaluation, blessing, model, baseline, blessed: bool, reason: str, analysis: Analysis,
                   results: list[dict], headline: str | None, engine: dict | None = None) -> None:
    """metrics.json and report.html into the evaluation; the BLESSED / NOT_BLESSED marker.
    ``engine``: what the Beam path records of itself (none in process)."""
    baseline_uri = baseline.uri if baseline is not None else None
    with open(evaluation.path("metrics.json"), "w") as out:
        json.dump({**(engine or {}), "problem": evaluation.problem, "overall": analysis.overall,
                   "slices": analysis.slices,
                   "slice_specs": analysis.specs, "small_slices": analysis.small,
                   "baseline": analysis.baseline, "baseline_slices": analysis.baseline_slices,
                   "baseline_model_uri": baseline_uri, "thresholds": results, "plots": analysis.plots,
                   "baseline_plots": analysis.baseline_plots}, out, indent=2)
    write_report(evaluation.path("report.html"), analysis, blessed=blessed, reason=reason, model_uri=model.uri,
                 baseline_uri=baseline_uri, thresholds=results, headline=headline)
    evaluation.blessed = blessed

    open(blessing.path("BLESSED" if blessed else "NOT_BLESSED"), "w").close()
    blessing.blessed = blessed
    blessing.model_uri = model.uri
    blessing.reason = reason


Evaluator = component(evaluate_model, name="Evaluator", warm_imports=("tensorflow",))
