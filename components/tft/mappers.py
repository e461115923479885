"""tf.Transform's mappers: scaling, bucketizing, hashing, densifying (with tf.Transform's signatures).

Mappers work value by value on a dense tensor of any shape, a ``SparseTensor`` or a
``RaggedTensor``, and return the same kind with the same shape. Those built on analyzers
(``scale_*``, ``bucketize``) take ``elementwise=True`` for a dense ``[batch, ...]`` input:
each position then gets its own statistics. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import numpy as np

from sluice.components.tft.analyzers import _mean_and_var, _min_max, quantiles, values_of
from sluice.components.tft.tensors import import_tf
from sluice.components.tft.tracing import PreprocessingFnError, annotate, current_context, pending


def map_any(x: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the values of a dense, sparse or ragged tensor, keeping its structure."""
    tf = import_tf()
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, fn(x.values), x.dense_shape)
    if isinstance(x, tf.RaggedTensor):
        return tf.ragged.map_flat_values(fn, x)
    return fn(tf.convert_to_tensor(x))


def annotate_any(result: Any, **annotation: Any) -> Any:
    """``tracing.annotate`` for any kind of tensor (a ragged one is annotated on its flat values)."""
    target = result.flat_values if isinstance(result, import_tf().RaggedTensor) else result
    annotate(target, **annotation)
    return result


def _elementwise_dense(x: Any, elementwise: bool, function: str) -> None:
    tf = import_tf()
    if elementwise and isinstance(x, (tf.SparseTensor, tf.RaggedTensor)):
        raise PreprocessingFnError(f"{function}: elementwise=True needs a dense input; densify it first "
                                   "(tft.sparse_tensor_to_dense_with_shape)")


def scale_to_z_score(x: Any, elementwise: bool = False, name: str | None = None, output_dtype: Any = None) -> Any:
    """``(x - mean) / std`` over the dataset; ``x - mean`` where the std is 0 (as tf.Transform)."""
    tf = import_tf()
    _elementwise_dense(x, elementwise, "tft.scale_to_z_score")
    with tf.compat.v1.name_scope(name, "scale_to_z_score"):
        x_mean, x_var = _mean_and_var(x, not elementwise, output_dtype, "tft.scale_to_z_score")

        known_var = tf.get_static_value(x_var)

        def scale(values: Any) -> Any:
            centered = tf.cast(values, x_mean.dtype) - x_mean
            if known_var is not None and (known_var != 0).all():  # analyzed: no zero to guard against
                return centered / tf.sqrt(x_var)
            std = tf.sqrt(x_var)
            # The condition broadcasts: no batch-sized mask is made.
            return tf.where(std != 0, centered / tf.where(std != 0, std, tf.ones_like(std)), centered)

        return map_any(x, scale)


def scale_by_min_max(x: Any, output_min: float = 0.0, output_max: float = 1.0, elementwise: bool = False,
                     name: str | None = None) -> Any:
    """Scales ``x`` (as float32) linearly onto ``[output_min, output_max]`` by the dataset's min and max.

    Where min >= max (a single value, or none) the result is ``sigmoid(x)`` projected onto
    the range, as tf.Transform.
    """
    tf = import_tf()
    if output_min >= output_max:
        raise PreprocessingFnError(f"tft.scale_by_min_max: output_min ({output_min}) must be less than output_max")
    _elementwise_dense(x, elementwise, "tft.scale_by_min_max")
    with tf.compat.v1.name_scope(name, "scale_by_min_max"):
        x = map_any(x, lambda v: tf.cast(v, tf.float32))
        x_min, x_max = _min_max(x, not elementwise, "tft.scale_by_min_max")
        # Known once analyzed, and for a pending analyzer's stand-in (no analyzer of its phase reads
        # what is computed from it): the branch is chosen here, and no tf.cond goes in the graph.
        low, high = tf.get_static_value(x_min), tf.get_static_value(x_max)
        known_spread = None if low is None or high is None else np.asarray(low < high)

        def scale(values: Any) -> Any:
            if known_spread is not None and known_spread.all():
                unit = (values - x_min) / (x_max - x_min)
            elif known_spread is not None and not known_spread.any():
                unit = tf.math.sigmoid(values)
            else:  # some columns flat (elementwise): the condition broadcasts, no batch-sized mask is made
                spread = x_min < x_max
                divisor = tf.where(spread, x_max - x_min, 1.0)
                unit = tf.where(spread, (values - x_min) / divisor, tf.math.sigmoid(values))
            return unit * (output_max - output_min) + output_min

        return map_any(x, scale)


