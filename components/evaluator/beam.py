"""The Evaluator as a Beam pipeline: workers score the eval split piece by piece and keep only
mergeable accumulators per slice (``accumulators``), so memory stays bounded at any split size.

What must be the same everywhere the driver decides first, cheaply: the problem and
``from_logits`` when left to inference (``"auto"`` / None), from the model's outputs on the
split's first ``PROBE_ROWS`` rows only, not every row as in process; and the quantile bucket
edges of bucketed slicing features (reading only those columns). Then each piece (a file, or a
run of row groups of a big one) is an element: a DoFn that loads the serving model(s) once
scores its batches and emits ((model or baseline, slice), accumulator) pairs; a combine per key
merges them, and one step writes the merged accumulators as one file inside the evaluation
output on the artifact store, which the driver reads. Beam is imported here only.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import re
import sys
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from sluice.components.artifacts import Examples, Model
from sluice.components.evaluator import predict
from sluice.components.evaluator.accumulators import GRID, new_accumulator
from sluice.components.evaluator.analysis import Analysis, read_weights
from sluice.components.evaluator.slicing import (
    DEFAULT_BUCKETS,
    bucket_edges,
    bucketed_features,
    keyed_slices,
    spec_name,
)
from sluice.components.io.examples import open_parquet, read_batches, read_schema, read_table, split_files
from sluice.components.io.files import read_bytes, write_bytes
from sluice.components.sdk import ComponentError

OWNER = "Evaluator"
# Rows the driver scores to infer the problem and whether outputs are logits.
PROBE_ROWS = 10_000
# A file of more rows than this is cut into runs of row groups, each an element of its own.
PIECE_ROWS = 1_000_000
RESULTS_FILE = "beam_accumulators.pickle"
# The Beam metrics namespace of the rows each worker process scored (one counter per process).
WORKERS_NAMESPACE = "sluice.workers"
_OVERALL = (-1, (), "overall", "")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every worker needs, decided by the driver."""

    model_uri: str
    baseline_uri: str | None
    label_key: str
    prediction_key: str | None
    problem: str
    from_logits: tuple[bool | None, bool | None]  # the model's and the baseline's
    decision_threshold: float
    label_vocabulary: list[str] | None
    example_weight_key: str | None
    specs: list
    buckets: dict[str, int]
    edges: dict[str, Any]


def score_table(table, data_file: str, loaded, loaded_baseline, label_key, prediction_key, problem,
                label_vocabulary):
    """(labels, has_label, [model, baseline] outputs) of a table of rows, as the in-process path
    computes them: labels from their column, or from the model's transform."""
    label_call = predict.label_call(table, label_key, loaded, data_file)
    if label_call is None:
        labels, has_label = predict.read_labels(table.column(label_key).combine_chunks(), label_key, problem,
                                                label_vocabulary, data_file)
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


def _load(uri: str | None, role: str):
    return predict.load_serving(Model(uri=uri), role) if uri is not None else None


