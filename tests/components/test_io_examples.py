"""``io.examples``: Parquet examples read in batches, strings (also inside lists) as dictionaries."""

from __future__ import annotations

import gc

import pyarrow as pa
import pyarrow.parquet as pq

from sluice.components.io.examples import leaf_owners, read_batches


def test_strings_and_lists_of_strings_are_read_as_dictionaries_holding_the_same_values(tmp_path):
    path = str(tmp_path / "examples.parquet")
    table = pa.table({
        "city": ["Chicago", None, "Evanston", "Chicago"],
        "tokens": pa.array([["a", "b"], None, [], ["b", "b", "c"]], pa.list_(pa.string())),
        "a.b": pa.array([["x"], ["y", "x"], ["z"], []], pa.list_(pa.string())),  # a dot in the name
        "image": pa.array([[0.5, 1.0]] * 4, pa.list_(pa.float32())),
        "point": pa.array([{"x": 1, "tag": "p"}] * 4),  # a struct's text stays plain
        "n": [1, 2, 3, 4],
    })
    # Batches of 3 rows from row groups of 2; one row group's dictionary outgrows its page (Parquet
    # then writes the rest plainly).
    pq.write_table(table, path, row_group_size=2, dictionary_pagesize_limit=4)
    batches = list(read_batches(path, "Transform", 3, strings_as_dictionary=True))
    assert [batch.num_rows for batch in batches] == [2, 2]  # a batch never spans row groups here
    read = pa.Table.from_batches(batches)
    assert pa.types.is_dictionary(read.schema.field("city").type)
    for name in ("tokens", "a.b"):
        assert pa.types.is_dictionary(read.schema.field(name).type.value_type), name
    assert read.schema.field("image").type == table.schema.field("image").type
    assert read.schema.field("point").type == table.schema.field("point").type
    assert read.cast(table.schema).equals(table)
    plain = pa.Table.from_batches(list(read_batches(path, "Transform", 3)))
    assert plain.schema == table.schema


def test_leaf_owners_name_the_top_level_field_of_each_parquet_leaf():
    schema = pa.schema([("a.b", pa.list_(pa.float32())), ("m", pa.map_(pa.string(), pa.int64())),
                        ("s", pa.struct([("x", pa.int32()), ("y", pa.list_(pa.string()))])), ("c", pa.int64())])
    assert leaf_owners(schema) == ["a.b", "m", "m", "s", "s", "c"]


def test_reading_leaves_nothing_for_the_garbage_collector(tmp_path):
    # A footer and its schema holding each other kept about 5 MB per file read alive until a
    # collection, which at 1000x doubled StatisticsGen's memory growth (bench/PROFILES.md).
    path = str(tmp_path / "examples.parquet")
    table = pa.table({"city": ["Chicago", "Evanston"] * 3, "tokens": [["a"], ["b", "c"]] * 3,
                      "s": pa.array([{"y": ["p"]}] * 6), "n": list(range(6))})
    pq.write_table(table, path, row_group_size=2)
    gc.collect()
    gc.disable()
    try:
        for row_groups, rows in (([0], 2), ([1, 2], 4), (None, 6)):
            batches = read_batches(path, "StatisticsGen", 4, strings_as_dictionary=True, row_groups=row_groups)
            assert sum(batch.num_rows for batch in batches) == rows
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        # Only what this module's reads leave counts (another thread may leave garbage of its own).
        left = [o for o in gc.garbage if type(o).__module__.startswith("pyarrow")
                or getattr(o, "__module__", None) == "sluice.components.io.examples"]
        assert left == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_an_empty_file_reads_as_no_batches(tmp_path):
    path = str(tmp_path / "empty.parquet")
    pq.write_table(pa.table({"city": pa.array([], pa.string()), "tokens": pa.array([], pa.list_(pa.string()))}), path)
    assert list(read_batches(path, "Transform", 4, strings_as_dictionary=True)) == []
