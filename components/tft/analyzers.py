"""The numeric tf.Transform analyzers: ``mean``, ``var``, ``min``, ``max``, ``sum``, ``size``, ``quantiles``.

Analyzers need statistics over the whole dataset: while ``preprocessing_fn`` is traced for
analysis they register their input and return placeholders; once the values are computed
they return constants. With ``reduce_instance_dims=False`` a dense ``[batch, ...]`` input
reduces per position and the result has the per-example shape (as tf.Transform).
TensorFlow is imported inside the functions, so importing this module stays cheap.

The vocabulary analyzers are in ``vocabulary``, the mappers in ``mappers`` and ``text``.
"""

from __future__ import annotations

from typing import Any

from sluice.components.tft.tensors import import_tf
from sluice.components.tft.tracing import PreprocessingFnError, analyze, current_context, pending

_DEFAULTS = (None, False)


def reject_unsupported(function: str, **arguments: Any) -> None:
    """One-line error for the first argument given a value other than its default (None/False)."""
    for argument, value in arguments.items():
        if not any(value is default for default in _DEFAULTS):
            raise PreprocessingFnError(f"{function}: argument {argument}= is not supported by Sluice's tf.Transform")


def values_of(x: Any) -> Any:
    """The values of a dense, sparse or ragged tensor (what a full reduction sees)."""
    tf = import_tf()
    if isinstance(x, tf.SparseTensor):
        return x.values
    if isinstance(x, tf.RaggedTensor):
        return x.flat_values
    return tf.convert_to_tensor(x)


def float_dtype(dtype: Any, output_dtype: Any = None) -> Any:
    """tf.Transform's float type for a statistic of ``dtype`` values (float64 stays, the rest float32)."""
    tf = import_tf()
    if output_dtype is not None:
        return output_dtype
    return dtype if dtype in (tf.float16, tf.float32, tf.float64) else tf.float32


def _run(kind: str, x: Any, reduce_instance_dims: bool, function: str, **config: Any) -> tuple[Any, str, list | None]:
    """Registers the analyzer; returns its value (None while pending), its key and per-example shape."""
    if not reduce_instance_dims:
        if isinstance(x, import_tf().RaggedTensor):
            raise PreprocessingFnError(f"{function}: reduce_instance_dims=False needs a dense input, "
                                       "got a RaggedTensor")
        value = analyze(kind, x, elementwise=True, **config)
    else:
        value = analyze(kind, values_of(x), **config)
    spec = current_context().specs[-1]
    return value, spec.key, spec.config.get("elementwise_shape")


def _constant(value: Any, dtype: Any, shape: list | None) -> Any:
    tf = import_tf()
    return tf.constant(value, dtype, shape=shape or [])


def _pending(key: str, dtype: Any, shape: list | None, fill: int = 0) -> Any:
    tf = import_tf()
    return pending(tf.constant(fill, dtype, shape=shape or []), key)


def _mean_and_var(x: Any, reduce_instance_dims: bool = True, output_dtype: Any = None,
                  function: str = "tft.mean") -> tuple[Any, Any]:
    dtype = float_dtype(x.dtype, output_dtype)
    value, key, shape = _run("mean_and_var", x, reduce_instance_dims, function)
    if value is None:
        return _pending(key, dtype, shape), _pending(key, dtype, shape, 1)
    return _constant(value[0], dtype, shape), _constant(value[1], dtype, shape)


def mean(x: Any, reduce_instance_dims: bool = True, name: str | None = None, output_dtype: Any = None) -> Any:
    """The mean of the values of ``x`` (NaN and infinite values ignored); float32 unless ``x`` is float64."""
    with import_tf().compat.v1.name_scope(name, "mean"):
        return _mean_and_var(x, reduce_instance_dims, output_dtype, "tft.mean")[0]


def var(x: Any, reduce_instance_dims: bool = True, name: str | None = None, output_dtype: Any = None) -> Any:
    """The population variance of the values of ``x`` (NaN and infinite values ignored)."""
    with import_tf().compat.v1.name_scope(name, "var"):
        return _mean_and_var(x, reduce_instance_dims, output_dtype, "tft.var")[1]


