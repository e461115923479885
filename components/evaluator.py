"""Evaluator: scores a model on an eval split, overall and per slice, and blesses it or not.

A model exported by ``trainer.export_serving_model`` is fed the raw Parquet
columns as SparseTensors through its ``evaluate_raw_features`` function: the same
transform graph and model as its ``serving_default``, minus the tf.Example round
trip, which cost the Evaluator over half its time. Any other SavedModel's
``serving_default`` signature is fed serialized ``tf.Example``s built from the raw
rows (vectorized, with tfx_bsl's encoder), each batch serialized once for every
signature that reads it (model, baseline, label). Labels come from the
``label_key`` column of the data, or, when the data has no such column (a label
made by Transform, e.g. ``tips_xf``), from the model's transformed features
(``evaluate_raw_features``, else the ``transform_features`` signature), as TFMA's
``preprocessing_function_names``.

``metrics.json`` also holds ``"plots"`` for the Kubeflow UI: a confusion matrix
(binary at ``decision_threshold``, or multiclass) and, for binary problems, a ROC
curve of at most ``ROC_CURVE_MAX_POINTS`` points.

Thresholds, keyed by metric name::

    thresholds={
        "binary_accuracy": MetricThreshold(lower_bound=0.85),
        "auc": MetricThreshold(max_regression=0.01),            # vs the baseline model
        "log_loss": MetricThreshold(higher_is_better=False, min_improvement=0.0),
    }

Value thresholds (``lower_bound`` / ``upper_bound``) always apply; change
thresholds (``min_improvement`` / ``max_regression``, absolute or, with
``relative=True``, a fraction of the baseline's value) compare against the
baseline: the ``baseline_model`` input, else the pipeline's latest blessed
model from the metadata store; without one they are recorded as skipped.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
from typing import Any, Literal

import pydantic

from sluice.components.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component

PREDICT_BATCH_ROWS = 4096  # rows per call through serialized tf.Examples
# Rows per call through ``evaluate_raw_features``: each call binds ~50 input tensors in Python
# (~10 ms), so bigger batches. 100x taxi eval (500k rows), time and the process's peak RSS:
# 4,096 rows 2.0 s / 970 MB, 16,384 rows 1.3 s / 1,033 MB, 32,768 rows 1.2 s / 1,105 MB.
RAW_BATCH_ROWS = 32768


class MetricThreshold(pydantic.BaseModel):
    """Conditions one metric must meet for the model to be blessed.

    ``min_improvement``: the candidate must beat the baseline by at least this
    much; ``max_regression``: it may be worse than the baseline by at most this
    much (in the direction given by ``higher_is_better``). With ``relative`` both
    are fractions of the baseline's value.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    lower_bound: float | None = None
    upper_bound: float | None = None
    min_improvement: float | None = None
    max_regression: float | None = None
    relative: bool = False
    higher_is_better: bool = True


# --- metrics (vectorized numpy) ---------------------------------------------


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


ROC_CURVE_MAX_POINTS = 200


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


# --- reading data and predicting ---------------------------------------------


def _eval_table(examples: Examples, split: str, limit: int | None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pattern = examples.parquet_pattern(split)
    files = sorted(glob.glob(pattern))
    if not files:
        raise ComponentError(f"Evaluator: no Parquet files for split '{split}' at {pattern}")
    tables, rows = [], 0
    for path in files:
        table = pq.ParquetFile(path).read()  # not read_table: that imports pyarrow.dataset (~50 MB)
        tables.append(table)
        rows += table.num_rows
        if limit is not None and rows >= limit:
            break
    table = pa.concat_tables(tables, promote_options="permissive")
    return (table.slice(0, limit) if limit is not None else table), files[0]


def _as_list_array(column):
    """A nullable scalar column as a list column (null -> empty list) in a type tf.Example holds."""
    import numpy as np
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        column = column.cast(pa.float32())
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        column = column.cast(pa.int64())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = column.cast(pa.large_binary())
    elif not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return None  # nested or other types are not raw scalar features
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), column.drop_null())


def serialize_examples(table) -> list[bytes]:
    """Arrow rows -> serialized tf.Example (nulls are absent features), column-wise and in C++."""
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    arrays, names = [], []
    for name in table.column_names:
        array = _as_list_array(table.column(name).combine_chunks())
        if array is not None:
            arrays.append(array)
            names.append(name)
    return RecordBatchToExamplesEncoder().encode(pa.RecordBatch.from_arrays(arrays, names))


def _default_output_key(outputs: dict, what: str) -> str:
    if len(outputs) == 1:
        return next(iter(outputs))
    for key in ("outputs", "probabilities", "predictions", "output_0"):
        if key in outputs:
            return key
    raise ComponentError(f"Evaluator: {what} has several outputs ({', '.join(sorted(outputs))}); "
                         f"set parameter 'prediction_key'")