def scale_to_0_1(x: Any, elementwise: bool = False, name: str | None = None) -> Any:
    """``(x - min) / (max - min)`` over the dataset (``sigmoid(x)`` where min >= max)."""
    with import_tf().compat.v1.name_scope(name, "scale_to_0_1"):
        return scale_by_min_max(x, 0.0, 1.0, elementwise=elementwise)


def apply_buckets(x: Any, bucket_boundaries: Any, name: str | None = None) -> Any:
    """The bucket index of each value: the number of boundaries <= the value (int64).

    ``bucket_boundaries`` as tf.Transform shapes it (``[1, k]``, e.g. from ``tft.quantiles``)
    or 1-D. Boundaries ``[0, 5, 10]``: -1 -> 0, 0 -> 1, 4 -> 1, 5 -> 2, 12 -> 3.
    """
    tf = import_tf()
    with tf.compat.v1.name_scope(name, "apply_buckets"):
        boundaries = tf.reshape(tf.convert_to_tensor(bucket_boundaries), [-1])

        def bucket(values: Any) -> Any:
            flat, bounds = values, boundaries
            if flat.dtype.max > bounds.dtype.max:  # the wider type, as tf.Transform
                bounds = tf.cast(bounds, flat.dtype)
            else:
                flat = tf.cast(flat, bounds.dtype)
            # tf.searchsorted(side="right") as its one kernel: its shape handling for any rank
            # tripled the ops traced per call.
            found = tf.raw_ops.UpperBound(sorted_inputs=tf.reshape(bounds, [1, -1]), values=tf.reshape(flat, [1, -1]),
                                          out_type=tf.int64)
            return tf.reshape(found, [-1] if values.shape.rank == 1 else tf.shape(values))

        result = map_any(x, bucket)
        if boundaries.shape[0] is not None:
            annotate_any(result, min=0, max=int(boundaries.shape[0]))
        return result


def bucketize(x: Any, num_buckets: int, epsilon: float | None = None, weights: Any = None,
              elementwise: bool = False, name: str | None = None) -> Any:
    """Buckets ``x`` into ``num_buckets`` quantile buckets (int64 in ``[0, num_buckets)``).

    With ``elementwise=True`` each position of a dense ``[batch, ...]`` input has its own boundaries.
    """
    tf = import_tf()
    if not isinstance(num_buckets, int) or num_buckets < 1:
        raise PreprocessingFnError(f"tft.bucketize: num_buckets must be an int >= 1, got {num_buckets!r}")
    _elementwise_dense(x, elementwise, "tft.bucketize")
    if epsilon is None:
        epsilon = builtins.min(1.0 / num_buckets, 0.01)
    with tf.compat.v1.name_scope(name, "bucketize"):
        if not elementwise:
            result = apply_buckets(x, quantiles(values_of(x), num_buckets, epsilon, weights=weights))
            return annotate_any(result, min=0, max=num_buckets - 1)
        x = tf.convert_to_tensor(x)
        boundaries = quantiles(x, num_buckets, epsilon, weights=weights, reduce_instance_dims=False)
        columns = boundaries.shape[:-1].num_elements()
        flat = tf.transpose(tf.reshape(x, [-1, columns]))  # [d, batch]
        bounds = tf.reshape(boundaries, [columns, -1])
        if flat.dtype.max > bounds.dtype.max:
            bounds = tf.cast(bounds, flat.dtype)
        else:
            flat = tf.cast(flat, bounds.dtype)
        found = tf.searchsorted(bounds, flat, side="right", out_type=tf.int64)
        # No bucket range recorded: tf.Transform's elementwise result carries none either.
        return tf.reshape(tf.transpose(found), tf.shape(x))


