"""Arrow batches into TensorFlow: ``arrow_tensor.flat_tensor`` (no copies where Arrow's buffers allow) and
``packed`` (flat tensors per feature, unpacked eagerly, in a traced wrapper, or by a function traced on them);
the in-process reader."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from sluice.components.tft.arrow_tensor import flat_tensor
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.packed import PackedFunction, aligned_empty, as_tensor
from sluice.components.tft.tensors import arrow_to_raw_tensors


def test_flat_tensor_numbers_aligned_or_sliced_off_alignment():
    values = pa.array(np.arange(1000, dtype=np.float32))
    for array in (values, values.slice(3), values.slice(16), values.slice(999)):  # 3: off TensorFlow's alignment
        np.testing.assert_array_equal(flat_tensor(array, "float32").numpy(), array.to_numpy())
    ints = pa.array(np.arange(10, dtype=np.int64)).slice(1, 5)
    assert flat_tensor(ints, "int64").numpy().tolist() == [1, 2, 3, 4, 5]
    assert flat_tensor(pa.array([], pa.float32()), "float32").shape == [0]


def test_numpy_indices_reach_tensorflow_aligned_or_copied():
    indices = aligned_empty((5, 2), np.int64)
    assert indices.ctypes.data % 64 == 0
    indices[:] = np.arange(10).reshape(5, 2)
    np.testing.assert_array_equal(as_tensor(indices).numpy(), np.arange(10).reshape(5, 2))
    off = np.arange(11, dtype=np.int64)[1:] if np.arange(11).ctypes.data % 64 == 0 else np.arange(10, dtype=np.int64)
    np.testing.assert_array_equal(as_tensor(off).numpy(), off)
    assert as_tensor(aligned_empty((0, 2), np.int64)).shape == [0, 2]


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


def test_warming_a_packed_function_runs_it_on_no_rows_and_leaves_its_failures_to_real_batches():
    raw = {"x": FeatureSpec("float32", (1,))}
    runs = tf.Variable(0)

    @tf.function(autograph=False)
    def function(inputs):
        runs.assign_add(1)
        return {"y": inputs["x"] * 2.0}

    packed = PackedFunction(function.get_concrete_function({"x": tf.TensorSpec([None, 1], tf.float32)}), raw)
    packed.warm(pa.schema([("x", pa.float32())]))
    assert int(runs.numpy()) == 1
    assert packed(pa.table({"x": pa.array([1.5], pa.float32())}))["y"].numpy().tolist() == [[3.0]]

    @tf.function(autograph=False)
    def needs_rows(inputs):
        tf.debugging.assert_positive(tf.size(inputs["x"]), message="no rows")
        return {"y": inputs["x"]}

    strict = PackedFunction(needs_rows.get_concrete_function({"x": tf.TensorSpec([None, 1], tf.float32)}), raw)
    strict.warm(pa.schema([("x", pa.float32())]))  # fails on no rows: not raised here
    strict.warm(pa.schema([("other", pa.int64())]))  # a schema without the feature: not raised either
    assert strict(pa.table({"x": pa.array([2.0], pa.float32())}))["y"].numpy().tolist() == [[2.0]]


def test_a_function_of_packed_tensors_takes_each_batch_packed_and_empty_tensors_for_the_features_it_does_not_use():
    from sluice.components.tft.packed import packed_signature, unpack

    raw = {"x": FeatureSpec("float32"), "s": FeatureSpec("string"), "unused": FeatureSpec("float32", (3,))}
    calls = []

    @tf.function(input_signature=[packed_signature(raw)], autograph=False)
    def function(packed):
        calls.append(1)  # Python: runs when traced, not when called
        inputs = unpack(packed, raw)
        return {"n": tf.sparse.reduce_sum(inputs["x"], axis=1), "k": tf.size(inputs["s"].values),
                "rows_unused": tf.shape(inputs["unused"])[0]}

    concrete = function.get_concrete_function()
    packed = PackedFunction(concrete, raw, used={"x", "s"}, packed_input=True)
    packed.warm(pa.schema([("x", pa.float32()), ("s", pa.string())]))
    # The fixed-shape feature it does not use is absent from the batch, and not refused.
    batch = pa.table({"x": pa.array([1.0, None, 3.0], pa.float32()), "s": pa.array(["a", "b", None])})
    for _ in range(6):  # more batches than the raw path runs eagerly: no wrapper is ever traced
        got = packed(batch)
        assert got["n"].numpy().tolist() == [1.0, 0.0, 3.0] and int(got["k"]) == 2 and int(got["rows_unused"]) == 0
    assert packed._wrapper is concrete and len(calls) == 1


def test_the_reader_reads_each_footer_once(tmp_path, monkeypatch):
    from sluice.components.transform import in_process
    from sluice.components.transform.in_process import RowGroups

    small, wide, many = (str(tmp_path / f"{name}.parquet") for name in ("small", "wide", "many"))
    pq.write_table(pa.table({"a": list(range(100)), "b": ["x"] * 100}), small)
    pq.write_table(pa.table({"a": list(range(2000)), "image": pa.array([[0.5] * 784] * 2000, pa.list_(pa.float32()))}),
                   wide)
    pq.write_table(pa.table({"a": list(range(100))}), many, row_group_size=10)
    reader = RowGroups(["a", "b", "image"], "Transform", keep_bytes=1)  # nothing kept: each pass reads the files
    # Each footer is read once, however many passes read the file.
    opened = []
    plain_open = in_process.open_parquet
    monkeypatch.setattr(in_process, "open_parquet",
                        lambda path, owner: (opened.append(path), plain_open(path, owner))[1])
    for _ in range(2):
        assert sum(batch.num_rows for batch in reader([small, wide, many], keep=True)) == 2200
    assert opened == [small, wide, many]


def test_prefetched_files_are_kept_and_read_back_as_a_plain_read_gives_them(tmp_path):
    from sluice.components.sdk import ComponentError
    from sluice.components.transform.in_process import RowGroups

    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"part-{index}.parquet"))
        pq.write_table(pa.table({"a": list(range(index * 100, index * 100 + 100)), "b": ["x"] * 100}), paths[-1],
                       row_group_size=10)
    empty = str(tmp_path / "empty.parquet")  # no row groups: kept as nothing, and the prefetch goes on
    pq.ParquetWriter(empty, pa.schema([("a", pa.int64()), ("b", pa.string())])).close()
    paths.insert(1, empty)
    plain = pa.Table.from_batches(list(RowGroups(["a", "b"], "Transform", keep_bytes=0)(paths)))
    reader = RowGroups(["a", "b"], "Transform")
    reader.prefetch(paths)
    for loading in list(reader._loading.values()):
        list(loading.follow())
    assert all(path in reader._kept for path in paths)  # read in the background, before any pass
    assert not reader._loading
    assert pa.Table.from_batches(list(reader(paths, keep=True, needed={"a"}))).equals(plain)
    # Over the budget: the first file that does not fit ends the prefetch, and nothing is held for it.
    reader = RowGroups(["a", "b"], "Transform", keep_bytes=2500)  # one file's 100 rows: 1,600 bytes
    reader.prefetch(paths)
    for loading in list(reader._loading.values()):
        list(loading.follow())
    reads = []
    plain_read = reader._read
    reader._read = lambda path, columns, groups: (reads.append((path, columns, groups)), plain_read(path, columns,
                                                                                                 groups))[1]
    batches = list(reader(paths, keep=True, needed={"a"}))
    assert [v for batch in batches for v in batch.column("a").to_pylist()] == list(range(300))
    assert paths[0] in reader._kept and paths[2] not in reader._kept and paths[3] not in reader._kept
    # The file the prefetch refused, and the one after it, never tried, are streamed in one read of
    # the needed columns: the footer tells they do not fit.
    for path in paths[2:]:
        assert [(groups, columns) for read, columns, groups in reads if read == path] == [(list(range(10)), ["a"])]
    # A broken file: the prefetch says nothing; the pass reading it gives the one-line error naming it.
    broken = str(tmp_path / "broken.parquet")
    with open(broken, "wb") as fh:
        fh.write(b"not parquet")
    reader = RowGroups(["a"], "Transform")
    reader.prefetch([broken, paths[0]])
    with pytest.raises(ComponentError, match="broken.parquet"):
        list(reader([broken, paths[0]], keep=True))


def test_a_pass_takes_each_batch_as_the_prefetch_reads_it(tmp_path):
    """The analysis starts on the first batch, not once the whole file is read; a prefetch failing
    part-way leaves the pass to read on from where it stopped (where an error that lasts is raised)."""
    from sluice.components.transform.in_process import RowGroups

    path = str(tmp_path / "wide.parquet")
    image = pa.array([[float(row)] * 784 for row in range(4000)], pa.list_(pa.float32()))
    pq.write_table(pa.table({"image": image, "n": pa.array(range(4000), pa.int64())}), path)
    reader = RowGroups(["image", "n"], "Transform")
    # 784 floats a row, each with two levels: 6,272 bytes, so 8 MB of the widest column is 1,337 rows.
    assert reader._rows_per_batch(path, ["image", "n"]) == 1337
    assert reader._rows_per_batch(path, ["n"]) == 131072  # narrow columns: READ_BATCH_ROWS
    gate = threading.Event()
    plain_read = reader._read

    def read_then_wait(path, columns, groups):
        for index, batch in enumerate(plain_read(path, columns, groups)):
            if index == 1:
                gate.wait(10)
            yield batch

    reader._read = read_then_wait
    threading.Timer(5, gate.set).start()  # a pass waiting for the whole file would get its batch after this
    reader.prefetch([path])
    batches = reader([path], keep=True)
    first = next(batches)
    assert not gate.is_set() and first.num_rows == 1337
    gate.set()
    assert [b.num_rows for b in batches] == [1337, 1326] and path in reader._kept
    # Failing part-way: the pass gets the batches read, then reads on itself and raises the error.
    reader = RowGroups(["image", "n"], "Transform")
    plain_read = reader._read
    reads = []

    def fail_after_one(path, columns, groups):
        reads.append(columns)
        batches = plain_read(path, columns, groups)
        yield next(batches)
        if len(reads) == 1:
            raise OSError("disk went away")
        yield from batches

    reader._read = fail_after_one
    reader.prefetch([path])
    rows = [v[0] for batch in reader([path], keep=True) for v in batch.column("image").to_pylist()]
    assert rows == [float(row) for row in range(4000)] and len(reads) == 2 and path not in reader._kept


def test_strings_read_as_a_dictionary_give_the_plain_columns_tensors(tmp_path):
    """Transform reads Parquet strings dictionary-encoded; the raw tensors are the plain column's,
    nulls, a null in the dictionary itself, fixed-shape strings and a batch of only nulls included."""
    raw = {"company": FeatureSpec("string"), "kind": FeatureSpec("string", (1,)), "n": FeatureSpec("int64")}
    table = pa.table({"company": pa.array(["b", None, "a", "b", "", None, "c\n"]),
                      "kind": pa.array(["x", "y", "x", "x", "z", "y", "x"]),
                      "n": pa.array([1, 2, None, 4, 5, 6, 7], pa.int64())})
    pq.write_table(table, tmp_path / "t.parquet")
    as_dictionary = pq.read_table(tmp_path / "t.parquet", read_dictionary=["company", "kind"])
    assert pa.types.is_dictionary(as_dictionary.schema.field("company").type)
    null_in_dictionary = table.set_column(0, "company", pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 2, 0, 3, 1, 4], pa.int32()), pa.array(["b", None, "a", "", "c\n"])))
    all_null = pa.table({"company": pa.array([None, None], pa.string()).dictionary_encode(),
                         "kind": pa.array(["x", "y"]).dictionary_encode(), "n": pa.array([1, 2], pa.int64())})
    for plain, other in ((table, as_dictionary), (table, null_in_dictionary), (all_null.cast(pa.schema(
            [("company", pa.string()), ("kind", pa.string()), ("n", pa.int64())])), all_null)):
        expected, got = arrow_to_raw_tensors(plain, raw), arrow_to_raw_tensors(other, raw)
        for name in ("company", "n"):
            for part in ("indices", "values", "dense_shape"):
                np.testing.assert_array_equal(getattr(got[name], part).numpy(), getattr(expected[name], part).numpy())
        np.testing.assert_array_equal(got["kind"].numpy(), expected["kind"].numpy())
    assert arrow_to_raw_tensors(table, raw)["company"].values.numpy().tolist() == [b"b", b"a", b"b", b"", b"c\n"]


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
    # A file too big to keep is read with only the columns the analysis needs, its first row group too.
    wide = str(tmp_path / "wide.parquet")
    pq.write_table(pa.table({"a": list(range(30)), "b": ["x"] * 30, "c": [1.0] * 30}), wide, row_group_size=10)
    reader = RowGroups(["a", "b", "c"], "Transform", keep_bytes=1)
    batches = list(reader([wide], keep=True, needed={"a", "c"}))
    assert {tuple(batch.schema.names) for batch in batches} == {("a", "c")}
    assert [v for batch in batches for v in batch.column("a").to_pylist()] == list(range(30))
    assert pa.Table.from_batches(list(reader([wide]))).column_names == ["a", "b", "c"]


def test_the_analysis_reads_only_the_features_its_analyzers_depend_on():
    from sluice.components import tft
    from sluice.components.tft.tracing import trace_analysis

    def preprocessing_fn(inputs):
        centered = inputs["x"] - tft.mean(inputs["x"])
        return {"x": centered, "y": inputs["y"] * 2, "z": tft.compute_and_apply_vocabulary(inputs["z"]),
                "w": tf.strings.length(inputs["w"])}

    raw = {"x": FeatureSpec("float32", (1,)), "y": FeatureSpec("float32", (1,)), "z": FeatureSpec("string", (1,)),
           "w": FeatureSpec("string", (1,))}
    plan = trace_analysis(preprocessing_fn, raw)
    assert plan.first_phase.consumed_features() == {"x", "z"}
    # Fixed-shape "y" and "w" would be refused as missing if they were packed.
    found = plan.first_phase(pa.table({"x": pa.array([1.0, 3.0], pa.float32()), "z": pa.array(["a", "b"])}))
    assert len(found) == 2 and all(np.asarray(v).size for v in tf.nest.flatten(found))



def test_an_unoptimized_call_runs_without_grappler_on_this_thread_and_puts_the_options_back():
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    from sluice.components.tft.packed import call_unoptimized

    def optimizer_disabled() -> bool:
        serialized = context.context().function_call_options.config_proto_serialized
        return config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options.disable_meta_optimizer

    before = context.context().function_call_options
    assert not optimizer_disabled()
    assert call_unoptimized(optimizer_disabled)
    assert context.context().function_call_options is before

    def fails():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        call_unoptimized(fails)
    assert context.context().function_call_options is before
    # Every call gets the same options: TensorFlow caches a prepared function under them.
    seen = [call_unoptimized(lambda: context.context().function_call_options) for _ in range(2)]
    assert seen[0] is seen[1]

    concrete = tf.function(lambda x: {"y": x * 2.0}, autograph=False).get_concrete_function(
        tf.TensorSpec([None], tf.float32))
    assert call_unoptimized(concrete, tf.constant([1.5]))["y"].numpy().tolist() == [3.0]


def test_each_transformed_output_names_the_raw_features_it_is_computed_from():
    from sluice.components.tft.graph import raw_dependencies
    from sluice.components.tft.packed import consumed_features, packed_signature, unpack

    raw = {"x": FeatureSpec("float32", (1,)), "tags": FeatureSpec("string"), "n": FeatureSpec("int64", (1,)),
           "unused": FeatureSpec("float32", (1,))}

    @tf.function(input_signature=[packed_signature(raw)], autograph=False)
    def transform(packed):
        inputs = unpack(packed, raw)
        return {"scaled": inputs["x"] * 2.0, "count": tf.size(inputs["tags"].values, tf.int64) + inputs["n"][:, 0],
                "constant": tf.zeros([3])}

    concrete = transform.get_concrete_function()
    assert raw_dependencies(concrete, raw) == {"constant": [], "count": ["n", "tags"], "scaled": ["x"]}
    assert consumed_features(concrete, raw) == {"x", "tags", "n"}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def unmatched(values):  # not a function of packed tensors: every feature counts
        return {"doubled": values * 2.0}

    other = unmatched.get_concrete_function()
    assert raw_dependencies(other, raw) == {"doubled": ["n", "tags", "unused", "x"]}
    assert consumed_features(other, raw) == set(raw)