class ScoreFn(beam.DoFn):
    """(path, row groups, rows) -> ((role, slice key), accumulator): one piece of the split scored."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan

    def setup(self):
        self.loaded = _load(self.plan.model_uri, "model")
        self.loaded_baseline = _load(self.plan.baseline_uri, "baseline model")
        self.spec_index = {spec_name(spec): i for i, spec in enumerate(self.plan.specs)}

    def process(self, piece):
        path, row_groups, rows = piece
        found: dict = {}
        left = rows
        for batch in read_batches(path, OWNER, row_groups=list(row_groups)):
            if left <= 0:
                break
            batch = batch.slice(0, left)
            left -= batch.num_rows
            self._add(pa.Table.from_batches([batch]), path, found)
        beam.metrics.Metrics.counter(WORKERS_NAMESPACE, f"pid-{os.getpid()}").inc(rows - max(left, 0))
        yield from found.items()

    def _add(self, table, data_file: str, found: dict) -> None:
        from sluice.components.evaluator.component import _class_ids

        plan = self.plan
        labels, has_label, outputs = score_table(table, data_file, self.loaded, self.loaded_baseline, plan.label_key,
                                                 plan.prediction_key, plan.problem, plan.label_vocabulary)
        labels = _class_ids(labels, has_label, plan.problem, plan.label_key, data_file)
        roles = ("model", "baseline model")
        scores = [predict.read_scores(raw, plan.problem, roles[i], plan.from_logits[i])
                  for i, raw in enumerate(outputs)]
        if plan.problem == "multiclass" and has_label.any() and labels[has_label].max() >= scores[0].shape[1]:
            raise ComponentError(f"Evaluator: label '{plan.label_key}' has class id {labels[has_label].max()} but "
                                 f"the model predicts {scores[0].shape[1]} classes")
        weights = read_weights(table, plan.example_weight_key, data_file) if plan.example_weight_key else None
        slices = [(_OVERALL, np.ones(table.num_rows, dtype=bool))]
        for spec, name, mask, key in keyed_slices(table, plan.specs, data_file, plan.buckets, plan.edges):
            slices.append(((self.spec_index[spec], key, name, spec), mask))
        for key, mask in slices:
            usable = mask & has_label
            for role, role_scores in enumerate(scores):
                if (role, key) not in found:
                    width = role_scores.shape[1] if role_scores.ndim == 2 else 0
                    found[(role, key)] = new_accumulator(plan.problem, plan.decision_threshold, width,
                                                         weights is not None)
                found[(role, key)].add(labels[usable], role_scores[usable],
                                       weights[usable] if weights is not None else None)


class MergeFn(beam.CombineFn):
    """Merges accumulators of one key; never changes an input (a replayed bundle sees it again)."""

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, element):
        return copy.deepcopy(element) if accumulator is None else accumulator.merge(element)

    def merge_accumulators(self, accumulators):
        merged = None
        for index, accumulator in enumerate(accumulators):
            if accumulator is not None:
                if merged is None:
                    merged = accumulator if index == 0 else copy.deepcopy(accumulator)
                else:
                    merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


def _pieces(files: list[str], limit: int | None) -> list[tuple[str, tuple[int, ...], int]]:
    """(path, row groups, rows to read) elements: a file each, big files in runs of row groups;
    with ``limit``, only the split's first ``limit`` rows."""
    pieces, total = [], 0
    for path in files:
        metadata = open_parquet(path, OWNER).metadata
        groups, rows = [], 0
        for index in range(metadata.num_row_groups):
            if limit is not None and total >= limit:
                break
            take = metadata.row_group(index).num_rows
            take = take if limit is None else min(take, limit - total)
            groups, rows, total = groups + [index], rows + take, total + take
            if rows >= PIECE_ROWS:
                pieces.append((path, tuple(groups), rows))
                groups, rows = [], 0
        if groups:
            pieces.append((path, tuple(groups), rows))
    return pieces


def _probe(files, model, baseline, settings: dict) -> tuple[str, tuple]:
    """The problem and each model's ``from_logits``, from the outputs on the split's first rows."""
    problem, from_logits = settings["problem"], settings["from_logits"]
    roles = (from_logits, from_logits if baseline is not None else None)
    if problem != "auto" and (problem == "regression" or from_logits is not None):
        return problem, roles
    rows = min(PROBE_ROWS, settings["example_count_limit"] or PROBE_ROWS)
    path, batch = next(((path, batch) for path in files for batch in read_batches(path, OWNER, batch_size=rows)
                        if batch.num_rows), (files[0], None))
    if batch is None:
        return ("regression" if problem == "auto" else problem), roles
    table = pa.Table.from_batches([batch])
    labels, has_label, outputs = score_table(
        table, path, _load(model.uri, "model"), _load(baseline.uri if baseline else None, "baseline model"),
        settings["label_key"], settings["prediction_key"], problem, settings["label_vocabulary"])
    if problem == "auto":
        problem, why = predict.infer_problem(outputs[0], labels, has_label)
        print(f"Evaluator: problem inferred as {problem} ({why}, in the first {table.num_rows} rows); set "
              f"parameter 'problem' to choose", file=sys.stderr)
    if from_logits is None:
        roles = tuple(bool(((raw < 0) | (raw > 1)).any()) for raw in outputs) + (None,) * (2 - len(outputs))
    return problem, roles


def _edges(files, specs, buckets, limit) -> dict[str, Any]:
    """The bucket edges of bucketed slicing features over the rows evaluated (those columns only)."""
    schema = read_schema(files[0], OWNER)
    for feature in {f for spec in specs for f in ([spec] if isinstance(spec, str) else spec)}:
        if feature not in schema.names:
            raise ComponentError(f"Evaluator: slicing feature '{feature}' is not a column of {files[0]}")
    features = bucketed_features(schema, specs, buckets)
    if not features:
        return {}
    table = read_table(files, OWNER, columns=features, limit=limit)
    return {f: bucket_edges(table, f, files[0], buckets.get(f)) for f in features}


