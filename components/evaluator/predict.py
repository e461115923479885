"""Calling the serving models over the eval rows, and reading labels and scores from their outputs.

A model exported by ``sluice.components.serving.export_serving_model`` is fed the raw
Parquet columns as SparseTensors through its ``evaluate_raw_features`` function: the same
transform graph and model as its ``serving_default``, minus the tf.Example round trip,
which cost the Evaluator over half its time. Any other SavedModel's ``serving_default``
signature is fed serialized ``tf.Example``s built from the raw rows, each batch serialized
once for every signature that reads it (model, baseline, label).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from sluice.components.artifacts import Model
from sluice.components.sdk import ComponentError
from sluice.components.serving import (
    SERVING_SIGNATURE,
    TRANSFORM_SIGNATURE,
    load_serving_model,
    raw_feature_types,
    raw_function,
    serialize_examples,
)
from sluice.components.serving import batch_rows as rows_per_call


@dataclasses.dataclass
class SignatureCall:
    """One signature to run over every eval row, and the output to keep (None: pick the default).

    ``raw``: ``signature`` is a model's ``evaluate_raw_features`` (raw SparseTensors in, no
    tf.Example round trip), and ``part`` the output group to read ("outputs" or "transformed").
    """

    signature: Any
    output_key: str | None
    what: str
    raw: bool = False
    part: str | None = None


def load_serving(model: Model, role: str):
    """The loaded serving SavedModel of ``model`` (``role``: "model", "baseline model")."""
    return load_serving_model(model.serving_dir, role, "Evaluator")


def model_call(loaded, prediction_key: str | None, role: str) -> SignatureCall:
    raw = raw_function(loaded)
    if raw is not None:
        return SignatureCall(raw, prediction_key, f"{role}'s serving outputs", raw=True, part="outputs")
    return SignatureCall(loaded.signatures[SERVING_SIGNATURE], prediction_key, f"{role}'s serving_default")


def label_call(table, label_key, loaded, data_file) -> SignatureCall | None:
    """The call that computes the label with the model's transform, or None when the data has it."""
    if label_key in table.column_names:
        return None
    raw = raw_function(loaded)
    if raw is not None:
        return SignatureCall(raw, label_key, "the model's transformed features", raw=True, part="transformed")
    if TRANSFORM_SIGNATURE in loaded.signatures:
        return SignatureCall(loaded.signatures[TRANSFORM_SIGNATURE], label_key,
                             "the model's transform_features signature")
    raise ComponentError(f"Evaluator: label '{label_key}' is not a column of {data_file} and the model "
                         f"has no transform_features signature to compute it")


def _default_output_key(outputs: dict, what: str) -> str:
    if len(outputs) == 1:
        return next(iter(outputs))
    for key in ("outputs", "probabilities", "predictions", "output_0"):
        if key in outputs:
            return key
    raise ComponentError(f"Evaluator: {what} has several outputs ({', '.join(sorted(outputs))}); "
                         f"set parameter 'prediction_key'")


def run_signatures(table, calls: list[SignatureCall]) -> list:
    """Runs every call over the table's rows in batches; returns one numpy output per call.

    Models exported by ``export_serving_model`` get the batch's Arrow columns as raw
    SparseTensors (``evaluate_raw_features``: one call gives both the predictions and the
    transformed label). Other models get the batch serialized to tf.Example, once for every
    signature (model, baseline, label transform). The next batches are prepared on worker
    threads (the encoder releases the GIL, so they use every core) while TensorFlow runs the
    current one.
    """
    import collections
    import concurrent.futures

    import numpy as np
    import tensorflow as tf

    from sluice.components.tft import arrow_to_raw_tensors

    results: list[list] = [[] for _ in calls]
    keys = [call.output_key for call in calls]
    workers = min(4, os.cpu_count() or 1)
    serialized_needed = any(not call.raw for call in calls)
    raw_types = {id(call.signature): raw_feature_types(call.signature) for call in calls if call.raw}
    batch_rows = rows_per_call(serialized_needed)
    starts = collections.deque(range(0, table.num_rows, batch_rows))

    def prepare(start):
        batch = table.slice(start, batch_rows)
        serialized = tf.constant(serialize_examples(batch), dtype=tf.string) if serialized_needed else None
        raw = {key: arrow_to_raw_tensors(batch, types) for key, types in raw_types.items()}
        return serialized, raw

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque = collections.deque()
        while starts or pending:
            while starts and len(pending) <= workers:  # a few batches ahead, not the whole split
                pending.append(pool.submit(prepare, starts.popleft()))
            serialized, raw = pending.popleft().result()
            raw_outputs: dict[int, Any] = {}  # one call per raw function and batch
            for index, call in enumerate(calls):
                if call.raw:
                    key = id(call.signature)
                    if key not in raw_outputs:
                        raw_outputs[key] = call.signature(raw[key])
                    outputs = raw_outputs[key][call.part]
                else:
                    outputs = call.signature(examples=serialized)
                if keys[index] is None:
                    keys[index] = _default_output_key(outputs, call.what)
                if keys[index] not in outputs:
                    raise ComponentError(f"Evaluator: {call.what} has no output '{keys[index]}' "
                                         f"(outputs: {', '.join(sorted(outputs))})")
                results[index].append(outputs[keys[index]].numpy())
    return [np.concatenate(parts) if parts else np.zeros([0]) for parts in results]


# Class probabilities whose rows sum farther than this from 1 are not probabilities.
PROBABILITY_SUM_TOLERANCE = 1e-3


