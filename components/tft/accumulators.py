"""The analyzers' mergeable accumulators: create, add a batch's values, merge two, extract the value.

One accumulator per analyzer call (``AnalyzerSpec``), by its kind: ``mean_and_var`` (count,
mean and sum of squared deviations, merged as Chan et al.), ``min_max``, ``sum``,
``vocabulary`` (token counts), ``count_per_value`` (occurrences of each integer) and
``quantiles`` (tfx_bsl's QuantilesSketch). As tf.Transform: ``mean_and_var`` ignores NaN and
infinite values, ``min_max`` and ``sum`` propagate NaN, the quantiles sketch skips NaN.

A batch's values are one vector (for ``mean_and_var``, or its moments reduced in the
analysis graph, ``batch_moments``), or with ``config["elementwise_shape"]`` a ``[values, d]``
matrix whose ``d`` columns reduce separately (tf.Transform's ``reduce_instance_dims=False``);
the extracted value then has the per-example shape.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from typing import Any

from sluice.components.tft.tracing import AnalyzerSpec

_QUANTILES_MAX_ELEMENTS = 1 << 32
# tf.Transform writes this one token for a vocabulary left empty (TF lookup tables cannot be empty).
EMPTY_VOCABULARY_STRING = b"49d0cd50-04bb-48c0-bc6f-5b575dce351a"
EMPTY_VOCABULARY_INT = -1


def _columns(spec: AnalyzerSpec) -> int:
    if spec.config.get("weighted"):  # weighted quantiles: [values, 2] pairs of (value, weight), one stream
        return 1
    size = 1
    for dim in spec.config.get("elementwise_shape") or []:
        size *= dim
    return size


def _matrix(spec: AnalyzerSpec, values: Any) -> Any:
    import numpy as np

    return np.asarray(values).reshape(-1, _columns(spec))


def new_accumulator(spec: AnalyzerSpec) -> Any:
    import numpy as np

    d = _columns(spec)
    if spec.kind == "mean_and_var":
        return [np.zeros(d), np.zeros(d), np.zeros(d)]  # count, mean, sum of squared deviations
    if spec.kind in ("min_max", "sum"):
        return None  # set by the first batch, in its dtype
    if spec.kind in ("vocabulary", "count_per_value"):
        return {}
    if spec.kind == "quantiles":
        from tfx_bsl.sketches import QuantilesSketch

        return QuantilesSketch(spec.config["epsilon"], _QUANTILES_MAX_ELEMENTS, d)
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _merge_mean_var(acc: list, count: Any, batch_mean: Any, batch_m2: Any) -> list:
    import numpy as np

    total = acc[0] + count
    safe = np.where(total > 0, total, 1)
    delta = batch_mean - acc[1]
    return [total, acc[1] + delta * count / safe, acc[2] + batch_m2 + delta * delta * acc[0] * count / safe]


def _add_mean_var(acc: list, matrix: Any) -> list:
    import numpy as np

    matrix = matrix.astype(np.float64, copy=False)
    if not len(matrix):
        return acc
    present = np.isfinite(matrix)
    if present.all():  # the common case, without masking
        count = np.full(matrix.shape[1], float(len(matrix)))
        batch_mean = matrix.mean(axis=0)
        centered = matrix - batch_mean
        return _merge_mean_var(acc, count, batch_mean, np.einsum("ij,ij->j", centered, centered))
    count = present.sum(axis=0)
    if not count.any():
        return acc
    filled = np.where(present, matrix, 0.0)
    batch_mean = filled.sum(axis=0) / np.where(count > 0, count, 1)
    batch_m2 = (np.where(present, matrix - batch_mean, 0.0) ** 2).sum(axis=0)
    return _merge_mean_var(acc, count, batch_mean, batch_m2)


def batch_moments(values: Any, columns: int) -> Any:
    """In the analysis graph: one batch's ``[count, mean, sum of squared deviations]`` per column
    (``[3, columns]`` float64), NaN and infinite values left out; ``add_to_accumulator`` merges it.

    Floats go through one ``tf.function`` per dtype, traced once per process and called from every
    graph (about 50 ops, which each analyzer's graph would trace again). It holds no control flow:
    a ``tf.cond`` between the plain and the masked moments took half the planning trace of a
    ``preprocessing_fn`` with one z-score, and its branches were functions of their own to prepare
    (bench/PROFILES.md). The masked moments are computed instead on the batch's rows when some value
    is not finite, and on no rows otherwise, so the common case pays one more pass (``is_finite``)
    over the batch; a select picks the result. Integers are always finite.
    """
    import tensorflow as tf

    values = tf.reshape(values, [-1, columns])
    if not values.dtype.is_floating:
        return _finite_moments(tf.cast(values, tf.float64))
    return _float_moments(values.dtype)(values)


_FLOAT_MOMENTS: dict[Any, Any] = {}
_FLOAT_MOMENTS_LOCK = threading.Lock()


def _float_moments(dtype: Any) -> Any:
    """The concrete function of ``[values, columns]`` floats of ``dtype`` to their moments."""
    import tensorflow as tf

    with _FLOAT_MOMENTS_LOCK:
        if dtype not in _FLOAT_MOMENTS:
            @tf.function(input_signature=[tf.TensorSpec([None, None], dtype)], autograph=False)
            def moments(values: Any) -> Any:
                matrix = tf.cast(values, tf.float64)
                all_finite = tf.reduce_all(tf.math.is_finite(values))  # casting keeps each value finite or not
                masked_rows = tf.gather(matrix, tf.range(tf.shape(matrix)[0]
                                                         * tf.cast(tf.logical_not(all_finite), tf.int32)))
                return tf.where(all_finite, _finite_moments(matrix),
                                _masked_moments(masked_rows, tf.math.is_finite(masked_rows)))

            _FLOAT_MOMENTS[dtype] = moments.get_concrete_function()
        return _FLOAT_MOMENTS[dtype]


def _finite_moments(matrix: Any) -> Any:
    import tensorflow as tf

    count = tf.fill(tf.shape(matrix)[1:], tf.cast(tf.shape(matrix)[0], tf.float64))
    mean = tf.math.divide_no_nan(tf.reduce_sum(matrix, axis=0), count)
    return tf.stack([count, mean, tf.reduce_sum(tf.math.squared_difference(matrix, mean), axis=0)])


def _masked_moments(matrix: Any, finite: Any) -> Any:
    import tensorflow as tf

    count = tf.reduce_sum(tf.cast(finite, tf.float64), axis=0)
    zero = tf.constant(0.0, tf.float64)  # broadcast by the select: no batch-sized zeros
    mean = tf.math.divide_no_nan(tf.reduce_sum(tf.where(finite, matrix, zero), axis=0), count)
    m2 = tf.reduce_sum(tf.where(finite, tf.square(matrix - mean), zero), axis=0)
    return tf.stack([count, mean, m2])


def batch_counts(values: Any) -> dict[str, Any]:
    """In the analysis graph: one batch's distinct values and how often each occurs."""
    import tensorflow as tf

    unique, _, counts = tf.unique_with_counts(tf.reshape(values, [-1]), out_idx=tf.int64)
    return {"unique": unique, "counts": counts}


def _add_counts(acc: dict, values: Any) -> dict:
    import numpy as np

    if isinstance(values, dict):  # a batch's counts, from the analysis graph
        found = zip(np.asarray(values["unique"]).tolist(), np.asarray(values["counts"]).tolist())
    else:
        values = np.asarray(values).reshape(-1)
        if values.dtype == object:  # strings: hashing beats np.unique's sort by far
            found = collections.Counter(values.tolist()).items()
        else:
            tokens, counts = np.unique(values, return_counts=True)
            found = zip(tokens.tolist(), counts.tolist())
    for token, count in found:
        acc[token] = acc.get(token, 0) + count
    return acc


def _add_min_max(acc: Any, matrix: Any) -> Any:

    if not len(matrix):
        return acc
    low, high = matrix.min(axis=0), matrix.max(axis=0)
    return [low, high] if acc is None else merge_two(_MIN_MAX, acc, [low, high])


def add_to_accumulator(spec: AnalyzerSpec, acc: Any, values: Any) -> Any:
    import numpy as np

    if spec.kind == "mean_and_var":
        if isinstance(values, dict):  # a batch's moments, from the analysis graph
            count, batch_mean, batch_m2 = np.asarray(values["moments"], np.float64)
            return _merge_mean_var(acc, count, batch_mean, batch_m2) if count.any() else acc
        return _add_mean_var(acc, _matrix(spec, values))
    if spec.kind == "min_max":
        return _add_min_max(acc, _matrix(spec, values))
    if spec.kind == "sum":
        matrix = _matrix(spec, values)
        total = matrix.sum(axis=0)
        return total if acc is None else acc + total
    if spec.kind in ("vocabulary", "count_per_value"):
        if spec.config.get("weighted"):
            return _add_weighted(spec, acc, np.asarray(values).reshape(-1))
        return _add_counts(acc, values)
    if spec.kind == "quantiles":
        import pyarrow as pa

        if spec.config.get("weighted"):
            pairs = np.asarray(values, np.float64).reshape(-1, 2)
            if len(pairs):
                acc.AddValues(pa.array(pairs[:, 0], from_pandas=True), pa.array(pairs[:, 1]))
            return acc
        flat = _matrix(spec, values).astype(np.float64).reshape(-1)
        if len(flat):  # NaN become nulls, which the sketch skips; a mask only when there are any
            nan = np.isnan(flat)
            acc.AddValues(pa.array(flat, mask=nan) if nan.any() else pa.array(flat))
        return acc
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _add_weighted(spec: AnalyzerSpec, acc: dict, values: Any) -> dict:
    """Adds ``"<float64 bits> <token>"`` entries (a batch's summed weight per token)."""
    import numpy as np

    integer = spec.config["input_dtype"] != "string"
    for entry in values.tolist():
        bits, token = entry.split(b" ", 1)
        weight = float(np.array(int(bits), np.int64).view(np.float64))
        token = int(token) if integer else token
        acc[token] = acc.get(token, 0.0) + weight
    return acc


_MIN_MAX = AnalyzerSpec("", "min_max", {})


def merge_two(spec: AnalyzerSpec, acc: Any, other: Any) -> Any:
    import numpy as np

    if spec.kind == "mean_and_var":
        return _merge_mean_var(acc, other[0], other[1], other[2])
    if spec.kind == "min_max":
        if acc is None or other is None:
            return other if acc is None else acc
        return [np.minimum(acc[0], other[0]), np.maximum(acc[1], other[1])]
    if spec.kind == "sum":
        if acc is None or other is None:
            return other if acc is None else acc
        return acc + other
    if spec.kind in ("vocabulary", "count_per_value"):
        for token, count in other.items():
            acc[token] = acc.get(token, 0) + count
        return acc
    if spec.kind == "quantiles":
        acc.Merge(other)
        return acc
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _shaped(spec: AnalyzerSpec, array: Any) -> Any:
    """A per-column result as the analyzer returns it: a scalar, or nested lists of the per-example shape."""
    shape = spec.config.get("elementwise_shape")
    if shape is None:
        return array.reshape(-1)[0].item()
    return array.reshape(shape).tolist()


def extract(spec: AnalyzerSpec, acc: Any) -> Any:
    import numpy as np

    if spec.kind == "mean_and_var":
        count, mean_value, m2 = acc
        variance = np.where(count > 0, m2 / np.where(count > 0, count, 1), 0.0)
        return (_shaped(spec, mean_value), _shaped(spec, variance))
    if spec.kind == "min_max":
        if acc is None:  # no values at all: tf.Transform's (+inf, -inf), or (dtype max, -dtype max)
            dtype = np.dtype(spec.config.get("dtype", "float32"))
            high = np.inf if dtype.kind == "f" else np.iinfo(dtype).max
            return (_shaped(spec, np.full(_columns(spec), high)), _shaped(spec, np.full(_columns(spec), -high)))
        return (_shaped(spec, acc[0]), _shaped(spec, acc[1]))
    if spec.kind == "sum":
        total = np.zeros(_columns(spec), spec.config.get("dtype", "float64")) if acc is None else acc
        return _shaped(spec, total)
    if spec.kind == "vocabulary":
        return extract_vocabulary(spec.config, acc)
    if spec.kind == "count_per_value":
        ordered = sorted(acc.items())
        return {"values": [v for v, _ in ordered], "counts": [c for _, c in ordered]}
    if spec.kind == "quantiles":
        result = acc.GetQuantiles(spec.config["num_buckets"]).to_pylist()
        if not result:  # no values at all: zeros, as tf.Transform
            result = [[0.0] * (spec.config["num_buckets"] + 1)] * _columns(spec)
        bounds = [[float(v) for v in stream[1:-1]] for stream in result]
        return bounds[0] if spec.config.get("elementwise_shape") is None or spec.config.get("weighted") else bounds
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _token_bytes(token: Any) -> bytes:
    return token if isinstance(token, bytes) else str(token).encode()


def _dropped(token: Any) -> bool:
    """tf.Transform drops empty string tokens and those with a line break from a text vocabulary."""
    return isinstance(token, bytes) and (not token or b"\n" in token or b"\r" in token)


def extract_vocabulary(config: dict[str, Any], counts: dict[Any, int]) -> dict[str, Any]:
    """The vocabulary as tf.Transform writes it.

    Ranked by count, ties by the token's bytes descending (integers by their decimal text,
    so 2 before 111); ``frequency_threshold`` then ``top_k``; ``reserved_tokens`` first;
    one dummy token when nothing is left; ``fingerprint_shuffle`` orders by SHA-1 instead.
    ``tokens`` are the file's lines (``"count token"`` with ``store_frequency``), ``keys``
    the looked-up values.
    """
    threshold = config.get("frequency_threshold") or 0
    ranked = sorted(((count, _token_bytes(token), token) for token, count in counts.items()
                     if count >= threshold and not _dropped(token)), reverse=True)
    if config.get("top_k") is not None:
        ranked = ranked[:config["top_k"]]
    string = config["input_dtype"] == "string"
    reserved = [t.encode() if string else int(t) for t in config.get("reserved_tokens") or []]
    if reserved:
        ranked = [r for r in ranked if r[2] not in set(reserved)]
    if config.get("fingerprint_shuffle"):
        ranked.sort(key=lambda r: hashlib.sha1(r[1]).digest())
    entries = [(-1, _token_bytes(t), t) for t in reserved] + [(c, b, t) for c, b, t in ranked]
    if not entries:
        dummy = EMPTY_VOCABULARY_STRING if config["input_dtype"] == "string" else EMPTY_VOCABULARY_INT
        entries = [(1, _token_bytes(dummy), dummy)]
    keys = [t for _, _, t in entries]
    lines = [str(c).encode() + b" " + b for c, b, _ in entries] if config.get("store_frequency") else keys
    return {"tokens": lines, "keys": keys, "counts": [c for c, _, _ in entries], "input_dtype": config["input_dtype"]}
