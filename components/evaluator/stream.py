"""The Evaluator in this process, streaming: the eval split is read in record batches, each batch
scored (model and baseline) and folded into mergeable accumulators per slice (``accumulators``),
as the Beam path's workers do, so memory is bounded by one batch and the accumulators, never the
split.

Splits of up to ``EXACT_ROWS`` rows (after ``example_count_limit``) keep each slice's labels and
scores, so every figure is ``metrics``' exact one over the whole split; larger splits fold into sums
and score histograms from their first row (binary ``auc``/``auc_pr`` and the curves then on
``accumulators.GRID`` buckets, as on Beam).

``problem="auto"`` and ``from_logits=None`` are decided over every row, as when the split was read at
once: each reading still possible (binary or regression for one output per example; probabilities or
logits, for each model) keeps its own accumulators until a row rules it out. Quantile bucket edges of
bucketed slicing features come first, from those columns alone.
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


class Readings:
    """The readings of the outputs still possible: (problem, role, logits) -> accumulators by slice key.

    A reading ends when a row rules it out: binary when a label is neither 0 nor 1 (``problem="auto"``),
    probabilities when an output lies outside [0, 1] (``from_logits=None``); the one left is chosen.
    """

    def __init__(self, problem: str, from_logits: bool | None, roles: int, make):
        self.problem, self.from_logits, self.roles, self.make = problem, from_logits, roles, make
        self.live: dict | None = None
        self.errors: dict = {}  # a reading whose scores are invalid: the error, raised if it is chosen
        self.width, self.labelled, self.binary_labels = 1, False, True
        self.outside = [False] * roles

    def _start(self, width: int) -> None:
        self.width = width
        problems = [self.problem] if self.problem != "auto" else (
            ["binary", "regression"] if width == 1 else [predict.problem_of(width, True)[0]])
        logits = (False, True) if self.from_logits is None else (self.from_logits,)
        self.live = {(p, role, lg): {} for p in problems for role in range(self.roles)
                     for lg in ((None,) if p == "regression" else logits)}

    def _rule_out(self, labels, has_label, outputs) -> None:
        present = labels[has_label]
        self.labelled |= bool(len(present))
        if self.problem == "auto" and self.binary_labels and not np.isin(present, (0.0, 1.0)).all():
            self.binary_labels = False
            self.live = {k: v for k, v in self.live.items() if k[0] != "binary"}
        for role, raw in enumerate(outputs):
            if self.from_logits is None and not self.outside[role] and ((raw < 0) | (raw > 1)).any():
                self.outside[role] = True
                self.live = {k: v for k, v in self.live.items() if k[1] != role or k[2] is not False}

    def add(self, labels, has_label, outputs, weights, slices, label_key: str, data_file: str, first_row: int):
        if self.live is None:
            self._start(outputs[0].shape[1] if outputs[0].ndim == 2 else 1)
        self._rule_out(labels, has_label, outputs)
        ids: dict[str, Any] = {}
        for key, found in self.live.items():
            problem, role, logits = key
            if key in self.errors:
                continue
            if problem not in ids:
                ids[problem] = predict.class_ids(labels, has_label, problem, label_key, data_file)
            try:
                scores = predict.read_scores(outputs[role], problem, ROLES[role], logits, first_row)
            except ComponentError as exc:
                if logits is not False or self.from_logits is not None:
                    raise
                self.errors[key] = exc  # probabilities that do not sum to 1: wrong only if no logits
                continue
            if problem == "multiclass":
                predict.check_classes(ids[problem], has_label, scores, label_key)
            fold(found, role, slices, ids[problem], has_label, scores, weights, self.make(problem))

    def result(self) -> tuple[str, dict]:
        """(problem, accumulators by (role, slice key)) of the reading chosen."""
        problem = self.problem
        if problem == "auto":
            problem, why = predict.problem_of(self.width, self.labelled and self.binary_labels)
            print(f"Evaluator: problem inferred as {problem} ({why}); set parameter 'problem' to choose",
                  file=sys.stderr)
        merged: dict = {}
        for role in range(self.roles if self.live is not None else 0):
            logits = None if problem == "regression" else (
                self.outside[role] if self.from_logits is None else self.from_logits)
            if (problem, role, logits) in self.errors:
                raise self.errors[(problem, role, logits)]
            merged.update(self.live[(problem, role, logits)])
        return problem, merged


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

    readings = Readings(problem, from_logits, 2 if baseline is not None else 1, make)
    loaded = predict.load_serving(model, "model")
    loaded_baseline = predict.load_serving(baseline, "baseline model") if baseline is not None else None
    spec_index = {spec_name(spec): index for index, spec in enumerate(slicing_features)}
    for path, table, file_row, split_row in _batches(files, limit):
        labels, has_label, outputs = predict.score_table(table, path, loaded, loaded_baseline, label_key,
                                                         prediction_key, problem, label_vocabulary)
        weights = read_weights(table, example_weight_key, path, file_row) if weighted else None
        slices = slices_of(table, slicing_features, spec_index, path, buckets, edges)
        readings.add(labels, has_label, outputs, weights, slices, label_key, path, split_row)
    problem, merged = readings.result()
    return analysis_of(merged, problem, decision_threshold, label_vocabulary, weighted, min_slice_size,
                       baseline is not None, exact)