def _min_max(x: Any, reduce_instance_dims: bool, function: str) -> tuple[Any, Any]:
    tf = import_tf()
    if x.dtype == tf.string:
        raise PreprocessingFnError(f"{function} needs a numeric input, got string")
    value, key, shape = _run("min_max", x, reduce_instance_dims, function, dtype=x.dtype.name)
    if value is None:
        return _pending(key, x.dtype, shape), _pending(key, x.dtype, shape, 1)
    return _constant(value[0], x.dtype, shape), _constant(value[1], x.dtype, shape)


def min(x: Any, reduce_instance_dims: bool = True, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The minimum of the values of ``x``, in its dtype (NaN if any is NaN; +inf or the dtype's max if none)."""
    with import_tf().compat.v1.name_scope(name, "min"):
        return _min_max(x, reduce_instance_dims, "tft.min")[0]


def max(x: Any, reduce_instance_dims: bool = True, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The maximum of the values of ``x``, in its dtype (NaN if any is NaN; -inf or -max if none)."""
    with import_tf().compat.v1.name_scope(name, "max"):
        return _min_max(x, reduce_instance_dims, "tft.max")[1]


def sum(x: Any, reduce_instance_dims: bool = True, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The sum of the values of ``x``: int64 for integers, float32 (float64 stays) for floats."""
    tf = import_tf()
    if x.dtype == tf.string or x.dtype == tf.bool:
        raise PreprocessingFnError(f"tft.sum needs a numeric input, got {x.dtype.name}")
    dtype = tf.int64 if x.dtype.is_integer else float_dtype(x.dtype)
    with tf.compat.v1.name_scope(name, "sum"):
        value, key, shape = _run("sum", x, reduce_instance_dims, "tft.sum", dtype=dtype.name)
        if value is None:
            return _pending(key, dtype, shape)
        return _constant(value, dtype, shape)


def size(x: Any, reduce_instance_dims: bool = True, name: str | None = None) -> Any:
    """The number of values of ``x`` (int64; per position with ``reduce_instance_dims=False``)."""
    tf = import_tf()
    with tf.compat.v1.name_scope(name, "size"):
        if isinstance(x, tf.SparseTensor):
            ones = tf.SparseTensor(x.indices, tf.ones_like(x.values, tf.int64), x.dense_shape)
        elif isinstance(x, tf.RaggedTensor):
            ones = tf.ones_like(x.flat_values, tf.int64)
        else:
            ones = tf.ones_like(x, tf.int64)
        return sum(ones, reduce_instance_dims)


def quantiles(x: Any, num_buckets: int, epsilon: float, weights: Any = None,
              reduce_instance_dims: bool = True, name: str | None = None) -> Any:
    """``num_buckets - 1`` quantile boundaries of ``x`` (float32, approximate within ``epsilon``).

    Shaped ``[1, num_buckets - 1]`` as tf.Transform, or ``[d..., num_buckets - 1]`` per
    position with ``reduce_instance_dims=False``; zeros when ``x`` had no values. ``weights``
    (one per value of ``x``) weigh the values.
    Computed with tfx_bsl's QuantilesSketch.
    """
    tf = import_tf()
    if not isinstance(num_buckets, int) or num_buckets < 1:
        raise PreprocessingFnError(f"tft.quantiles: num_buckets must be an int >= 1, got {num_buckets!r}")
    with tf.compat.v1.name_scope(name, "quantiles"):
        if weights is not None:
            if not reduce_instance_dims:
                raise PreprocessingFnError("tft.quantiles: argument weights= with reduce_instance_dims=False is not "
                                           "supported by Sluice's tf.Transform")
            # Values and weights side by side: the accumulator feeds both to one weighted sketch.
            pairs = tf.stack([tf.reshape(tf.cast(values_of(x), tf.float64), [-1]),
                              tf.reshape(tf.cast(values_of(weights), tf.float64), [-1])], axis=1)
            value = analyze("quantiles", pairs, elementwise=True, num_buckets=num_buckets, epsilon=float(epsilon),
                            weighted=True)
            key, shape = current_context().specs[-1].key, None
        else:
            value, key, shape = _run("quantiles", x, reduce_instance_dims, "tft.quantiles",
                                     num_buckets=num_buckets, epsilon=float(epsilon))
        out_shape = (shape or [1]) + [num_buckets - 1]
        if value is None:
            return pending(tf.zeros(out_shape, tf.float32), key)
        return tf.constant(value, tf.float32, shape=out_shape)