def _load_serving(model: Model, role: str):
    import tensorflow as tf

    if not os.path.isfile(os.path.join(model.serving_dir, "saved_model.pb")):
        raise ComponentError(f"Evaluator: {role} has no SavedModel at {model.serving_dir}")
    loaded = tf.saved_model.load(model.serving_dir)
    if "serving_default" not in loaded.signatures:
        raise ComponentError(f"Evaluator: {role} at {model.serving_dir} has no 'serving_default' signature")
    return loaded


@dataclasses.dataclass
class _SignatureCall:
    """One signature to run over every eval row, and the output to keep (None: pick the default).

    ``raw``: ``signature`` is a model's ``evaluate_raw_features`` (raw SparseTensors in, no
    tf.Example round trip), and ``part`` the output group to read ("outputs" or "transformed").
    """

    signature: Any
    output_key: str | None
    what: str
    raw: bool = False
    part: str | None = None


def _raw_function(loaded):
    """A model's ``evaluate_raw_features`` (see ``trainer.export_serving_model``), or None.

    None also when a function of that name takes something else than raw SparseTensors:
    the model is then evaluated through its serving signatures.
    """
    function = getattr(loaded, "evaluate_raw_features", None)
    if function is None or not getattr(function, "concrete_functions", None):
        return None
    try:
        _raw_feature_types(function)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return function


def _raw_feature_types(function) -> dict[str, str]:
    """``{name: "int64"|"float32"|"string"}`` from an ``evaluate_raw_features``' input signature."""
    import tensorflow as tf

    names = {tf.int64: "int64", tf.float32: "float32", tf.string: "string"}
    (specs,), _ = function.concrete_functions[0].structured_input_signature
    if not all(isinstance(spec, tf.SparseTensorSpec) for spec in specs.values()):
        raise TypeError("evaluate_raw_features takes other than raw SparseTensors")
    return {name: names[spec.dtype] for name, spec in sorted(specs.items())}


def _model_call(loaded, prediction_key: str | None, role: str) -> _SignatureCall:
    raw = _raw_function(loaded)
    if raw is not None:
        return _SignatureCall(raw, prediction_key, f"{role}'s serving outputs", raw=True, part="outputs")
    return _SignatureCall(loaded.signatures["serving_default"], prediction_key, f"{role}'s serving_default")


