"""String values that come from a batch's dictionary: map the few distinct strings, not every value.

A string column reaches the traced graph as its dictionary and int32 codes (``packed``), and
``preprocessing_fn`` sees their gather, often densified (``tf.sparse.to_dense``, then
``tf.squeeze``) before a vocabulary looks it up or counts it. Each gathered string over 22 bytes
is a heap copy, made again by the densifying, then hashed. A function applied value by value
commutes with those steps, so ``map_through_dictionary`` applies it to the dictionary (and to the
densifying's default) and repeats the same steps on the results: the same values, where the
strings are copied and hashed once per distinct string instead of once per row.
``dictionary_counts`` does the same for counting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.components.tft.tensors import import_tf

# Ops a value goes through unchanged (moved, reshaped or copied); SparseToDense adds its default.
_PASS_THROUGH = ("Identity", "Reshape", "Squeeze", "ExpandDims")


def _steps(tensor: Any) -> tuple[Any, list[Any]] | None:
    """``(dictionary, ops)``: ``tensor`` is a packed dictionary gathered by ``ops[0]`` and passed
    through the other ``ops`` in order; None when it is not (or is eager)."""
    tf = import_tf()
    if tf.executing_eagerly() or not hasattr(tensor, "op"):
        return None
    ops = []
    while True:
        op = tensor.op
        if op.type in _PASS_THROUGH:
            ops.append(op)
            tensor = op.inputs[0]
        elif op.type == "SparseToDense":
            ops.append(op)
            tensor = op.inputs[2]
        elif op.type == "GatherV2" and op.inputs[0].op.type == "Placeholder" and op.inputs[0].dtype == tf.string:
            ops.append(op)
            return op.inputs[0], ops[::-1]
        else:
            return None


def _replay(ops: list[Any], dictionary: Any, default: Callable[[Any], Any]) -> Any:
    """``ops`` done again on ``dictionary`` (the mapped one), with SparseToDense's default mapped by ``default``."""
    tf = import_tf()
    result = None
    for op in ops:
        if op.type == "GatherV2":
            result = tf.raw_ops.GatherV2(params=dictionary, indices=op.inputs[1], axis=op.inputs[2],
                                         batch_dims=op.get_attr("batch_dims"))
        elif op.type == "SparseToDense":
            result = tf.raw_ops.SparseToDense(sparse_indices=op.inputs[0], output_shape=op.inputs[1],
                                              sparse_values=result, default_value=default(op.inputs[3]),
                                              validate_indices=op.get_attr("validate_indices"))
        elif op.type == "Reshape":
            result = tf.reshape(result, op.inputs[1])
        elif op.type == "Squeeze":
            result = tf.raw_ops.Squeeze(input=result, axis=op.get_attr("squeeze_dims"))
        elif op.type == "ExpandDims":
            result = tf.raw_ops.ExpandDims(input=result, axis=op.inputs[1])
    return result


def map_through_dictionary(values: Any, function: Callable[[Any], Any]) -> Any:
    """``function(values)`` for a value-by-value ``function`` of a string tensor; computed on the
    dictionary when ``values`` comes from one (then given ``values``' static shape)."""
    found = _steps(values)
    if found is None:
        return function(values)
    dictionary, ops = found
    result = _replay(ops, function(dictionary), function)
    result.set_shape(values.shape)
    return result


def dictionary_counts(values: Any) -> dict[str, Any] | None:
    """``{"unique", "counts"}``: the distinct strings of ``values`` and how often each occurs,
    counted on codes into its dictionary; None when ``values`` does not come from one. A string
    may be listed more than once (a dictionary may repeat one): counts add up."""
    tf = import_tf()
    found = _steps(values)
    if found is None:
        return None
    dictionary, ops = found
    extra = []  # the defaults of SparseToDense steps, as codes after the dictionary's

    def default_code(default: Any) -> Any:
        extra.append(tf.reshape(default, [1]))
        return tf.size(dictionary, tf.int64) + len(extra) - 1

    codes = _replay(ops, tf.range(tf.size(dictionary, tf.int64), dtype=tf.int64), default_code)
    unique, _, counts = tf.unique_with_counts(tf.reshape(codes, [-1]), out_idx=tf.int64)
    return {"unique": tf.gather(tf.concat([dictionary, *extra], 0), unique), "counts": counts}