def score_table(table, data_file: str, loaded, loaded_baseline, label_key, prediction_key, problem,
                label_vocabulary):
    """(labels, has_label, [model, baseline] outputs) of a table of rows, for both paths (in process
    and on Beam): labels from the ``label_key`` column, checked before the predictions, or, when the
    data has no such column (a label made by Transform), from the model's transformed features."""
    import pyarrow as pa

    call = label_call(table, label_key, loaded, data_file)
    if call is None:
        labels, has_label = read_labels(table.column(label_key).combine_chunks(), label_key, problem,
                                        label_vocabulary, data_file)
    calls = [model_call(loaded, prediction_key, "model")]
    if loaded_baseline is not None:
        calls.append(model_call(loaded_baseline, prediction_key, "baseline model"))
    if call is not None:
        calls.append(call)
    outputs = run_signatures(table, calls)
    if call is not None:
        labels, has_label = read_labels(pa.array(outputs[-1].reshape(-1)), label_key, problem, label_vocabulary,
                                        data_file)
    return labels, has_label, outputs[:2 if loaded_baseline is not None else 1]


def class_ids(labels, has_label, problem: str, label_key: str, data_file: str):
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


def check_classes(labels, has_label, scores, label_key: str) -> None:
    """A multiclass label must name one of the model's classes."""
    if has_label.any() and labels[has_label].max() >= scores.shape[1]:
        raise ComponentError(f"Evaluator: label '{label_key}' has class id {labels[has_label].max()} but the "
                             f"model predicts {scores.shape[1]} classes")


def read_scores(raw, problem, role, from_logits: bool | None = None, first_row: int = 0):
    """The serving output as binary probabilities ``[n]``, class probabilities ``[n, classes]`` or
    regression predictions ``[n]``.

    Logits become probabilities (sigmoid, or softmax over classes) when ``from_logits`` says so,
    or, when it is None, when some output lies outside [0, 1]. Class probabilities whose rows do
    not sum to 1 are an error, not a metric (``first_row``: the row number of ``raw``'s first row).
    """
    import numpy as np

    raw = raw.astype(np.float64)
    if problem == "regression":
        if raw.ndim == 2 and raw.shape[1] != 1:
            raise ComponentError(f"Evaluator: {role} predicts shape {list(raw.shape)}; a regression problem needs "
                                 f"one value per example")
        return raw.reshape(-1)
    logits = from_logits if from_logits is not None else bool(((raw < 0) | (raw > 1)).any())
    if problem == "binary":
        if raw.ndim == 2 and raw.shape[1] == 2:
            return (_softmax(raw) if logits else raw)[:, 1]
        if raw.ndim == 2 and raw.shape[1] != 1:
            raise ComponentError(f"Evaluator: {role} predicts shape {list(raw.shape)}; a binary problem needs "
                                 f"one probability per example (or two classes)")
        scores = raw.reshape(-1)
        return 1.0 / (1.0 + np.exp(-scores)) if logits else scores
    if raw.ndim != 2:
        raise ComponentError(f"Evaluator: {role} predicts shape {list(raw.shape)}; a multiclass problem needs "
                             f"class probabilities [examples, classes]")
    if logits:
        return _softmax(raw)
    sums = raw.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE)
    if len(off):
        raise ComponentError(f"Evaluator: {role}'s class probabilities do not sum to 1 (row "
                             f"{first_row + int(off[0])} sums to {sums[off[0]]:.4g}); set parameter 'from_logits' "
                             f"to true if they are logits")
    return raw


def _softmax(logits):
    import numpy as np

    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def infer_problem(raw, labels, has_label) -> tuple[str, str]:
    """``(problem, why)`` from the model's output and the labels: class scores -> multiclass (or
    binary for two classes); one value per example -> binary when every label is 0 or 1, else
    regression."""
    import numpy as np

    width = raw.shape[1] if raw.ndim == 2 else 1
    present = labels[has_label]
    return problem_of(width, bool(len(present) and np.isin(present, (0.0, 1.0)).all()))


def problem_of(width: int, binary_labels: bool) -> tuple[str, str]:
    """``(problem, why)`` from the model's output width and whether there are labels, every one 0 or 1."""
    if width > 2:
        return "multiclass", f"the model predicts {width} class scores"
    if width == 2:
        return "binary", "the model predicts 2 class scores"
    if binary_labels:
        return "binary", "one score per example and every label is 0 or 1"
    return "regression", "one value per example and labels other than 0 and 1"


def read_labels(column, label_key, problem, label_vocabulary, data_file):
    """Integer labels and a mask of usable rows (rows with a missing label are left out)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
            or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        if label_vocabulary is None:
            raise ComponentError(f"Evaluator: label '{label_key}' holds strings; set parameter "
                                 f"'label_vocabulary' to map them to class ids")
        values = column.cast(pa.large_string())
        ids = pc.index_in(values, value_set=pa.array(label_vocabulary, pa.large_string()))
        unknown = ids.is_null().to_numpy(zero_copy_only=False) & valid
        if unknown.any():
            bad = values.filter(pa.array(unknown))[0].as_py()
            raise ComponentError(f"Evaluator: label '{label_key}' value {bad!r} in {data_file} is not in "
                                 f"parameter 'label_vocabulary'")
        return pc.fill_null(ids, 0).to_numpy().astype(np.int64), valid
    numbers = pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy()
    valid &= np.isfinite(numbers)
    if problem in ("regression", "auto"):  # "auto": the problem is inferred once the model has predicted
        return numbers, valid
    if problem == "binary" and not np.isin(numbers[valid], (0.0, 1.0)).all():
        bad = numbers[valid][~np.isin(numbers[valid], (0.0, 1.0))][0]
        raise ComponentError(f"Evaluator: label '{label_key}' in {data_file} has value {bad}; a binary "
                             f"problem needs labels 0/1")
    return numbers.astype(np.int64), valid
