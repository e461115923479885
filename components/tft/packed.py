"""Raw Arrow batches as a few flat tensors per feature, made into ``preprocessing_fn``'s inputs in the graph.

``pack`` turns each column into flat tensors without per-row Python and without a copy where
Arrow's buffers allow (``arrow_tensor``): a fixed-length feature its values; a variable-length
one its values, the SparseTensor's indices (made with numpy from the validity bitmap or the list
lengths: cheaper than TensorFlow's ragged-to-sparse kernel per column and batch) and its dense
shape ``[rows, width]`` (width 1 for a scalar column, the longest list for a list column).
``unpack`` builds the dense tensors and SparseTensors from them, inside the traced graph
(``PackedFunction``), so a batch costs one call instead of a few eager operations per column.
Transform traces ``preprocessing_fn`` on ``pack``'s tensors directly (``packed_input``);
``pack_in_graph`` packs raw tensors in a graph, for a function over them (the saved graph's).

Strings travel as a dictionary and int32 codes (``unpack`` gathers them): Parquet's string
columns are dictionary-encoded, and read as such (``RowGroups``) only the few distinct strings
are copied into TensorFlow; a plain string column is sent as its own dictionary, codes 0, 1, ...
"""

from __future__ import annotations

import threading
from typing import Any

from sluice.components.tft.feature_spec import FeatureSpec, as_feature_specs


def _tf():
    import tensorflow as tf

    return tf


def packed_signature(raw_features: dict[str, Any]) -> dict[str, Any]:
    """The ``tf.TensorSpec``s of ``pack``'s output."""
    tf = _tf()
    signature = {}
    for name, spec in as_feature_specs(raw_features).items():
        values = {"dictionary": tf.TensorSpec([None], tf.string), "codes": tf.TensorSpec([None], tf.int32)} \
            if spec.dtype == "string" else tf.TensorSpec([None], spec.tf_dtype())
        signature[name] = values if spec.is_fixed else {
            "values": values, "indices": tf.TensorSpec([None, 2], tf.int64), "shape": tf.TensorSpec([2], tf.int64)}
    return signature


def pack(batch: Any, raw_features: dict[str, Any]) -> dict[str, Any]:
    """A pyarrow Table/RecordBatch as flat tensors (``packed_signature``).

    Raises ``ValueError`` naming the column when a fixed-length feature is missing, null or of
    another length than its shape; a column the batch lacks is all-missing when variable-length.
    """
    import numpy as np
    import pyarrow as pa

    rows = batch.num_rows
    packed = {}
    columns = set(batch.column_names)
    for name, spec in as_feature_specs(raw_features).items():
        if name not in columns:
            if spec.is_fixed:
                raise ValueError(f"column {name!r} is missing, but the schema says it is always present "
                                 f"with shape {list(spec.shape)}")
            packed[name] = {"values": _values(pa.array([], spec.dtype), spec.dtype, name),
                            "indices": np.zeros((0, 2), np.int64), "shape": _every_row(rows)[1]}
            continue
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if pa.types.is_dictionary(column.type) and (spec.dtype != "string" or column.dictionary.null_count):
            column = column.cast(column.type.value_type)
        is_list = pa.types.is_list(column.type) or pa.types.is_large_list(column.type) \
            or pa.types.is_fixed_size_list(column.type)
        packed[name] = (_pack_list if is_list else _pack_scalar)(column, spec, rows, name)
    return packed


def _pack_scalar(column: Any, spec: FeatureSpec, rows: int, name: str) -> Any:
    import numpy as np

    if spec.is_fixed:
        if spec.size != 1:
            raise ValueError(f"column {name!r} holds one value per row, but the schema's shape is {list(spec.shape)}")
        if column.null_count:
            raise ValueError(f"column {name!r} has {column.null_count} missing value(s), but the schema says it "
                             "is always present (shape with presence min_fraction 1)")
        return _values(column, spec.dtype, name)
    if not column.null_count:
        indices, shape = _every_row(rows)
        return {"values": _values(column, spec.dtype, name), "indices": indices, "shape": shape}
    present = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
    indices = aligned_empty((len(present), 2), np.int64)
    indices[:, 0] = present
    indices[:, 1] = 0
    return {"values": _values(column.drop_null(), spec.dtype, name), "indices": as_tensor(indices),
            "shape": _every_row(rows)[1]}


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> Any:
    """``np.empty`` whose data starts on TensorFlow's alignment, so ``as_tensor`` need not copy it."""
    import numpy as np

    from sluice.components.tft.arrow_tensor import ALIGNMENT

    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start: start + size].view(dtype).reshape(shape)


