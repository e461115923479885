"""The tf.Transform-style analyzers and mappers called inside a user's ``preprocessing_fn``.

Analyzers (``mean``, ``vocabulary``, ``quantiles``...) need statistics over the whole
dataset: while ``preprocessing_fn`` is traced for analysis they register their input and
return placeholders; once the values are computed they return constants. Mappers
(``apply_buckets``, ``hash_strings``, ``fill_missing``...) are plain TensorFlow. TensorFlow
is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import builtins
from typing import Any

from sluice.components.tft.tensors import import_tf
from sluice.components.tft.tracing import (
    PreprocessingFnError,
    TraceContext,
    analyze,
    annotate,
    current_context,
    map_values,
    pending,
)


def _float_dtype(dtype: Any) -> Any:
    tf = import_tf()
    return dtype if dtype in (tf.float32, tf.float64) else tf.float32



def _mean_and_var(x: Any) -> tuple[Any, Any]:
    tf = import_tf()
    value = analyze("mean_and_var", x)
    if value is None:
        key = current_context().specs[-1].key
        return pending(tf.zeros([], tf.float32), key), pending(tf.ones([], tf.float32), key)
    return tf.constant(value[0], tf.float32), tf.constant(value[1], tf.float32)


def mean(x: Any, name: str | None = None) -> Any:
    """The mean of all values of ``x`` (float32 scalar; missing and NaN values are ignored)."""
    return _mean_and_var(x)[0]


def var(x: Any, name: str | None = None) -> Any:
    """The population variance of all values of ``x`` (float32 scalar)."""
    return _mean_and_var(x)[1]


def _min_max(x: Any) -> tuple[Any, Any]:
    tf = import_tf()
    dtype = x.dtype if x.dtype in (tf.float32, tf.float64) else tf.int64
    value = analyze("min_max", x)
    if value is None:
        key = current_context().specs[-1].key
        return pending(tf.zeros([], dtype), key), pending(tf.ones([], dtype), key)
    return tf.constant(value[0], dtype), tf.constant(value[1], dtype)


def min(x: Any, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The minimum of all values of ``x`` (its dtype; integers as int64; NaN ignored)."""
    return _min_max(x)[0]


