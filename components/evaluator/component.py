"""The Evaluator component: scores a model on an eval split, overall and per slice, and blesses it or not."""

from __future__ import annotations

import json
import os
from typing import Literal

from sluice.components.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from sluice.components.evaluator.analysis import Analysis
from sluice.components.evaluator.report import write_report
from sluice.components.evaluator.thresholds import (
    MetricThreshold,
    as_thresholds,
    blessing_reason,
    check_slice_thresholds,
    check_thresholds,
)
from sluice.components.io.files import exists, write_bytes, write_text
from sluice.components.sdk import ExecutionContext, Input, Output, component

OWNER = "Evaluator"


def _resolve_baseline(ctx: ExecutionContext, model: Model) -> Model | None:
    """The pipeline's latest blessed model other than ``model`` (None without a store or match)."""
    if ctx.lookup is None:
        return None
    found = ctx.lookup.find_artifacts(ctx.pipeline_name, "ModelBlessing", lambda a: a.blessed)
    for blessing, _execution in found:
        candidate_uri = getattr(blessing, "model_uri", "")
        if candidate_uri and candidate_uri != model.uri and \
                exists(os.path.join(candidate_uri, "Format-Serving", "saved_model.pb")):
            return Model(uri=candidate_uri)
    return None


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

    The split is read in batches, each folded into accumulators per slice, so memory stays
    bounded (``evaluator.stream``). With Beam options asking for a real pipeline (another runner,
    workers), that runs on Beam's workers (``evaluator.beam``), where ``problem="auto"`` /
    ``from_logits=None`` are decided from the split's first rows only. Binary ``auc``/``auc_pr``
    and curves come from score histograms (``GRID`` buckets) on Beam and, in this process, for
    splits over ``stream.EXACT_ROWS`` rows; they are exact otherwise.
    """
    ctx = ctx or ExecutionContext()
    thresholds = as_thresholds(thresholds)
    slice_thresholds = {key: as_thresholds(checks) for key, checks in slice_thresholds.items()}
    baseline = baseline_model or _resolve_baseline(ctx, model)
    settings = {name: value for name, value in locals().items() if name in _SETTINGS}
    analysis, engine = _analyze(ctx, examples, model, baseline, evaluation, settings)
    evaluation.problem = analysis.problem
    results = check_thresholds(thresholds, analysis.overall, analysis.baseline)
    results += check_slice_thresholds(slice_thresholds, analysis)
    blessed, reason = blessing_reason(results)
    _write_outputs(evaluation, blessing, model, baseline, blessed, reason, analysis, results,
                   headline=next(iter(thresholds), None), engine=engine)
    ctx.log_metrics({k: v for k, v in analysis.overall.items() if v is not None})
    ctx.log_metrics(slice_metric_names(analysis.slices))


# evaluate_model's parameters that say how to evaluate (``stream.analyze``'s and ``beam.analyze``'s settings).
_SETTINGS = ("label_key", "prediction_key", "slicing_features", "slice_buckets", "min_slice_size", "eval_split",
             "problem", "from_logits", "decision_threshold", "label_vocabulary", "example_weight_key",
             "example_count_limit")


def _analyze(ctx: ExecutionContext, examples, model, baseline, evaluation, settings: dict):
    """(Analysis, what the Beam path records of itself or None): in this process, the split streamed
    in batches; with Beam options asking for a real pipeline, on its workers."""
    if ctx.beam_default_runner:
        from sluice.components.evaluator import stream  # pyarrow: not when a pipeline is only defined

        return stream.analyze(examples, model, baseline, **settings), None
    from sluice.components.evaluator import beam as on_beam

    analysis, engine = on_beam.analyze(ctx, examples, model, baseline, evaluation, settings=settings)
    if "workers" in engine:
        ctx.log_metric("workers", engine["workers"])
    return analysis, engine


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
    write_text(evaluation.path("metrics.json"), json.dumps(
        {**(engine or {}), "problem": evaluation.problem, "overall": analysis.overall, "slices": analysis.slices,
         "slice_specs": analysis.specs, "small_slices": analysis.small,
         "baseline": analysis.baseline, "baseline_slices": analysis.baseline_slices,
         "baseline_model_uri": baseline_uri, "thresholds": results, "plots": analysis.plots,
         "baseline_plots": analysis.baseline_plots}, indent=2))
    write_report(evaluation.path("report.html"), analysis, blessed=blessed, reason=reason, model_uri=model.uri,
                 baseline_uri=baseline_uri, thresholds=results, headline=headline)
    evaluation.blessed = blessed

    write_bytes(blessing.path("BLESSED" if blessed else "NOT_BLESSED"), b"")
    blessing.blessed = blessed
    blessing.model_uri = model.uri
    blessing.reason = reason


# Given an object store's URIs, its workers score from a local copy of the model.
Evaluator = component(evaluate_model, name="Evaluator", warm_imports=("tensorflow",), remote_io=True)