def as_tensor(array: Any) -> Any:
    """A C-contiguous numpy array as a tensor: through DLPack (no copy) when aligned, else copied."""
    from sluice.components.tft.arrow_tensor import ALIGNMENT

    tf = _tf()
    if array.size and array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array)


_EVERY_ROW: dict[int, tuple[Any, Any]] = {}
_EVERY_ROW_LOCK = threading.Lock()


def _every_row(rows: int) -> tuple[Any, Any]:
    """The indices ``[[0, 0], [1, 0], ...]`` and dense shape ``[rows, 1]`` of a scalar column without
    nulls, as tensors kept per row count: batches mostly share one size, and most columns have no
    nulls, so each batch need not build and copy them per column."""
    with _EVERY_ROW_LOCK:
        found = _EVERY_ROW.get(rows)
        if found is None:
            import numpy as np

            tf = _tf()
            indices = np.zeros((rows, 2), np.int64)
            indices[:, 0] = np.arange(rows)
            if len(_EVERY_ROW) >= 4:
                _EVERY_ROW.clear()
            found = _EVERY_ROW[rows] = (tf.constant(indices), tf.constant([rows, 1], tf.int64))
        return found


def list_lengths(column: Any) -> Any:
    """Values per row of an Arrow list column (0 for a null list), as int64 numpy."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype("int64", copy=False)


def _pack_list(column: Any, spec: FeatureSpec, rows: int, name: str) -> Any:
    import numpy as np

    lengths = list_lengths(column)
    flat = column.flatten()
    if flat.null_count:
        raise ValueError(f"column {name!r} holds null values inside its lists")
    values = _values(flat, spec.dtype, name)
    if spec.is_fixed:
        wrong = np.flatnonzero(lengths != spec.size)
        if len(wrong):
            raise ValueError(f"column {name!r}: row {int(wrong[0])} has {int(lengths[wrong[0]])} values, but the "
                             f"schema's shape is {list(spec.shape)} ({spec.size} values per row)")
        return values
    return {"values": values, "indices": as_tensor(sparse_indices(lengths)),
            "shape": np.array([rows, lengths.max() if rows else 0], np.int64)}


def sparse_indices(lengths: Any) -> Any:
    """``[values, 2]`` int64 SparseTensor indices (row, position in the row) of rows of ``lengths`` values."""
    import numpy as np

    total = int(lengths.sum())
    indices = aligned_empty((total, 2), np.int64)
    indices[:, 0] = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    indices[:, 1] = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return indices


def _values(column: Any, dtype: str, name: str) -> Any:
    """An Arrow array without nulls as a flat tensor of ``dtype`` (cast first when needed)."""
    import pyarrow as pa

    from sluice.components.tft.arrow_tensor import flat_tensor

    try:
        if dtype == "string":
            return _strings(column)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        else:
            target = pa.int64() if dtype == "int64" else pa.float32()
            if column.type != target:
                column = column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r} of type {column.type} cannot be read as {dtype}: {exc}") from None
    return flat_tensor(column, dtype)


def _strings(column: Any) -> dict[str, Any]:
    """A string column without nulls as ``{"dictionary", "codes"}`` (``unpack`` gathers them)."""
    import pyarrow as pa

    from sluice.components.io.examples import is_text
    from sluice.components.tft.arrow_tensor import flat_tensor

    if pa.types.is_dictionary(column.type) and is_text(column.type.value_type) and not column.dictionary.null_count:
        dictionary, codes = column.dictionary, column.indices.cast(pa.int32())
        if not len(codes):
            dictionary = dictionary.slice(0, 0)
    else:  # the dictionary is the column itself, each row its own code (rare: strings are read as dictionaries)
        import numpy as np

        dictionary = column if is_text(column.type) else column.cast(pa.string())
        codes = pa.array(np.arange(len(column), dtype=np.int32))
    return {"dictionary": flat_tensor(dictionary, "string"), "codes": flat_tensor(codes, "int32")}


def _gather_strings(part: dict[str, Any]) -> Any:
    """``_strings``' output as the column's string tensor (a plain gather: a ``tf.cond`` choosing
    between the dictionary and the gather cost more to trace and prepare than the rare copy)."""
    return _tf().gather(part["dictionary"], part["codes"])


def pack_in_graph(tensors: dict[str, Any], raw_features: dict[str, Any]) -> dict[str, Any]:
    """Raw tensors (dense ``[rows, *shape]``, or 2-D SparseTensors) as ``pack`` gives them, in a graph:
    a string column is its own dictionary, with codes 0, 1, ..."""
    tf = _tf()
    packed = {}
    for name, spec in as_feature_specs(raw_features).items():
        tensor = tensors[name]
        values = tf.reshape(tensor, [-1]) if spec.is_fixed else tensor.values
        if spec.dtype == "string":
            values = {"dictionary": values, "codes": tf.range(tf.size(values, tf.int32), dtype=tf.int32)}
        packed[name] = values if spec.is_fixed else {
            "values": values, "indices": tensor.indices, "shape": tensor.dense_shape}
    return packed


def unpack(packed: dict[str, Any], raw_features: dict[str, Any]) -> dict[str, Any]:
    """``pack``'s tensors as the raw inputs: dense ``[rows, *shape]``, or SparseTensor ``[rows, width]``."""
    tf = _tf()
    tensors = {}
    for name, spec in as_feature_specs(raw_features).items():
        part = packed[name]
        values = part if spec.is_fixed else part["values"]
        if spec.dtype == "string":
            values = _gather_strings(values)
        if spec.is_fixed:
            tensors[name] = tf.reshape(values, [-1, *spec.shape])
            continue
        tensors[name] = tf.SparseTensor(tf.convert_to_tensor(part["indices"], tf.int64), values,
                                        tf.convert_to_tensor(part["shape"], tf.int64))
    return tensors


