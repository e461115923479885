"""Arrow <-> tensors: raw Arrow batches as the tensors ``preprocessing_fn`` takes, and back.

Raw features follow their ``FeatureSpec`` (``feature_spec``): a fixed-length one is a dense
tensor ``[rows, *shape]``, a variable-length one a ``tf.SparseTensor [rows, max_len]``.
Scalar and list (multivalent) Arrow columns are converted without per-row Python: a list
column's offsets give the indices. TensorFlow is imported inside the functions, so importing
this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from sluice.components.tft.feature_spec import FeatureSpec, as_feature_specs

# Rows per tf.function call: big enough to amortize the call, small enough for memory.
MAX_BATCH_ROWS = 65536
MAX_BATCH_BYTES = 16 << 20
# Arrow field metadata key of a transformed column's fixed shape (JSON list; the Trainer reads it).
SHAPE_METADATA = "tft.shape"
# ... and of a variable-length column that was a RaggedTensor (the Trainer gives it back ragged).
RAGGED_METADATA = "tft.ragged"


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


def raw_input_signature(raw_features: dict[str, Any]) -> dict[str, Any]:
    """``{name: TensorSpec | SparseTensorSpec}`` of the raw features.

    ``raw_features`` maps names to ``FeatureSpec`` (or bare dtype names: variable-length).
    """
    return {name: spec.tensor_spec() for name, spec in as_feature_specs(raw_features).items()}


def arrow_to_raw_tensors(batch: Any, raw_features: dict[str, Any]) -> dict[str, Any]:
    """A pyarrow Table/RecordBatch as the raw tensors ``preprocessing_fn`` takes (eagerly).

    Fixed-length features: dense ``[rows, *shape]`` (a missing value is an error, as in
    tf.Transform). Variable-length ones: ``tf.SparseTensor`` of dense_shape ``[rows, 1]`` for
    a scalar column (null = no entry) or ``[rows, longest list]`` for a list column. Columns
    the batch lacks are all-missing. Traced functions take ``packed.pack``'s tensors instead
    (``packed.PackedFunction``), which build the same in their graph.
    """
    from sluice.components.tft.packed import pack, unpack

    return unpack(pack(batch, raw_features), raw_features)


def slices(batch: Any, rows: int = MAX_BATCH_ROWS, max_bytes: int = MAX_BATCH_BYTES) -> list[Any]:
    """A Table/RecordBatch cut into zero-copy slices of at most ``rows`` rows and about ``max_bytes``
    (none if empty): wide rows (images) make smaller batches, so a batch's float64 temporaries
    stay blocks the heap reuses rather than fresh mappings from the kernel."""
    if batch.num_rows:
        rows = max(1, min(rows, int(max_bytes * batch.num_rows / max(batch.nbytes, 1))))
    return [batch.slice(start, rows) for start in range(0, batch.num_rows, rows)]


# --- transformed tensors -> Arrow ------------------------------------------------------------


def _value_type(dtype: str) -> Any:
    import pyarrow as pa

    return {"int64": pa.int64(), "float32": pa.float32(), "string": pa.string()}[dtype]


def arrow_type(spec: FeatureSpec) -> Any:
    """A scalar type (also for one value per example, e.g. shape [1]), nested ``fixed_size_list``
    per fixed dimension, or ``list`` when var-len."""
    import pyarrow as pa

    kind = _value_type(spec.dtype)
    # Items are never null: Parquet then writes no definition levels for them.
    if not spec.is_fixed:
        return pa.list_(pa.field("item", kind, nullable=False))
    if spec.size == 1:  # plain columns: cheaper than lists to write and read
        return kind
    for dim in reversed(spec.shape):
        kind = pa.list_(pa.field("item", kind, nullable=False), dim)
    return kind


def arrow_schema(features: dict[str, Any]) -> Any:
    """The Arrow schema of the transformed examples; a fixed shape is also in the field's metadata.

    Every field is non-nullable (a transformed value is a tensor's row, never missing; a var-len
    row without values is an empty list), so Parquet writes no definition levels for a scalar
    column and one level fewer for a list (faster to write: bench/PROFILES.md)."""
    import json

    import pyarrow as pa

    fields = []
    for name, spec in as_feature_specs(features).items():
        metadata = {SHAPE_METADATA: json.dumps(list(spec.shape))} if spec.is_fixed and spec.shape else None
        if spec.ragged:
            metadata = {RAGGED_METADATA: "1"}
        fields.append(pa.field(name, arrow_type(spec), nullable=False, metadata=metadata))
    return pa.schema(fields)


def _flat_array(values: Any, dtype: str, name: str) -> Any:
    import pyarrow as pa

    if dtype == "string":
        try:
            return pa.array(values, pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:
            raise ValueError(f"transformed feature {name!r} holds strings that are not UTF-8") from None
    return pa.array(values, pa.int64() if dtype == "int64" else pa.float32())


def _var_len_array(value: Any, spec: FeatureSpec, name: str) -> Any:
    """A 2-D SparseTensor (values in row-major order) or RaggedTensor as an Arrow list array."""
    import numpy as np
    import pyarrow as pa

    if isinstance(value, import_tf().RaggedTensor):
        offsets = np.asarray(value.row_splits).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _flat_array(np.asarray(value.values),
                                                                                  spec.dtype, name))
    indices = np.asarray(value.indices)
    values = np.asarray(value.values)
    rows = int(np.asarray(value.dense_shape)[0])
    if len(indices) > 1:
        order = np.lexsort((indices[:, 1], indices[:, 0]))
        if not np.array_equal(order, np.arange(len(order))):
            indices, values = indices[order], values[order]
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(np.bincount(indices[:, 0], minlength=rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _flat_array(values, spec.dtype, name))


def tensors_to_arrow(outputs: dict[str, Any], features: dict[str, Any]) -> Any:
    """Transformed tensors as a pyarrow Table with columns in ``features`` order.

    Scalars (and shapes of one value, e.g. [1]) are plain columns, other fixed shapes
    nested ``fixed_size_list``, var-len SparseTensors ``list`` columns.
    """
    import numpy as np
    import pyarrow as pa

    specs = as_feature_specs(features)
    arrays = []
    for name, spec in specs.items():
        if not spec.is_fixed:
            arrays.append(_var_len_array(outputs[name], spec, name))
            continue
        array = _flat_array(np.asarray(outputs[name]).reshape([-1]), spec.dtype, name)  # a view, not a copy
        for dim in reversed(spec.shape if spec.size != 1 else ()):
            array = pa.FixedSizeListArray.from_arrays(array, dim)
        arrays.append(array)
    schema = arrow_schema(specs)
    arrays = [a if a.type == f.type else a.cast(f.type) for a, f in zip(arrays, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


# --- raw features handed to a saved graph ------------------------------------------------------


def _rows(value: Any) -> Any:
    tf = import_tf()
    if isinstance(value, tf.SparseTensor):
        return value.dense_shape[0]
    if isinstance(value, tf.RaggedTensor):
        return value.nrows(out_type=tf.int64)
    return tf.shape(value, out_type=tf.int64)[0]


def _as_sparse(value: Any) -> Any:
    """A raw value as a 2-D SparseTensor: a dense ``[rows]`` or ``[rows, k]`` keeps every entry."""
    tf = import_tf()
    if isinstance(value, tf.SparseTensor):
        return value
    if isinstance(value, tf.RaggedTensor):
        return value.to_sparse()
    dense = tf.convert_to_tensor(value)
    rows = tf.shape(dense, out_type=tf.int64)[0]
    dense = tf.reshape(dense, tf.stack([rows, tf.constant(-1, tf.int64)]))
    width = tf.shape(dense, out_type=tf.int64)[1]
    grid = tf.stack(tf.meshgrid(tf.range(rows), tf.range(width), indexing="ij"), axis=-1)
    return tf.SparseTensor(tf.reshape(grid, [-1, 2]), tf.reshape(dense, [-1]), tf.stack([rows, width]))


def _as_dense(value: Any, spec: FeatureSpec) -> Any:
    tf = import_tf()
    if isinstance(value, tf.RaggedTensor):
        value = value.to_sparse()
    if isinstance(value, tf.SparseTensor):
        default = tf.constant(b"" if spec.dtype == "string" else 0, value.dtype)
        rows = value.dense_shape[0]
        value = tf.sparse.to_dense(tf.SparseTensor(value.indices, value.values,
                                                   tf.stack([rows, tf.constant(spec.size, tf.int64)])), default)
    return tf.reshape(tf.convert_to_tensor(value), [-1, *spec.shape])


def complete_raw_features(features: dict[str, Any], raw_features: dict[str, Any]) -> dict[str, Any]:
    """Raw features in the saved graph's form; absent ones (e.g. the label at serving) as empty.

    Fixed-length features become dense ``[rows, *shape]`` (from a dense tensor, or from a
    SparseTensor with missing values as 0 / ''), variable-length ones SparseTensors; an
    absent fixed-length feature is all zeros / '', an absent var-len one has no entries.
    """
    tf = import_tf()
    specs = as_feature_specs(raw_features)
    given = {name: value for name, value in features.items() if name in specs}
    if not given:
        raise ValueError(f"none of the raw features {sorted(specs)} was given")
    rows = _rows(next(iter(given.values())))
    complete = {}
    for name, spec in specs.items():
        value = given.get(name)
        if value is None:
            if spec.is_fixed:
                tensor = tf.zeros(tf.concat([[rows], tf.constant(spec.shape, tf.int64)], 0), spec.tf_dtype())
            else:
                tensor = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], spec.tf_dtype()),
                                         tf.stack([rows, tf.constant(1, tf.int64)]))
        elif spec.is_fixed:
            tensor = _as_dense(value, spec)
        else:
            tensor = _as_sparse(value)
        if tensor.dtype != spec.tf_dtype():
            tensor = (tf.SparseTensor(tensor.indices, tf.cast(tensor.values, spec.tf_dtype()), tensor.dense_shape)
                      if isinstance(tensor, tf.SparseTensor) else tf.cast(tensor, spec.tf_dtype()))
        complete[name] = tensor
    return complete
