"""One Arrow array (no nulls) as a flat tensor, without copying numbers or making a Python object per string.

Numbers: TensorFlow's ``tf.constant`` copies a numpy array; an Arrow buffer that meets
TensorFlow's alignment is handed over through DLPack instead (it stays alive as long as the
tensor). Strings: one bytes blob of the array's data and its offsets cut by
``tf.strings.substr`` in TensorFlow's kernels, instead of a numpy object array.
"""

from __future__ import annotations

from typing import Any

# TensorFlow refuses (aborts on) a buffer not aligned to EIGEN_MAX_ALIGN_BYTES; 64 is the largest.
ALIGNMENT = 64


def flat_tensor(array: Any, dtype: str) -> Any:
    """``array`` (already of type int64, int32, float32, or string/binary, without nulls) as a 1-D tensor."""
    import pyarrow as pa
    import tensorflow as tf

    if dtype == "string":
        return _string_tensor(array)
    expected = {"int64": pa.int64(), "int32": pa.int32(), "float32": pa.float32()}[dtype]
    if array.type != expected or array.null_count:
        raise ValueError(f"flat_tensor needs {expected} without nulls, got {array.type}")
    if len(array) and _aligned(array):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array.to_numpy(zero_copy_only=False), shape=[len(array)])


def _aligned(array: Any) -> bool:
    data = array.buffers()[1]
    return (data.address + array.offset * array.type.byte_width) % ALIGNMENT == 0


def _string_tensor(array: Any) -> Any:
    import numpy as np
    import pyarrow as pa
    import tensorflow as tf

    if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
        offsets_type = np.int64
    elif pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        offsets_type = np.int32
    else:
        raise ValueError(f"flat_tensor needs strings, got {array.type}")
    if array.null_count:
        raise ValueError("flat_tensor needs strings without nulls")
    if not len(array):
        return tf.zeros([0], tf.string)
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, offsets_type)[array.offset: array.offset + len(array) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    # A 0-d object array: tf.constant of bare bytes goes through a slow per-byte conversion.
    blob = tf.constant(np.array(data[start:end].to_pybytes() if data is not None and end > start else b"", object))
    return tf.strings.substr(blob, offsets[:-1] - offsets_type(start), np.diff(offsets))
