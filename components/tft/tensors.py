"""Arrow <-> tensors: raw Arrow batches as the SparseTensors ``preprocessing_fn`` takes, and back.

TensorFlow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

# Rows per tf.function call: big enough to amortize the call, small enough for memory.
MAX_BATCH_ROWS = 65536


def import_tf():
    """The ``tensorflow`` module, imported on first use."""
    import tensorflow as tf

    return tf


def tf_dtype(name: str) -> Any:
    """The tf dtype of a feature type name (``int64``, ``float32``, ``string``)."""
    tf = import_tf()
    return {"int64": tf.int64, "float32": tf.float32, "string": tf.string}[name]


def dtype_name(dtype: Any) -> str:
    """The feature type name of a tf dtype."""
    return {"int64": "int64", "float32": "float32", "string": "string"}[dtype.name]


def raw_input_signature(raw_feature_types: dict[str, str]) -> dict[str, Any]:
    """``{name: tf.SparseTensorSpec([None, 1], dtype)}`` for the raw features."""
    tf = import_tf()
    return {name: tf.SparseTensorSpec([None, 1], tf_dtype(dtype)) for name, dtype in raw_feature_types.items()}


def arrow_to_raw_tensors(batch: Any, raw_feature_types: dict[str, str]) -> dict[str, Any]:
    """A pyarrow Table/RecordBatch as ``{name: tf.SparseTensor [rows, 1]}`` (nulls = no entry).

    Vectorized: the null mask gives the indices. Columns the batch lacks are all-missing.
    """
    import numpy as np
    import pyarrow as pa

    tf = import_tf()
    rows = batch.num_rows
    tensors = {}
    for name, dtype in raw_feature_types.items():
        if name in batch.column_names:
            column = batch.column(name)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            if column.null_count:
                present = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
                column = column.drop_null()
            else:
                present = np.arange(rows, dtype=np.int64)
            values = _arrow_values(column, dtype, name)
        else:
            present = np.zeros([0], np.int64)
            values = np.zeros([0], {"int64": np.int64, "float32": np.float32, "string": object}[dtype])
        indices = np.stack([present.astype(np.int64), np.zeros(len(present), np.int64)], axis=1)
        tensors[name] = tf.SparseTensor(indices, tf.constant(values, tf_dtype(dtype)), [rows, 1])
    return tensors


def _arrow_values(column: Any, dtype: str, name: str) -> Any:
    import pyarrow as pa

    try:
        if dtype == "string":
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                    or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
                column = column.cast(pa.string())
            return column.to_numpy(zero_copy_only=False)
        target = pa.int64() if dtype == "int64" else pa.float32()
        if column.type != target:
            column = column.cast(target)
        return column.to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r} of type {column.type} cannot be read as {dtype}: {exc}") from None


def slices(batch: Any, rows: int = MAX_BATCH_ROWS) -> list[Any]:
    """A Table/RecordBatch cut into zero-copy slices of at most ``rows`` rows (none if empty)."""
    return [batch.slice(start, rows) for start in range(0, batch.num_rows, rows)]


def tensors_to_arrow(outputs: dict[str, Any], feature_types: dict[str, str]) -> Any:
    """Transformed tensors as a pyarrow Table with columns in ``feature_types`` order."""
    import pyarrow as pa

    arrays = []
    for name, dtype in feature_types.items():
        values = outputs[name].numpy()
        if dtype == "string":
            try:
                arrays.append(pa.array(values, pa.binary()).cast(pa.string()))
            except pa.ArrowInvalid:
                raise ValueError(f"transformed feature {name!r} holds strings that are not UTF-8") from None
        else:
            arrays.append(pa.array(values, pa.int64() if dtype == "int64" else pa.float32()))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(feature_types))


def arrow_schema(feature_types: dict[str, str]) -> Any:
    """The Arrow schema of the transformed examples."""
    import pyarrow as pa

    types_ = {"int64": pa.int64(), "float32": pa.float32(), "string": pa.string()}
    return pa.schema([(name, types_[dtype]) for name, dtype in feature_types.items()])


def as_raw_sparse(value: Any) -> Any:
    """A SparseTensor or dense tensor as a raw-feature SparseTensor of dense_shape [batch, 1]."""
    tf = import_tf()
    if isinstance(value, tf.SparseTensor):
        return tf.SparseTensor(value.indices, value.values,
                               tf.stack([value.dense_shape[0], tf.constant(1, tf.int64)]))
    dense = tf.reshape(tf.convert_to_tensor(value), [-1])
    rows = tf.shape(dense, out_type=tf.int64)[0]
    indices = tf.stack([tf.range(rows), tf.zeros([rows], tf.int64)], axis=1)
    return tf.SparseTensor(indices, dense, tf.stack([rows, tf.constant(1, tf.int64)]))


def complete_raw_features(features: dict[str, Any], raw_feature_types: dict[str, str]) -> dict[str, Any]:
    """Raw features in the saved graph's form; absent ones (e.g. the label at serving) as empty."""
    tf = import_tf()
    present = {name: as_raw_sparse(value) for name, value in features.items() if name in raw_feature_types}
    if not present:
        raise ValueError(f"none of the raw features {sorted(raw_feature_types)} was given")
    rows = next(iter(present.values())).dense_shape[0]
    complete = {}
    for name, dtype in raw_feature_types.items():
        tensor = present.get(name)
        if tensor is None:
            tensor = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf_dtype(dtype)),
                                     tf.stack([rows, tf.constant(1, tf.int64)]))
        elif tensor.dtype != tf_dtype(dtype):
            tensor = tf.SparseTensor(tensor.indices, tf.cast(tensor.values, tf_dtype(dtype)), tensor.dense_shape)
        complete[name] = tensor
    return complete