class PackedFunction:
    """``function`` called on Arrow batches.

    Without ``optimize``, it runs without TensorFlow's graph optimizer (``call_unoptimized``).
    With ``packed_input``, ``function`` is a concrete function of ``packed_signature`` (traced on
    ``pack``'s tensors, as Transform traces ``preprocessing_fn``): a batch is packed and passed
    as it is. Otherwise it takes the raw inputs: small batches, up to ``EAGER_BATCHES`` of them,
    are unpacked eagerly; from then on, or from the first big batch, ``function`` is called
    through a traced wrapper that unpacks in its graph: tracing the wrapper costs about what a
    few eager unpackings do, and each later batch is one call.
    """

    EAGER_BATCHES = 4
    EAGER_MAX_BYTES = 4 << 20

    def __init__(self, function: Any, raw_features: dict[str, Any], used: set[str] | None = None,
                 packed_input: bool = False, optimize: bool = True):
        self.raw_features = as_feature_specs(raw_features)
        # Only the features ``function``'s results depend on are packed; the others get empty tensors.
        self._packed_features = {name: spec for name, spec in self.raw_features.items()
                                 if used is None or name in used}
        self._function = function
        self._packed_input = packed_input
        self._unused = {name: _empty_packed(spec) for name, spec in self.raw_features.items()
                        if name not in self._packed_features} if packed_input else {}
        self._wrapper = function if packed_input else None
        self._optimize = optimize
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self, batch: Any) -> Any:
        packed = pack(batch, self._packed_features)
        if self._wrapper is None:
            with self._lock:
                self._calls += 1
                eager = self._calls <= self.EAGER_BATCHES and batch.nbytes < self.EAGER_MAX_BYTES
                if not eager and self._wrapper is None:
                    self._wrapper = self._trace()
            if eager:
                return self._function(self._inputs(packed))
        if self._unused:
            packed.update(self._unused)
        return self._call(packed)

    def _call(self, packed: dict[str, Any]) -> Any:
        return self._wrapper(packed) if self._optimize else call_unoptimized(self._wrapper, packed)

    def warm(self, schema: Any) -> None:
        """Sets up, on no rows of ``schema``, the path the batches to come will take, so that the
        threads calling it next find it ready in TensorFlow's runtime rather than each setting it
        up at once: with ``packed_input``, or once the wrapper is traced, the traced function
        run; else ``function`` run eagerly. Setting up the other path would be wasted: TensorFlow
        prepares each graph it runs anew. A failure is left for a real batch to raise."""
        try:
            packed = pack(schema.empty_table(), self._packed_features)
            if self._wrapper is not None:
                self._call({**packed, **self._unused})
            else:
                self._function(self._inputs(packed))
        except Exception:  # noqa: BLE001, S110 - only a warm-up
            pass

    def _inputs(self, packed: dict[str, Any]) -> dict[str, Any]:
        tensors = unpack(packed, self._packed_features)
        for name, spec in self.raw_features.items():
            if name not in tensors:
                tensors[name] = _empty_input(spec)
        return tensors

    def _trace(self) -> Any:
        tf = _tf()

        @tf.function(input_signature=[packed_signature(self._packed_features)], autograph=False)
        def from_packed(packed):
            return self._function(self._inputs(packed))

        return from_packed.get_concrete_function()


