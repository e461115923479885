"""The Evaluator in this process, streaming: the eval split is read in record batches, each batch
scored (model and baseline) and folded into mergeable accumulators per slice (``accumulators``),
as the Beam path's workers do, so memory is bounded by one batch and the accumulators, never the
split.

Splits of up to ``EXACT_ROWS`` rows (after ``example_count_limit``) keep each slice's labels and
scores, so every figure is ``metrics``' exact one over the whole split; larger splits fold into sums
and score histograms from their first row (binary ``auc``/``auc_pr`` and the curves then on
``accumulators.GRID`` buckets, as on Beam).

``problem="auto"`` and ``from_logits=None`` are decided over every row, as when the split was read at
once (``Reading``: a row that rules out the reading so far starts the split again). Quantile bucket
edges of bucketed slicing features come first, from those columns alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from sluice.components.artifacts import Examples, Model
from sluice.components.evaluator import predict
from sluice.components.evaluator.accumulators import new_accumulator
from sluice.components.evaluator.analysis import Analysis, read_weights
from sluice.components.evaluator.slicing import (
    DEFAULT_BUCKETS,
    bucket_edges,
    bucketed_features,
    keyed_slices,
    spec_name,
)
from sluice.components.io.examples import open_parquet, read_batches, read_schema, read_table, split_files
from sluice.components.sdk import ComponentError

OWNER = "Evaluator"
# Splits of at most this many rows get exact metrics (their labels and scores kept per slice).
EXACT_ROWS = 1_000_000
# Rows per batch read: 4 raw-feature calls (serving.RAW_BATCH_ROWS) or 32 serialized ones.
READ_ROWS = 131_072
OVERALL = (-1, (), "overall", "")
ROLES = ("model", "baseline model")


def edges_for(files: list[str], specs, buckets: dict[str, int], limit: int | None) -> tuple[dict, dict]:
    """(bucket edges, bucket counts) of the bucketed slicing features over the rows evaluated
    (those columns only); every file cuts a feature bucketed in the first one alike, whatever its type."""
    schema = read_schema(files[0], OWNER)
    for feature in {f for spec in specs for f in ([spec] if isinstance(spec, str) else spec)}:
        if feature not in schema.names:
            raise ComponentError(f"Evaluator: slicing feature '{feature}' is not a column of {files[0]}")
    features = bucketed_features(schema, specs, buckets)
    if not features:
        return {}, dict(buckets)
    table = read_table(files, OWNER, columns=features, limit=limit)
    edges = {f: bucket_edges(table, f, files[0], buckets.get(f)) for f in features}
    return edges, {**{f: DEFAULT_BUCKETS for f in edges}, **buckets}


def slices_of(table, specs, spec_index: dict[str, int], data_file: str, buckets, edges) -> list[tuple[Any, Any]]:
    """The table's slices as (key, row mask), overall first; keys sort as the slices are shown."""
    found = [(OVERALL, np.ones(table.num_rows, dtype=bool))]
    for spec, name, mask, key in keyed_slices(table, specs, data_file, buckets, edges):
        found.append(((spec_index[spec], key, name, spec), mask))
    return found


def fold(found: dict, role: int, slices, labels, has_label, scores, weights, make) -> None:
    """Adds one batch's labelled rows of each slice to ``found[(role, slice key)]`` (``make(scores)``: a new one)."""
    for key, mask in slices:
        usable = mask & has_label
        if (role, key) not in found:
            found[(role, key)] = make(scores)
        found[(role, key)].add(labels[usable], scores[usable], weights[usable] if weights is not None else None)


def analysis_of(merged: dict, problem: str, decision_threshold: float, class_names, weighted: bool,
                min_slice_size: int, with_baseline: bool, exact: bool = False) -> Analysis:
    """The Analysis of accumulators by (role, slice key): slices by spec, then by value."""
    def overall(role):
        return merged.get((role, OVERALL)) or new_accumulator(problem, decision_threshold, 0, weighted, exact)

    analysis = Analysis(problem, overall(0).metrics(class_names), {}, {}, [], plots=overall(0).plots(class_names))
    if with_baseline:
        analysis.baseline = overall(1).metrics(class_names)
        analysis.baseline_plots = overall(1).plots(class_names)
    for key in sorted((key for role, key in merged if role == 0 and key != OVERALL), key=lambda k: k[:2]):
        _index, _sort, name, spec = key
        analysis.slices[name] = merged[(0, key)].metrics(class_names)
        analysis.specs[name] = spec
        if analysis.slices[name]["example_count"] < min_slice_size:
            analysis.small.append(name)
        if with_baseline:
            analysis.baseline_slices[name] = merged[(1, key)].metrics(class_names)
    return analysis


def _batches(files: list[str], limit: int | None) -> Iterator[tuple[str, Any, int, int]]:
    """(file, table, its first row in the file, in the split) of each batch of the first ``limit`` rows."""
    split_row = 0
    for path in files:
        file_row = 0
        for batch in read_batches(path, OWNER, batch_size=READ_ROWS):
            if limit is not None:
                if split_row >= limit:
                    return
                batch = batch.slice(0, limit - split_row)
            if batch.num_rows:
                yield path, pa.Table.from_batches([batch]), file_row, split_row
            file_row += batch.num_rows
            split_row += batch.num_rows