def hash_strings(strings: Any, hash_buckets: int, key: Any = None, name: str | None = None) -> Any:
    """Hashes strings into ``[0, hash_buckets)`` (FarmHash; keyed SipHash with ``key``), as tf.Transform."""
    tf = import_tf()
    if strings.dtype != tf.string:
        raise PreprocessingFnError(f"tft.hash_strings needs string input, got {strings.dtype.name}")
    # No bucket range is recorded: tf.Transform's hash_strings sets no int domain either.
    if key is None:
        return map_any(strings, lambda v: tf.strings.to_hash_bucket_fast(v, hash_buckets, name=name))
    return map_any(strings, lambda v: tf.strings.to_hash_bucket_strong(v, hash_buckets, list(key), name=name))


def sparse_tensor_to_dense_with_shape(x: Any, shape: Any, default_value: Any = 0) -> Any:
    """A ``SparseTensor`` as a dense tensor of ``shape`` (``None`` dims taken from ``x``), as tf.Transform."""
    tf = import_tf()
    if not isinstance(x, tf.SparseTensor):
        raise PreprocessingFnError("tft.sparse_tensor_to_dense_with_shape: input must be a SparseTensor")
    dims = list(shape)
    new_shape = [x.dense_shape[i] if size is None else size for i, size in enumerate(dims)]
    dense = tf.raw_ops.SparseToDense(sparse_indices=x.indices, output_shape=new_shape, sparse_values=x.values,
                                     default_value=tf.cast(default_value, x.dtype))
    dense.set_shape(dims)
    return dense


def sparse_tensor_left_align(sparse_tensor: Any) -> Any:
    """A 2-D SparseTensor with each row's values moved to columns 0, 1, ... (order kept), as tf.Transform."""
    tf = import_tf()
    if not isinstance(sparse_tensor, tf.SparseTensor) or sparse_tensor.get_shape().ndims != 2:
        raise PreprocessingFnError("tft.sparse_tensor_left_align needs a 2-D SparseTensor")
    reordered = tf.sparse.reorder(sparse_tensor)
    rows = reordered.indices[:, 0]
    columns = tf.ragged.range(tf.unique_with_counts(rows, out_idx=tf.int64).count).flat_values
    return tf.SparseTensor(tf.stack([rows, columns], 1), reordered.values, reordered.dense_shape)


def get_num_buckets_for_transformed_feature(transformed_feature: Any) -> Any:
    """The number of categories (int64 scalar) of a vocabulary/bucketize/hash result: its max id + 1."""
    tf = import_tf()
    context = current_context()
    target = transformed_feature
    if isinstance(target, tf.SparseTensor):
        target = target.values
    elif isinstance(target, tf.RaggedTensor):
        target = target.flat_values
    found = context.annotations.get(target.ref())
    if found is not None:
        return tf.constant(int(found["max"]) + 1, tf.int64)
    waiting = (getattr(context, "pending_buckets", None) or {}).get(target.ref())
    if waiting is not None:  # a vocabulary not yet computed: a placeholder until it is
        return pending(tf.constant(1, tf.int64), waiting)
    raise PreprocessingFnError("tft.get_num_buckets_for_transformed_feature: the tensor is not the result of "
                               "compute_and_apply_vocabulary, apply_vocabulary, bucketize or apply_buckets")


def fill_missing(x: Any, default: Any) -> Any:
    """A raw ``[batch, 1]`` SparseTensor as a dense ``[batch]`` tensor, missing = ``default`` (Sluice's helper).

    ``default`` may be a tensor, e.g. ``tft.mean(x)``. Dense tensors pass through unchanged.
    """
    tf = import_tf()
    if not isinstance(x, tf.SparseTensor):
        return x
    reshaped = tf.SparseTensor(x.indices, x.values, tf.stack([x.dense_shape[0], tf.constant(1, tf.int64)]))
    default_value = tf.cast(default, x.dtype) if x.dtype != tf.string else tf.constant(default, tf.string)
    return tf.squeeze(tf.sparse.to_dense(reshaped, default_value=default_value), axis=1)


def annotate_asset(asset_key: str, asset_filename: str) -> None:
    """Makes ``TFTransformOutput.vocabulary_file_by_name(asset_key)`` find ``asset_filename``."""
    context = current_context()
    aliases = getattr(context, "asset_annotations", None)
    if aliases is None:
        aliases = context.asset_annotations = {}
    aliases[str(asset_key)] = str(asset_filename)
