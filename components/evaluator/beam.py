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
import pickle
import re
import sys
from typing import Any

import apache_beam as beam
import pyarrow as pa

from sluice.components.artifacts import Examples, Model
from sluice.components.beam_workers import record_worker, workers_of
from sluice.components.evaluator import predict
from sluice.components.evaluator.accumulators import GRID, new_accumulator
from sluice.components.evaluator.analysis import Analysis, read_weights
from sluice.components.evaluator.slicing import spec_name
from sluice.components.evaluator.stream import ROLES, analysis_of, edges_for, fold, slices_of
from sluice.components.io.examples import open_parquet, read_batches, split_files
from sluice.components.io.files import read_bytes, write_bytes
from sluice.components.sdk import ComponentError

OWNER = "Evaluator"
# Rows the driver scores to infer the problem and whether outputs are logits.
PROBE_ROWS = 10_000
# A file of more rows than this is cut into runs of row groups, each an element of its own.
PIECE_ROWS = 1_000_000
RESULTS_FILE = "beam_accumulators.pickle"


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
        record_worker(rows - max(left, 0))
        yield from found.items()

    def _add(self, table, data_file: str, found: dict) -> None:
        plan = self.plan
        labels, has_label, outputs = predict.score_table(table, data_file, self.loaded, self.loaded_baseline,
                                                         plan.label_key, plan.prediction_key, plan.problem,
                                                         plan.label_vocabulary)
        labels = predict.class_ids(labels, has_label, plan.problem, plan.label_key, data_file)
        scores = [predict.read_scores(raw, plan.problem, ROLES[role], plan.from_logits[role])
                  for role, raw in enumerate(outputs)]
        if plan.problem == "multiclass":
            predict.check_classes(labels, has_label, scores[0], plan.label_key)
        weights = read_weights(table, plan.example_weight_key, data_file) if plan.example_weight_key else None
        slices = slices_of(table, plan.specs, self.spec_index, data_file, plan.buckets, plan.edges)

        def make(role_scores):
            width = role_scores.shape[1] if role_scores.ndim == 2 else 0
            return new_accumulator(plan.problem, plan.decision_threshold, width, weights is not None)

        for role, role_scores in enumerate(scores):
            fold(found, role, slices, labels, has_label, role_scores, weights, make)


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
    labels, has_label, outputs = predict.score_table(
        table, path, _load(model.uri, "model"), _load(baseline.uri if baseline else None, "baseline model"),
        settings["label_key"], settings["prediction_key"], problem, settings["label_vocabulary"])
    if problem == "auto":
        problem, why = predict.infer_problem(outputs[0], labels, has_label)
        print(f"Evaluator: problem inferred as {problem} ({why}, in the first {table.num_rows} rows); set "
              f"parameter 'problem' to choose", file=sys.stderr)
    if from_logits is None:
        roles = tuple(bool(((raw < 0) | (raw > 1)).any()) for raw in outputs) + (None,) * (2 - len(outputs))
    return problem, roles


def _run(ctx, pieces, plan: Plan, results: str) -> int | None:
    """Runs the pipeline; how many worker processes scored rows (None without runner metrics)."""
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
    return workers_of(pipeline.result)


def analyze(ctx, examples: Examples, model: Model, baseline: Model | None, evaluation, *,
            settings: dict) -> tuple[Analysis, dict]:
    """The evaluation's Analysis, computed on Beam, and what to record of the engine.

    ``settings``: evaluate_model's parameters by name (label_key, prediction_key,
    slicing_features, slice_buckets, min_slice_size, eval_split, problem, from_logits,
    decision_threshold, label_vocabulary, example_weight_key, example_count_limit).
    """
    files = split_files(examples, settings["eval_split"], OWNER)
    limit, specs, buckets = settings["example_count_limit"], settings["slicing_features"], settings["slice_buckets"]
    edges, buckets = edges_for(files, specs, buckets, limit)
    problem, from_logits = _probe(files, model, baseline, settings)
    plan = Plan(model.uri, baseline.uri if baseline is not None else None, settings["label_key"],
                settings["prediction_key"], problem, from_logits, settings["decision_threshold"],
                settings["label_vocabulary"], settings["example_weight_key"], list(specs), buckets, edges)
    results = evaluation.path(RESULTS_FILE)
    pieces = _pieces(files, limit)
    workers = _run(ctx, pieces, plan, results)
    merged = dict(pickle.loads(read_bytes(results)))
    analysis = analysis_of(merged, problem, plan.decision_threshold, plan.label_vocabulary,
                           plan.example_weight_key is not None, settings["min_slice_size"], baseline is not None)
    engine = {"engine": "beam", "histogram_buckets": GRID, "pieces": len(pieces)}
    if workers is not None:
        engine["workers"] = workers
    return analysis, engine