def _run(ctx, pieces, plan: Plan, results: str) -> int | None:
    """Runs the pipeline; how many worker processes scored rows (None without runner metrics)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        with ctx.beam_pipeline() as pipeline:
            _ = (pipeline
                 | "Pieces" >> beam.Create(pieces, reshuffle=False).with_output_types(Any)
                 | "Distribute" >> beam.Reshuffle().with_output_types(Any)
                 | "Score" >> beam.ParDo(ScoreFn(plan)).with_output_types(Any)
                 | "Merge" >> beam.CombinePerKey(MergeFn()).with_output_types(Any)
                 | "Gather" >> beam.combiners.ToList().with_output_types(Any)
                 | "Write" >> beam.Map(lambda merged: write_bytes(results, pickle.dumps(merged))))
    except Exception as exc:  # a worker's ComponentError comes back wrapped in the runner's error
        found = re.search(r"Evaluator: .*", str(exc))
        if found is None:
            raise
        raise ComponentError(re.sub(r" \[while running .*$", "", found.group(0))) from None
    try:
        counters = pipeline.result.metrics().query(MetricsFilter().with_namespace(WORKERS_NAMESPACE))["counters"]
    except (NotImplementedError, AttributeError, KeyError):
        return None
    return len({c.key.metric.name for c in counters if (c.committed or c.attempted or 0) > 0}) or None


def analyze(ctx, examples: Examples, model: Model, baseline: Model | None, evaluation, *,
            settings: dict) -> tuple[Analysis, dict]:
    """The evaluation's Analysis, computed on Beam, and what to record of the engine.

    ``settings``: evaluate_model's parameters by name (label_key, prediction_key,
    slicing_features, slice_buckets, min_slice_size, eval_split, problem, from_logits,
    decision_threshold, label_vocabulary, example_weight_key, example_count_limit).
    """
    files = split_files(examples, settings["eval_split"], OWNER)
    limit, specs, buckets = settings["example_count_limit"], settings["slicing_features"], settings["slice_buckets"]
    edges = _edges(files, specs, buckets, limit)
    problem, from_logits = _probe(files, model, baseline, settings)
    plan = Plan(model.uri, baseline.uri if baseline is not None else None, settings["label_key"],
                settings["prediction_key"], problem, from_logits, settings["decision_threshold"],
                settings["label_vocabulary"], settings["example_weight_key"], list(specs),
                # every file cuts a feature bucketed in the first one alike, whatever its type there
                {**{f: DEFAULT_BUCKETS for f in edges}, **buckets}, edges)
    results = evaluation.path(RESULTS_FILE)
    pieces = _pieces(files, limit)
    workers = _run(ctx, pieces, plan, results)
    merged = dict(pickle.loads(read_bytes(results)))
    analysis = _analysis(merged, plan, settings["min_slice_size"], baseline is not None)
    engine = {"engine": "beam", "histogram_buckets": GRID, "pieces": len(pieces)}
    if workers is not None:
        engine["workers"] = workers
    return analysis, engine


def _analysis(merged: dict, plan: Plan, min_slice_size: int, with_baseline: bool) -> Analysis:
    """The Analysis of the merged accumulators: slices in the in-process order (spec, then value)."""
    names = plan.label_vocabulary

    def overall(role):
        found = merged.get((role, _OVERALL)) or new_accumulator(plan.problem, plan.decision_threshold, 0,
                                                                plan.example_weight_key is not None)
        return found

    analysis = Analysis(plan.problem, overall(0).metrics(names), {}, {}, [], plots=overall(0).plots(names))
    if with_baseline:
        analysis.baseline = overall(1).metrics(names)
        analysis.baseline_plots = overall(1).plots(names)
    slice_keys = sorted((key for role, key in merged if role == 0 and key != _OVERALL), key=lambda k: k[:2])
    for key in slice_keys:
        _index, _sort, name, spec = key
        analysis.slices[name] = merged[(0, key)].metrics(names)
        analysis.specs[name] = spec
        if analysis.slices[name]["example_count"] < min_slice_size:
            analysis.small.append(name)
        if with_baseline:
            analysis.baseline_slices[name] = merged[(1, key)].metrics(names)
    return analysis