def _run_signatures(table, calls: list[_SignatureCall]) -> list:
    """Runs every call over the table's rows in batches; returns one numpy output per call.

    Models exported by ``trainer.export_serving_model`` get the batch's Arrow columns as raw
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

    from sluice.components.transform import arrow_to_raw_tensors

    results: list[list] = [[] for _ in calls]
    keys = [call.output_key for call in calls]
    workers = min(4, os.cpu_count() or 1)
    serialized_needed = any(not call.raw for call in calls)
    raw_types = {id(call.signature): _raw_feature_types(call.signature) for call in calls if call.raw}
    batch_rows = PREDICT_BATCH_ROWS if serialized_needed else RAW_BATCH_ROWS
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


def _scores(raw, problem, role):
    """The serving output as binary probabilities ``[n]`` or class probabilities ``[n, classes]``."""
    import numpy as np

    raw = raw.astype(np.float64)
    if problem == "binary":
        if raw.ndim == 2 and raw.shape[1] == 2:
            return raw[:, 1]
        if raw.ndim == 2 and raw.shape[1] != 1:
            raise ComponentError(f"Evaluator: {role} predicts shape {list(raw.shape)}; a binary problem needs "
                                 f"one probability per example (or two classes)")
        return raw.reshape(-1)
    if raw.ndim != 2:
        raise ComponentError(f"Evaluator: {role} predicts shape {list(raw.shape)}; a multiclass problem needs "
                             f"class probabilities [examples, classes]")
    return raw


def _label_call(table, label_key, loaded, data_file) -> _SignatureCall | None:
    """The transform_features call that computes the label, or None when the data has it."""
    if label_key in table.column_names:
        return None
    raw = _raw_function(loaded)
    if raw is not None:
        return _SignatureCall(raw, label_key, "the model's transformed features", raw=True, part="transformed")
    if "transform_features" in loaded.signatures:
        return _SignatureCall(loaded.signatures["transform_features"], label_key,
                              "the model's transform_features signature")
    raise ComponentError(f"Evaluator: label '{label_key}' is not a column of {data_file} and the model "
                         f"has no transform_features signature to compute it")


def _labels(column, label_key, problem, label_vocabulary, data_file):
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
    if problem == "binary" and not np.isin(numbers[valid], (0.0, 1.0)).all():
        bad = numbers[valid][~np.isin(numbers[valid], (0.0, 1.0))][0]
        raise ComponentError(f"Evaluator: label '{label_key}' in {data_file} has value {bad}; a binary "
                             f"problem needs labels 0/1")
    return numbers.astype(np.int64), valid


# --- slices and thresholds ---------------------------------------------------


def _slice_masks(table, features: list[str], data_file: str):
    """(``"feature=value"``, row mask) for each present value of each slicing feature."""
    import numpy as np
    import pyarrow.compute as pc

    for feature in features:
        if feature not in table.column_names:
            raise ComponentError(f"Evaluator: slicing feature '{feature}' is not a column of {data_file}")
        encoded = pc.dictionary_encode(table.column(feature).combine_chunks())
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
        for code, value in enumerate(encoded.dictionary.to_pylist()):
            yield f"{feature}={value}", valid & (indices == code)


def _check_thresholds(thresholds: dict[str, MetricThreshold], overall: dict, baseline: dict | None):
    results = []
    for metric, threshold in thresholds.items():
        if metric not in overall:
            raise ComponentError(f"Evaluator: parameter 'thresholds' names unknown metric '{metric}' "
                                 f"(metrics: {', '.join(sorted(overall))})")
        value = overall[metric]
        for kind in ("lower_bound", "upper_bound"):
            bound = getattr(threshold, kind)
            if bound is None:
                continue
            passed = value is not None and (value >= bound if kind == "lower_bound" else value <= bound)
            results.append({"metric": metric, "kind": kind, "threshold": bound, "value": value,
                            "baseline": None, "passed": passed, "skipped": False})
        for kind in ("min_improvement", "max_regression"):
            amount = getattr(threshold, kind)
            if amount is None:
                continue
            base_value = None if baseline is None else baseline.get(metric)
            entry = {"metric": metric, "kind": kind, "threshold": amount, "relative": threshold.relative,
                     "value": value, "baseline": base_value}
            if base_value is None or value is None:
                entry.update(passed=None, skipped=True,
                             note="no baseline model" if baseline is None else "metric undefined")
                results.append(entry)
                continue
            scale = abs(base_value) if threshold.relative else 1.0
            gain = (value - base_value) if threshold.higher_is_better else (base_value - value)
            passed = gain >= amount * scale if kind == "min_improvement" else -gain <= amount * scale
            entry.update(passed=bool(passed), skipped=False)
            results.append(entry)
    return results


def _describe_failure(result: dict) -> str:
    value = "undefined" if result["value"] is None else f"{result['value']:.4g}"
    if result["kind"] in ("lower_bound", "upper_bound"):
        return f"{result['metric']} {value} violates {result['kind']} {result['threshold']}"
    mode = " (relative)" if result.get("relative") else ""
    return (f"{result['metric']} {value} vs baseline {result['baseline']:.4g} violates "
            f"{result['kind']} {result['threshold']}{mode}")


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


# --- the report --------------------------------------------------------------

_REPORT = """<!doctype html>
<html><head><meta charset="utf-8"><title>Model evaluation</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.pass{color:#176f2c}.fail{color:#b00020;font-weight:bold}.skip{color:#777}
</style></head><body>
<h1>Model evaluation: <span class="{{ 'pass' if blessed else 'fail' }}">{{ 'BLESSED' if blessed else 'NOT BLESSED' }}</span></h1>
<p>{{ reason }}</p>
<p>Model: <code>{{ model_uri }}</code><br>Baseline: {% if baseline_uri %}<code>{{ baseline_uri }}</code>{% else %}none{% endif %}</p>
<h2>Metrics</h2>
<table><tr><th>slice</th>{% for m in metric_names %}<th>{{ m }}</th>{% endfor %}</tr>
{% for name, values in rows %}<tr><td>{{ name }}</td>{% for m in metric_names %}<td>{{ fmt(values.get(m)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if thresholds %}<h2>Thresholds</h2>
<table><tr><th>metric</th><th>kind</th><th>threshold</th><th>value</th><th>baseline</th><th>result</th></tr>
{% for t in thresholds %}<tr><td>{{ t.metric }}</td><td>{{ t.kind }}{% if t.relative %} (relative){% endif %}</td>
<td>{{ t.threshold }}</td><td>{{ fmt(t.value) }}</td><td>{{ fmt(t.baseline) }}</td>
<td class="{{ 'skip' if t.skipped else ('pass' if t.passed else 'fail') }}">{{ 'skipped: ' ~ t.note if t.skipped else ('pass' if t.passed else 'FAIL') }}</td></tr>
{% endfor %}</table>{% endif %}
</body></html>
"""


def _write_report(path: str, **values: Any) -> None:
    import jinja2

    def fmt(value):
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    html = jinja2.Environment(autoescape=True).from_string(_REPORT).render(fmt=fmt, **values)
    with open(path, "w") as out:
        out.write(html)


# --- the component -----------------------------------------------------------


def _json_safe(metrics: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def evaluate_model(
    examples: Input[Examples],
    model: Input[Model],
    evaluation: Output[ModelEvaluation],
    blessing: Output[ModelBlessing],
    label_key: str,
    baseline_model: Input[Model] | None = None,
    prediction_key: str | None = None,
    slicing_features: list[str] = [],
    thresholds: dict[str, MetricThreshold] = {},
    eval_split: str = "eval",
    problem: Literal["binary", "multiclass"] = "binary",
    decision_threshold: float = 0.5,
    label_vocabulary: list[str] | None = None,
    example_count_limit: int | None = None,
    ctx: ExecutionContext = None,
) -> None:
    """Evaluates ``model`` (and a baseline) on the raw ``eval_split``; blesses it if thresholds pass.

    ``prediction_key`` picks the serving output (default: the only output, or
    ``outputs`` / ``probabilities``). Binary problems take one probability per
    example (or two-class probabilities); multiclass ones class probabilities.
    String labels map to class ids through ``label_vocabulary``.
    """
    import numpy as np
    import pyarrow as pa

    ctx = ctx or ExecutionContext()
    thresholds = {k: MetricThreshold.model_validate(v) if isinstance(v, dict) else v
                  for k, v in thresholds.items()}
    table, data_file = _eval_table(examples, eval_split, example_count_limit)
    loaded = _load_serving(model, "model")
    label_call = _label_call(table, label_key, loaded, data_file)
    if label_call is None:  # validate labels before the expensive predictions
        labels, has_label = _labels(table.column(label_key).combine_chunks(), label_key, problem,
                                    label_vocabulary, data_file)
    baseline = baseline_model or _resolve_baseline(ctx, model)
    loaded_baseline = _load_serving(baseline, "baseline model") if baseline is not None else None

    calls = [_model_call(loaded, prediction_key, "model")]
    if loaded_baseline is not None:
        calls.append(_model_call(loaded_baseline, prediction_key, "baseline model"))
    if label_call is not None:
        calls.append(label_call)
    outputs = _run_signatures(table, calls)
    if label_call is not None:
        labels, has_label = _labels(pa.array(outputs[-1].reshape(-1)), label_key, problem, label_vocabulary,
                                    data_file)
    scores = _scores(outputs[0], problem, "model")

    def compute(scores, mask):
        usable = mask & has_label
        if problem == "binary":
            return _json_safe(binary_metrics(labels[usable], scores[usable], decision_threshold))
        return _json_safe(multiclass_metrics(labels[usable], scores[usable]))

    everything = np.ones(table.num_rows, dtype=bool)
    if problem == "multiclass" and has_label.any() and labels[has_label].max() >= scores.shape[1]:
        raise ComponentError(f"Evaluator: label '{label_key}' has class id {labels[has_label].max()} but the "
                             f"model predicts {scores.shape[1]} classes")
    overall = compute(scores, everything)
    slices = {name: compute(scores, mask) for name, mask in _slice_masks(table, slicing_features, data_file)}
    plots = evaluation_plots(labels[has_label], scores[has_label], problem, decision_threshold,
                             label_vocabulary)

    baseline_metrics = None
    if loaded_baseline is not None:
        baseline_metrics = compute(_scores(outputs[1], problem, "baseline model"), everything)

    results = _check_thresholds(thresholds, overall, baseline_metrics)
    failures = [_describe_failure(r) for r in results if not r["skipped"] and not r["passed"]]
    checked = sum(not r["skipped"] for r in results)
    skipped = len(results) - checked
    blessed = not failures
    if failures:
        reason = "; ".join(failures)
    else:
        reason = f"{checked} threshold check(s) passed" + (f", {skipped} skipped (no baseline)" if skipped else "")

    with open(evaluation.path("metrics.json"), "w") as out:
        json.dump({"overall": overall, "slices": slices, "baseline": baseline_metrics,
                   "baseline_model_uri": baseline.uri if baseline is not None else None,
                   "thresholds": results, "plots": plots}, out, indent=2)
    metric_names = [k for k in overall if k != "example_count"] + ["example_count"]
    rows = [("overall", overall)] + ([("baseline (overall)", baseline_metrics)] if baseline_metrics else []) \
        + sorted(slices.items())
    _write_report(evaluation.path("report.html"), blessed=blessed, reason=reason, model_uri=model.uri,
                  baseline_uri=baseline.uri if baseline is not None else None, metric_names=metric_names,
                  rows=rows, thresholds=results)
    evaluation.blessed = blessed

    open(blessing.path("BLESSED" if blessed else "NOT_BLESSED"), "w").close()
    blessing.blessed = blessed
    blessing.model_uri = model.uri
    blessing.reason = reason
    ctx.log_metrics({k: v for k, v in overall.items() if v is not None})


Evaluator = component(evaluate_model, name="Evaluator", warm_imports=("tensorflow",))
