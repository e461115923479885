"""Arrow batches into TensorFlow: ``arrow_tensor.flat_tensor`` (no copies where Arrow's buffers allow) and
``packed`` (flat tensors per feature, unpacked eagerly or in a traced wrapper); the in-process reader."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from sluice.components.tft.arrow_tensor import flat_tensor
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.packed import PackedFunction
from sluice.components.tft.tensors import arrow_to_raw_tensors


def test_flat_tensor_numbers_aligned_or_sliced_off_alignment():
    values = pa.array(np.arange(1000, dtype=np.float32))
    for array in (values, values.slice(3), values.slice(16), values.slice(999)):  # 3: off TensorFlow's alignment
        np.testing.assert_array_equal(flat_tensor(array, "float32").numpy(), array.to_numpy())
    ints = pa.array(np.arange(10, dtype=np.int64)).slice(1, 5)
    assert flat_tensor(ints, "int64").numpy().tolist() == [1, 2, 3, 4, 5]
    assert flat_tensor(pa.array([], pa.float32()), "float32").shape == [0]


def test_flat_tensor_strings_sliced_empty_and_non_ascii():
    words = pa.array(["", "a", "bé", "c d", "\n"] * 3)
    part = words.slice(2, 6)
    assert flat_tensor(part, "string").numpy().tolist() == [s.encode() for s in part.to_pylist()]
    assert flat_tensor(pa.array(["", ""]), "string").numpy().tolist() == [b"", b""]
    assert flat_tensor(pa.array([], pa.string()), "string").shape == [0]
    assert flat_tensor(pa.array(["x"], pa.large_string()), "string").numpy().tolist() == [b"x"]
    # NUL bytes, trailing ones too, survive (a fixed-width numpy bytes blob would strip them).
    assert flat_tensor(pa.array([b"ab\x00", b"\x00", b""], pa.binary()), "string").numpy().tolist() == [
        b"ab\x00", b"\x00", b""]


def test_packed_function_gives_the_eager_results_before_and_after_it_traces_its_wrapper():
    raw = {"s": FeatureSpec("string"), "l": FeatureSpec("float32"), "d": FeatureSpec("float32", (2,))}

    @tf.function(autograph=False)
    def function(inputs):
        return {"n": tf.sparse.reduce_sum(tf.SparseTensor(inputs["l"].indices, inputs["l"].values,
                                                          inputs["l"].dense_shape), axis=1),
                "width": inputs["l"].dense_shape[1] + 0 * tf.size(inputs["s"].values, tf.int64),
                "d": inputs["d"] * 2.0}

    packed = PackedFunction(function, raw)
    packed.EAGER_BATCHES = 2
    for i in range(4):  # two eager batches, then the traced wrapper
        batch = pa.table({"s": pa.array(["a", None, "b"]), "l": pa.array([[1.0, 2.0], None, [float(i)]]),
                          "d": pa.array([[1.0, 2.0]] * 3)})
        expected = function(arrow_to_raw_tensors(batch, raw))
        got = packed(batch)
        for name in expected:
            np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy(), err_msg=f"{name} batch {i}")
    assert packed._wrapper is not None


def test_in_process_reader_keeps_batches_within_its_budget(tmp_path):
    from sluice.components.transform.in_process import RowGroups

    path = str(tmp_path / "part.parquet")
    pq.write_table(pa.table({"a": list(range(100)), "b": ["x"] * 100}), path, row_group_size=10)
    for budget, kept in ((1 << 20, True), (1, False)):
        reader = RowGroups(["a", "missing"], "Transform", keep_bytes=budget)
        first = pa.Table.from_batches(list(reader([path], keep=True)))
        assert first.column_names == ["a"] and first.column("a").to_pylist() == list(range(100))
        assert (path in reader._kept) is kept
        assert pa.Table.from_batches(list(reader([path]))).equals(first)
    # The budget is taken file by file, up front: a file that does not fit what is left is not kept.
    other = str(tmp_path / "other.parquet")
    pq.write_table(pa.table({"a": list(range(100, 200))}), other, row_group_size=10)
    # ... and a file refused takes nothing from the budget: a small one after it is still kept.
    small = str(tmp_path / "small.parquet")
    pq.write_table(pa.table({"a": list(range(200, 210))}), small)
    reader = RowGroups(["a"], "Transform", keep_bytes=1000)  # 100 int64 values: 800 bytes
    rows = [v for batch in reader([path, other, small], keep=True) for v in batch.column(0).to_pylist()]
    assert rows == list(range(210))
    assert path in reader._kept and other not in reader._kept and small in reader._kept