class _RuledOut(Exception):
    """A row rules out the reading being folded: start again with ``reading``."""

    def __init__(self, reading: tuple):
        super().__init__()
        self.reading = reading


class Reading:
    """How the outputs are read: the problem and, per model, probabilities or logits.

    Undecided (``problem="auto"``, ``from_logits=None``), it starts as binary (when one output per
    example) and as probabilities, and folds rows so; a row that rules that out (a label neither 0
    nor 1, an output outside [0, 1]) raises ``_RuledOut``, and the split is read again from its start
    with the new reading. A model whose outputs are logits shows one in its first batch, so that
    rarely costs more than a batch; each change happens at most once.
    """

    def __init__(self, problem: str, from_logits: bool | None, roles: int):
        self.asked, self.from_logits, self.roles = problem, from_logits, roles
        self.problem: str | None = None if problem == "auto" else problem
        self.logits = [False if from_logits is None else from_logits] * roles
        self.binary_labels = True  # every label so far 0 or 1 (problem="auto" only)
        self.labelled = False
        self.width = 1
        self.error: ComponentError | None = None  # probabilities that do not sum to 1, unless logits show up

    def decide(self, width: int) -> None:
        self.width = width
        if self.problem is None:
            self.problem = predict.problem_of(width, self.binary_labels)[0]

    def check(self, labels, has_label, outputs) -> None:
        """Raises ``_RuledOut`` when this batch rules the reading out."""
        present = labels[has_label]
        self.labelled |= bool(len(present))
        if self.asked == "auto" and self.problem == "binary" and self.width == 1 \
                and not np.isin(present, (0.0, 1.0)).all():
            self.binary_labels, self.problem = False, None
            raise _RuledOut(self)
        for role, raw in enumerate(outputs):
            if self.problem != "regression" and self.from_logits is None and not self.logits[role] \
                    and ((raw < 0) | (raw > 1)).any():
                self.logits[role], self.error = True, None
                raise _RuledOut(self)

    def scores(self, outputs, first_row: int) -> list | None:
        """Each model's scores, or None after an error that only logits further on would excuse."""
        if self.error is not None:
            return None
        try:
            return [predict.read_scores(raw, self.problem, ROLES[role], self.logits[role], first_row)
                    for role, raw in enumerate(outputs)]
        except ComponentError as exc:
            if self.from_logits is not None or self.problem != "multiclass":
                raise
            self.error = exc
            return None

    def finish(self) -> str:
        """The problem, said on stderr when inferred; the error kept, if no logits came."""
        if self.error is not None:
            raise self.error
        if self.asked == "auto":
            problem, why = predict.problem_of(self.width, self.labelled and self.binary_labels)
            print(f"Evaluator: problem inferred as {problem} ({why}); set parameter 'problem' to choose",
                  file=sys.stderr)
            self.problem = problem
        return self.problem or "regression"


def analyze(examples: Examples, model: Model, baseline: Model | None, *, label_key, prediction_key, slicing_features,
            slice_buckets, min_slice_size, eval_split, problem, from_logits, decision_threshold, label_vocabulary,
            example_weight_key, example_count_limit) -> Analysis:
    """The evaluation computed in this process, the split read batch by batch."""
    files = split_files(examples, eval_split, OWNER)
    limit = example_count_limit
    edges, buckets = edges_for(files, slicing_features, slice_buckets, limit)
    rows = sum(open_parquet(path, OWNER).metadata.num_rows for path in files)
    exact = min(rows, limit if limit is not None else rows) <= EXACT_ROWS
    weighted = example_weight_key is not None

    def make(problem):
        return lambda scores: new_accumulator(problem, decision_threshold, scores.shape[1] if scores.ndim == 2 else 0,
                                              weighted, exact)

    loaded = predict.load_serving(model, "model")
    loaded_baseline = predict.load_serving(baseline, "baseline model") if baseline is not None else None
    spec_index = {spec_name(spec): index for index, spec in enumerate(slicing_features)}
    reading = Reading(problem, from_logits, 2 if baseline is not None else 1)
    while True:
        found: dict = {}
        try:
            for path, table, file_row, split_row in _batches(files, limit):
                labels, has_label, outputs = predict.score_table(table, path, loaded, loaded_baseline, label_key,
                                                                 prediction_key, problem, label_vocabulary)
                reading.decide(outputs[0].shape[1] if outputs[0].ndim == 2 else 1)
                reading.check(labels, has_label, outputs)
                weights = read_weights(table, example_weight_key, path, file_row) if weighted else None
                scores = reading.scores(outputs, split_row)
                if scores is None:
                    continue
                labels = predict.class_ids(labels, has_label, reading.problem, label_key, path)
                if reading.problem == "multiclass":
                    predict.check_classes(labels, has_label, scores[0], label_key)
                slices = slices_of(table, slicing_features, spec_index, path, buckets, edges)
                for role, role_scores in enumerate(scores):
                    fold(found, role, slices, labels, has_label, role_scores, weights, make(reading.problem))
            break
        except _RuledOut:
            continue
    folded_as, problem = reading.problem, reading.finish()
    if problem != folded_as:  # no row had a label: every accumulator is empty, of the problem inferred
        found = {key: make(problem)(np.zeros(0)) for key in found}
    return analysis_of(found, problem, decision_threshold, label_vocabulary, weighted, min_slice_size,
                       baseline is not None, exact)