def max(x: Any, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The maximum of all values of ``x`` (its dtype; integers as int64; NaN ignored)."""
    return _min_max(x)[1]


def scale_to_z_score(x: Any, elementwise: bool = False, name: str | None = None,
                     output_dtype: Any = None) -> Any:
    """``(x - mean) / std`` over the dataset; ``x - mean`` where the std is 0 (as TFT)."""
    tf = import_tf()
    _reject_elementwise(elementwise)
    x_mean, x_var = _mean_and_var(x)

    def scale(values: Any) -> Any:
        dtype = output_dtype or _float_dtype(values.dtype)
        centered = tf.cast(values, dtype) - tf.cast(x_mean, dtype)
        x_std = tf.sqrt(tf.cast(x_var, dtype))
        return tf.where(x_std > 0, centered / tf.where(x_std > 0, x_std, 1), centered)

    return map_values(x, scale)


def scale_by_min_max(x: Any, output_min: float = 0.0, output_max: float = 1.0,
                     elementwise: bool = False, name: str | None = None) -> Any:
    """Scales ``x`` linearly onto ``[output_min, output_max]`` using the dataset's min and max.

    Where min == max the result is the middle of the output range.
    """
    tf = import_tf()
    _reject_elementwise(elementwise)
    x_min, x_max = _min_max(x)

    def scale(values: Any) -> Any:
        dtype = _float_dtype(values.dtype)
        low, high = tf.cast(x_min, dtype), tf.cast(x_max, dtype)
        span = tf.where(high > low, high - low, 1)
        unit = (tf.cast(values, dtype) - low) / span
        scaled = output_min + unit * (output_max - output_min)
        return tf.where(high > low, scaled, tf.fill(tf.shape(unit), tf.cast((output_min + output_max) / 2, dtype)))

    return map_values(x, scale)


def scale_to_0_1(x: Any, elementwise: bool = False, name: str | None = None) -> Any:
    """``(x - min) / (max - min)`` over the dataset (0.5 where min == max)."""
    return scale_by_min_max(x, 0.0, 1.0, elementwise=elementwise, name=name)


def vocabulary(x: Any, top_k: int | None = None, frequency_threshold: int | None = None,
               vocab_filename: str | None = None, name: str | None = None) -> Any:
    """Computes the vocabulary of ``x`` (strings or integers); returns its file name.

    Ordered by frequency, most frequent first, ties by value descending (as TFT). Values
    seen fewer than ``frequency_threshold`` times are dropped, then the ``top_k`` most
    frequent are kept. The file is ``transform_fn/assets/<vocab_filename>``; pass the
    returned tensor to ``apply_vocabulary``.
    """
    tf = import_tf()
    if x.dtype == tf.string:
        input_dtype = "string"
    elif x.dtype.is_integer:
        input_dtype = "int64"
    else:
        raise PreprocessingFnError(f"tft.vocabulary needs string or integer input, got {x.dtype.name}")
    context = current_context()
    number = builtins.sum(1 for s in context.specs if s.kind == "vocabulary")
    filename = vocab_filename or f"vocabulary_{number}"
    if filename in context.vocabulary_names.values():
        raise PreprocessingFnError(f"two tft.vocabulary calls use the vocab_filename {filename!r}")
    if top_k is not None and top_k < 0:
        raise PreprocessingFnError(f"tft.vocabulary: top_k must be >= 0, got {top_k}")
    value = analyze("vocabulary", tf.cast(x, tf.int64) if input_dtype == "int64" else x,
                     top_k=top_k, frequency_threshold=frequency_threshold,
                     vocab_filename=filename, input_dtype=input_dtype)
    key = context.specs[-1].key
    context.vocabulary_names[key] = filename
    result = tf.constant(filename) if value is not None else pending(tf.constant(filename), key)
    context.vocabularies[result.ref()] = key
    return result


def apply_vocabulary(x: Any, deferred_vocab_filename_tensor: Any, default_value: int = -1,
                     num_oov_buckets: int = 0, lookup_fn: Any = None, file_format: str = "text",
                     name: str | None = None) -> Any:
    """Maps ``x`` to its index in a vocabulary computed by ``tft.vocabulary`` (int64).

    Out-of-vocabulary values map to ``default_value``, or with ``num_oov_buckets > 0`` to
    ``vocab_size + hash(x) % num_oov_buckets``.
    """
    tf = import_tf()
    if lookup_fn is not None:
        raise PreprocessingFnError("tft.apply_vocabulary: lookup_fn is not supported")
    context = current_context()
    key = context.vocabularies.get(getattr(deferred_vocab_filename_tensor, "ref", lambda: None)())
    if key is None:
        raise PreprocessingFnError(
            "tft.apply_vocabulary expects the tensor returned by tft.vocabulary in the same preprocessing_fn"
        )
    vocab = context.values.get(key)
    if vocab is None:
        return map_values(x, lambda v: pending(tf.zeros_like(v, tf.int64), key))
    size = len(vocab["tokens"])
    key_dtype = tf.string if vocab["input_dtype"] == "string" else tf.int64
    if size == 0:  # TF lookup tables cannot be empty: everything is out of vocabulary

        def lookup(values: Any) -> Any:
            if num_oov_buckets > 0:
                strings = values if values.dtype == tf.string else tf.strings.as_string(values)
                return tf.strings.to_hash_bucket_fast(strings, num_oov_buckets)
            return tf.fill(tf.shape(values), tf.constant(default_value, tf.int64))

    else:
        table = _lookup_table(context, key, vocab, num_oov_buckets, default_value)

        def lookup(values: Any) -> Any:
            return table.lookup(tf.cast(values, key_dtype))

    result = map_values(x, lookup)
    if num_oov_buckets > 0:
        low, high = 0, size + num_oov_buckets - 1
    else:
        low, high = builtins.min(0, default_value), builtins.max(size - 1, default_value)
    return annotate(result, min=low, max=high, vocabulary=context.vocabulary_names[key])


def _lookup_table(context: TraceContext, key: str, vocab: dict, num_oov_buckets: int,
                  default_value: int) -> Any:
    tf = import_tf()
    cache_key = (key, num_oov_buckets, default_value)
    if cache_key not in context.tables:
        # Created eagerly (outside the traced graph) so a SavedModel tracks it as a resource.
        with tf.init_scope():
            dtype = tf.string if vocab["input_dtype"] == "string" else tf.int64
            keys = tf.constant(vocab["tokens"], dtype=dtype, shape=[len(vocab["tokens"])])
            ids = tf.range(len(vocab["tokens"]), dtype=tf.int64)
            initializer = tf.lookup.KeyValueTensorInitializer(keys, ids)
            if num_oov_buckets > 0:
                table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets)
            else:
                table = tf.lookup.StaticHashTable(initializer, tf.constant(default_value, tf.int64))
        context.tables[cache_key] = table
    return context.tables[cache_key]


def compute_and_apply_vocabulary(x: Any, default_value: int = -1, top_k: int | None = None,
                                 frequency_threshold: int | None = None, num_oov_buckets: int = 0,
                                 vocab_filename: str | None = None, name: str | None = None) -> Any:
    """``apply_vocabulary(x, vocabulary(x, ...), ...)``: strings or ints -> int64 indices."""
    vocab = vocabulary(x, top_k=top_k, frequency_threshold=frequency_threshold,
                       vocab_filename=vocab_filename)
    return apply_vocabulary(x, vocab, default_value=default_value, num_oov_buckets=num_oov_buckets)


def quantiles(x: Any, num_buckets: int, epsilon: float, name: str | None = None) -> Any:
    """``num_buckets - 1`` quantile boundaries of ``x`` (1-D float32; approximate within epsilon).

    Computed with tfx_bsl's QuantilesSketch; empty when ``x`` had no values.
    """
    tf = import_tf()
    if num_buckets < 1:
        raise PreprocessingFnError(f"tft.quantiles: num_buckets must be >= 1, got {num_buckets}")
    value = analyze("quantiles", x, num_buckets=num_buckets, epsilon=epsilon)
    if value is None:
        return pending(tf.zeros([num_buckets - 1], tf.float32), current_context().specs[-1].key)
    return tf.constant(value, tf.float32, shape=[len(value)])


def apply_buckets(x: Any, bucket_boundaries: Any, name: str | None = None) -> Any:
    """The bucket index of each value: the number of boundaries <= the value (int64).

    >>> # boundaries [0, 5, 10]: -1 -> 0, 0 -> 1, 4 -> 1, 5 -> 2, 12 -> 3
    """
    tf = import_tf()
    boundaries = tf.reshape(tf.convert_to_tensor(bucket_boundaries), [1, -1])

    def bucket(values: Any) -> Any:
        dtype = values.dtype if values.dtype in (tf.float32, tf.float64) else tf.float64
        flat = tf.reshape(tf.cast(values, dtype), [1, -1])
        found = tf.searchsorted(tf.cast(boundaries, dtype), flat, side="right", out_type=tf.int64)
        return tf.reshape(found, tf.shape(values))

    result = map_values(x, bucket)
    static = boundaries.shape[1]
    if static is not None:
        annotate(result, min=0, max=int(static))
    return result


def bucketize(x: Any, num_buckets: int, epsilon: float | None = None, weights: Any = None,
              elementwise: bool = False, name: str | None = None) -> Any:
    """Buckets ``x`` into ``num_buckets`` quantile buckets (int64 in ``[0, num_buckets)``)."""
    _reject_elementwise(elementwise)
    if weights is not None:
        raise PreprocessingFnError("tft.bucketize: weights are not supported")
    if epsilon is None:
        epsilon = builtins.min(1.0 / num_buckets, 0.01)
    boundaries = quantiles(x, num_buckets, epsilon)
    result = apply_buckets(x, boundaries)
    return annotate(result, min=0, max=num_buckets - 1)


def hash_strings(strings: Any, hash_buckets: int, key: list[int] | None = None,
                 name: str | None = None) -> Any:
    """Hashes strings into ``[0, hash_buckets)`` (deterministic; keyed with ``key`` if given)."""
    tf = import_tf()
    if key is None:
        result = map_values(strings, lambda v: tf.strings.to_hash_bucket_fast(v, hash_buckets))
    else:
        result = map_values(strings, lambda v: tf.strings.to_hash_bucket_strong(v, hash_buckets, key))
    return annotate(result, min=0, max=hash_buckets - 1)


def fill_missing(x: Any, default: Any) -> Any:
    """A raw feature (SparseTensor ``[batch, 1]``) as a dense ``[batch]`` tensor, missing = ``default``.

    ``default`` may be a tensor, e.g. ``tft.mean(x)``. Dense tensors pass through unchanged.
    """
    tf = import_tf()
    if not isinstance(x, tf.SparseTensor):
        return x
    reshaped = tf.SparseTensor(x.indices, x.values, tf.stack([x.dense_shape[0], tf.constant(1, tf.int64)]))
    default_value = tf.cast(default, x.dtype) if x.dtype != tf.string else tf.constant(default, tf.string)
    return tf.squeeze(tf.sparse.to_dense(reshaped, default_value=default_value), axis=1)


def _reject_elementwise(elementwise: bool) -> None:
    if elementwise:
        raise PreprocessingFnError("elementwise=True is not supported: analyzers reduce over all values")