_UNOPTIMIZED: dict[bytes, Any] = {}


def call_unoptimized(function: Any, *args: Any) -> Any:
    """``function(*args)`` with TensorFlow's graph optimizer (grappler) off: TensorFlow prepares a
    function on its first call, and grappler is most of that (tens of ms); it pays only where
    the optimized graph saves more on the batches to come (bench/PROFILES.md). The options are
    TensorFlow's function call options of this thread, set for the call and put back; every call
    of a function must get the same (they are part of what TensorFlow caches it under). Where
    this TensorFlow has no such options, the call is plain."""
    try:
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.eager import context

        current = context.context()
        previous = current.function_call_options
        serialized = previous.config_proto_serialized
    except (ImportError, AttributeError):
        return function(*args)
    options = _UNOPTIMIZED.get(serialized)
    if options is None:
        config = config_pb2.ConfigProto.FromString(serialized)
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        options = _UNOPTIMIZED[serialized] = context.FunctionCallOptions(previous.executor_type, config)
    current.function_call_options = options
    try:
        return function(*args)
    finally:
        current.function_call_options = previous


def _empty_packed(spec: FeatureSpec) -> Any:
    """``pack``'s tensors for a feature of no rows (one a function's results do not depend on)."""
    import numpy as np

    tf = _tf()
    values = {"dictionary": tf.zeros([0], tf.string), "codes": tf.zeros([0], tf.int32)} \
        if spec.dtype == "string" else tf.zeros([0], spec.tf_dtype())
    if spec.is_fixed:
        return values
    return {"values": values, "indices": tf.zeros([0, 2], tf.int64), "shape": tf.constant(np.array([0, 1], np.int64))}


def _empty_input(spec: FeatureSpec) -> Any:
    """A raw input of no rows, for a feature the function's results do not depend on."""
    tf = _tf()
    values = tf.zeros([0], spec.tf_dtype())
    if spec.is_fixed:
        return tf.reshape(values, [0, *spec.shape])
    return tf.SparseTensor(tf.zeros([0, 2], tf.int64), values, tf.constant([0, 1], tf.int64))


def placeholder_features(function: Any) -> dict[str, str] | None:
    """``{placeholder op name: raw feature}`` of a concrete function of ``packed_signature``'s
    tensors (each feature's flattened tensors, features in sorted order); None when its inputs
    cannot be matched to its signature."""
    tf = _tf()
    specs = function.structured_input_signature[0][0]
    if not isinstance(specs, dict):
        return None
    names = [name for name in sorted(specs) for _ in tf.nest.flatten(specs[name], expand_composites=True)]
    placeholders = function.graph.inputs[:len(function.graph.inputs) - len(function.captured_inputs)]
    if len(names) != len(placeholders):
        return None
    return {tensor.op.name: name for tensor, name in zip(placeholders, names)}


def consumed_features(function: Any, raw_features: dict[str, Any]) -> set[str]:
    """The raw features a concrete function's outputs (or its stateful ops) depend on.

    Its graph holds every op ``preprocessing_fn`` made, outputs it does not return included; only
    ops reached backwards from what it returns and runs count. All features when its inputs cannot
    be matched to them.
    """
    feature_of = placeholder_features(function)
    if feature_of is None:
        return set(raw_features)
    graph = function.graph
    seen: set[str] = set()
    pending = [tensor.op for tensor in graph.outputs] + list(graph.control_outputs)
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        pending.extend(tensor.op for tensor in op.inputs)
        pending.extend(op.control_inputs)
    return {feature_of[name] for name in seen if name in feature_of}
