"""Tests of ExampleGen: input resolution, CSV type inference, splits, formats, bad input."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from sluice.components import example_gen
from sluice.components.artifacts import Examples
from sluice.components.example_gen import (
    CsvColumns,
    CsvExampleGen,
    InputFile,
    SpanRange,
    SplitConfig,
    csv_example_gen,
    csv_read,
    file_checks,
    import_example_gen,
    parquet_example_gen,
    resolve_input,
    sniff,
    sniff_csv_columns,
    transforms,
)
from sluice.components.example_gen import config as eg_config
from sluice.components.example_gen import shards as eg_shards
from sluice.components.example_gen.columns import EMPTY, FLOAT, INT, INTFLOAT, STRING
from sluice.components.io import spans
from sluice.components.sdk import ComponentError, DefinitionError, ExecutionContext

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TAXI = SHARED_DATA / "chicago_taxi"
TAXI_SPANS = SHARED_DATA / "chicago_taxi_spans"
needs_taxi = pytest.mark.skipif(not (TAXI / "data.csv").exists(), reason="shared taxi data not present")

TAXI_TYPES = {
    "pickup_community_area": pa.int64(),
    "fare": pa.float64(),
    "trip_start_month": pa.int64(),
    "trip_start_hour": pa.int64(),
    "trip_start_day": pa.int64(),
    "trip_start_timestamp": pa.int64(),
    "pickup_latitude": pa.float64(),
    "pickup_longitude": pa.float64(),
    "dropoff_latitude": pa.float64(),
    "dropoff_longitude": pa.float64(),
    "trip_miles": pa.float64(),
    "pickup_census_tract": pa.int64(),
    "dropoff_census_tract": pa.int64(),
    "payment_type": pa.string(),
    "company": pa.string(),
    "trip_seconds": pa.int64(),
    "dropoff_community_area": pa.int64(),
    "tips": pa.float64(),
}


# --- helpers ---------------------------------------------------------------------------------


def _run_csv(tmp_path, name="out", **params) -> tuple[Examples, ExecutionContext]:
    out = tmp_path / name
    out.mkdir()
    examples, ctx = Examples(uri=str(out)), ExecutionContext()
    csv_example_gen(examples=examples, ctx=ctx, **params)
    return examples, ctx


def _read_split(examples: Examples, split: str) -> pa.Table:
    folder = Path(examples.split_uri(split))
    files = sorted(folder.glob("part-*-of-*.parquet"))
    assert files, f"no shards in {folder}"
    return pa.concat_tables([pq.read_table(f) for f in files])


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory) -> Path:
    from palmerpenguins import load_penguins

    folder = tmp_path_factory.mktemp("penguins")
    load_penguins().to_csv(folder / "penguins.csv", index=False)  # NaN -> empty field
    return folder


# --- input resolution --------------------------------------------------------------------------


@needs_taxi
def test_resolve_latest_span_by_default_and_a_range():
    latest = resolve_input("CsvExampleGen", str(TAXI_SPANS), "span-{SPAN}/data.csv")
    assert latest.span == 2 and latest.version is None
    assert [Path(f.path).parent.name for f in latest.files] == ["span-2"]
    both = resolve_input("CsvExampleGen", str(TAXI_SPANS), "span-{SPAN}/data.csv", span_range=SpanRange(start=1, end=2))
    assert both.span == 2
    assert [Path(f.path).parent.name for f in both.files] == ["span-1", "span-2"]
    with pytest.raises(ComponentError, match=r"no span .* in \[5, 9\] \(found spans \[1, 2\]\)"):
        resolve_input("CsvExampleGen", str(TAXI_SPANS), "span-{SPAN}/data.csv", span_range=SpanRange(start=5, end=9))


def test_resolve_versions_and_dates(tmp_path):
    for span, version in [(1, 1), (1, 2), (3, 1), (3, 4), (12, 9)]:
        _write(tmp_path / f"s{span}" / f"v{version}" / "data.csv", "a\n1\n")
    latest = resolve_input("X", str(tmp_path), "s{SPAN}/v{VERSION}/data.csv")
    assert (latest.span, latest.version) == (12, 9)
    ranged = resolve_input("X", str(tmp_path), "s{SPAN}/v{VERSION}/data.csv", span_range=SpanRange(start=0, end=3))
    assert (ranged.span, ranged.version) == (3, 4)
    assert [os.path.relpath(f.path, tmp_path) for f in ranged.files] == ["s1/v2/data.csv", "s3/v4/data.csv"]

    dated = tmp_path / "dated"
    for day in ["2024-01-31", "2024-02-01"]:
        _write(dated / day / "data.csv", "a\n1\n")
    result = resolve_input("X", str(dated), "{YYYY}-{MM}-{DD}/data.csv")
    assert result.span == 19754  # days from 1970-01-01 to 2024-02-01, as TFX numbers date spans
    assert result.files[0].path.endswith("2024-02-01/data.csv")


@pytest.mark.parametrize("pattern, problem", [
    ("{SPAN}-{YYYY}{MM}{DD}.csv", "mixes {SPAN} and a date"),
    ("{YYYY}-{MM}.csv", "needs all of {YYYY}, {MM} and {DD}"),
    ("v{VERSION}.csv", "has {VERSION} without {SPAN} or a date"),
    ("s{SPAN}/[ab].csv", "'[...]' globs are not supported"),
    ("s{SPAN}/{SPAN}.csv", "repeats a placeholder"),
])
def test_bad_patterns_are_named_by_the_one_span_parser(tmp_path, pattern, problem):
    _write(tmp_path / "a.csv", "a\n1\n")
    with pytest.raises(ValueError, match=re.escape(f"input pattern {pattern!r}")):
        spans.parse(pattern)
    with pytest.raises(ComponentError, match=re.escape(f"X: input pattern {pattern!r}") + ".*" + re.escape(problem)):
        resolve_input("X", str(tmp_path), pattern)


def test_span_patterns_give_a_glob_and_read_span_and_version():
    pattern = spans.parse("span-{SPAN}/v{VERSION}/*.csv")
    assert pattern.glob == "span-*/v*/*.csv" and pattern.has_span and pattern.has_version
    assert pattern.match("span-12/v3/data.csv") == (12, 3)
    assert pattern.match("span-12/v3/sub/data.csv") is None  # '*' does not cross '/'
    assert spans.parse("*.csv").match("data.csv") == (0, None)
    with pytest.raises(ValueError, match="not a valid date"):
        spans.parse("{YYYY}{MM}{DD}.csv").match("20240230.csv")


def test_importing_the_package_imports_neither_beam_nor_tensorflow():
    code = ("import sys, sluice.components.example_gen; "
            "print([m for m in ('apache_beam', 'tensorflow', 'tfx_bsl') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_split_config_and_span_range_are_validated():
    assert SplitConfig().splits == {"train": 2, "eval": 1}
    with pytest.raises(ValueError, match="at least 1 bucket"):
        SplitConfig(splits={"train": 0})
    with pytest.raises(ValueError, match="is after end"):
        SpanRange(start=3, end=1)
    node = CsvExampleGen(input_base="/data", output_config={"splits": {"train": 4, "test": 1}})
    assert node.parameters["output_config"] == SplitConfig(splits={"train": 4, "test": 1})
    with pytest.raises(DefinitionError, match="output_format"):
        CsvExampleGen(input_base="/data", output_format="csv")


# --- CSV: types ----------------------------------------------------------------------------------


@needs_taxi
def test_taxi_types_splits_and_properties(tmp_path):
    examples, ctx = _run_csv(tmp_path, input_base=str(TAXI))
    assert examples.split_names == ["train", "eval"]
    assert (examples.span, examples.version, examples.file_format) == (0, None, "parquet")
    train, evaluation = _read_split(examples, "train"), _read_split(examples, "eval")
    assert dict(zip(train.schema.names, train.schema.types)) == TAXI_TYPES
    assert train.num_rows + evaluation.num_rows == 15002
    assert ctx.metrics["rows_train"] == train.num_rows and ctx.metrics["rows_eval"] == evaluation.num_rows
    assert 0.63 < train.num_rows / 15002 < 0.70  # 2:1
    assert Path(examples.split_uri("train"), "part-00000-of-00001.parquet").exists()
    # Blank fields are nulls, in numbers and strings alike.
    assert train.column("pickup_census_tract").null_count > 9000
    assert train.column("company").null_count > 0


@needs_taxi
def test_span_two_writes_ints_as_floats_but_infers_the_same_types(tmp_path):
    assert "480.0" in (TAXI_SPANS / "span-2" / "data.csv").read_text()[:2000]
    span2, _ = _run_csv(tmp_path, "s2", input_base=str(TAXI_SPANS), input_pattern="span-{SPAN}/data.csv")
    span1, _ = _run_csv(tmp_path, "s1", input_base=str(TAXI_SPANS), input_pattern="span-{SPAN}/data.csv",
                        span_range=SpanRange(start=1, end=1))
    assert (span2.span, span1.span) == (2, 1)
    s2, s1 = _read_split(span2, "train"), _read_split(span1, "train")
    assert s2.schema == s1.schema
    assert dict(zip(s2.schema.names, s2.schema.types)) == TAXI_TYPES
    assert 480 in s2.column("trip_seconds").to_pylist() + _read_split(span2, "eval").column("trip_seconds").to_pylist()


@needs_taxi
def test_span_range_reads_all_spans_in_it(tmp_path):
    examples, ctx = _run_csv(tmp_path, input_base=str(TAXI_SPANS), input_pattern="span-{SPAN}/data.csv",
                             span_range=SpanRange(start=1, end=2))
    assert examples.span == 2
    assert ctx.metrics["rows"] == 15000
    assert ctx.metrics["input_files"] == 2


def test_types_use_every_row_not_just_the_first_block(tmp_path, monkeypatch):
    # Small blocks, so the later rows fall outside what is sniffed.
    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 256)
    monkeypatch.setattr(eg_config, "SNIFF_MAX_BYTES", 256)
    rows = ["ints,floaty,late,texty,wholefloat"]
    rows += [f"{i},{i},,{i},{i}.0" for i in range(200)]
    rows += ["7,2.5,,x,3.0", "8,1,42,9,4"]
    _write(tmp_path / "data" / "mixed.csv", "\n".join(rows) + "\n")
    examples, ctx = _run_csv(tmp_path, input_base=str(tmp_path / "data"), output_config=SplitConfig(splits={"all": 1}))
    table = _read_split(examples, "all")
    assert dict(zip(table.schema.names, table.schema.types)) == {
        "ints": pa.int64(), "floaty": pa.float64(), "late": pa.int64(), "texty": pa.string(), "wholefloat": pa.int64(),
    }
    assert table.num_rows == 202
    assert sorted(v for v in table.column("late").to_pylist() if v is not None) == [42]
    assert "2.5" not in table.column("texty").to_pylist() and "x" in table.column("texty").to_pylist()


def test_sniffed_kinds_of_first_block(tmp_path):
    path = _write(tmp_path / "a.csv", "i,f,w,s,e\n1,1.5,2.0,a,\n2,,3.0,b,\n")
    columns = sniff_csv_columns("X", [InputFile(str(path), 0)])
    assert columns.describe() == {"i": "int64", "f": "float64", "w": "int64", "s": "string", "e": "empty (int64)"}
    assert columns.arrow_schema().field("e").type == pa.int64()



@pytest.mark.parametrize("text, kind", [
    ("1,22,-3", INT), ("480.0,3,1e3", INTFLOAT), ("1.5,2,nan", FLOAT),
    ("1,x,3", STRING), ("12,1_000", STRING), ("a,b", STRING),
    ("2017-01-01,3", STRING), (",,", EMPTY),
])
def test_classify_strings(text, kind):
    values = pa.array([v or None for v in text.split(",")], pa.string())
    assert example_gen.classify_strings(values) == kind


@pytest.mark.parametrize("quoted", [False, True])
def test_sniffing_reads_on_while_a_column_is_empty(tmp_path, monkeypatch, quoted):
    monkeypatch.setattr(eg_config, "SNIFF_BLOCK_BYTES", 256)
    label = '"x"' if quoted else "x"  # a quote: the streaming reader sniffs instead of the in-memory one
    rows = [f"{i},,{label}" for i in range(200)] + ["200,2.5,y"] + [f"{i},,z" for i in range(201, 300)]
    path = _write(tmp_path / "a.csv", "n,late,s\n" + "\n".join(rows) + "\n")
    assert (sniff.sniff_head_in_memory(str(path), ("",)) is None) == quoted
    columns = sniff_csv_columns("X", [InputFile(str(path), 0)])
    assert columns.describe() == {"n": "int64", "late": "float64", "s": "string"}
    bad = _write(tmp_path / "bad.csv", "n,late,s\n" + "\n".join(rows[:150] + ["1,2"] + rows[150:]) + "\n")
    with pytest.raises(ComponentError, match=r"bad\.csv:152: expected 3 columns, got 2"):
        sniff_csv_columns("X", [InputFile(str(bad), 0)])
    monkeypatch.setattr(eg_config, "SNIFF_MAX_BYTES", 512)  # gives up before row 200: still empty
    assert sniff_csv_columns("X", [InputFile(str(path), 0)]).describe()["late"] == "empty (int64)"


def test_few_distinct_strings_are_read_dictionary_encoded(tmp_path):
    rows = "".join(f"{i},{'ab'[i % 2]},id{i}\n" for i in range(100))
    path = _write(tmp_path / "a.csv", "n,few,many\n" + rows)
    columns = sniff_csv_columns("X", [InputFile(str(path), 0)])
    assert columns.dictionary == {"few"}  # 2 distinct of 100; "many" has 100
    schema = columns.batch_schema()
    assert pa.types.is_dictionary(schema.field("few").type) and schema.field("many").type == pa.string()
    assert columns.arrow_schema().field("few").type == pa.string()
    examples, _ = _run_csv(tmp_path, input_base=str(path))
    table = pa.concat_tables([_read_split(examples, s) for s in examples.split_names])
    assert table.schema == columns.arrow_schema()  # read back as plain strings
    assert sorted(table.column("few").to_pylist()) == sorted("ab"[i % 2] for i in range(100))


def test_row_hashes_stay_what_they_were():
    # The split of a row must not change between versions: these are the hashes of 0.x's first
    # implementation (nulls filled before hashing, strings hashed with categorize=True). A few
    # nulls (one in 40 here) are patched after hashing, many filled before: both paths covered.
    few_nulls = pa.record_batch({"n": pa.array([1, None, 3, 4] + [5] * 36),
                                 "x": pa.array([0.5, 2.25, None, -1.0] + [0.0] * 36),
                                 "s": pa.array(["a", None, "bc", "a"] + ["d"] * 36)})
    assert example_gen.row_hashes(few_nulls)[:4].tolist() == [
        9961019537941382296, 4009656811628349889, 9414774066477288374, 7086886311937083814]
    many_nulls = pa.record_batch({"n": pa.array([1, None, 3, 4]), "x": pa.array([0.5, 2.25, None, -1.0]),
                                  "s": pa.array(["a", None, "bc", "a"])})
    assert example_gen.row_hashes(many_nulls).tolist() == example_gen.row_hashes(few_nulls)[:4].tolist()


def test_dictionary_strings_hash_like_plain_strings():
    names = pa.array(["x", None, "yy", "x", "", None, "zz"])
    plain = pa.record_batch({"n": pa.array([1, 2, None, 4, 5, 6, 7]), "s": names})
    encoded = pa.record_batch({"n": plain.column(0), "s": names.dictionary_encode()})
    # A dictionary with a value it does not use, and codes in another order.
    other = pa.DictionaryArray.from_arrays(pa.array([3, None, 1, 3, 0, None, 2], pa.int32()),
                                           pa.array(["", "yy", "zz", "x", "unused"]))
    shuffled = pa.record_batch({"n": plain.column(0), "s": other})
    expected = example_gen.row_hashes(plain)
    assert np.array_equal(example_gen.row_hashes(encoded), expected)
    assert np.array_equal(example_gen.row_hashes(shuffled), expected)
    assert len(set(expected.tolist())) == 7


def test_column_encodings_follow_what_the_columns_hold():
    rng = np.random.default_rng(0)
    n = 20_000
    batch = pa.record_batch({
        "hour": pa.array(rng.integers(0, 24, n)),                        # few values
        "cents": pa.array(rng.integers(0, 500, n) / 100),                # few values, floats
        "noise": pa.array(rng.random(n)),                                 # neither few nor compressible
        "ramp": pa.array(np.arange(n) * 1000),                            # distinct integers
        "steps": pa.array(np.arange(n) // 2 * 1.5),                       # distinct floats, compressible
        "codes": pa.array(rng.choice(["a", "b"], n)).dictionary_encode(),  # dictionary strings
        "text": pa.array([f"id{i}" for i in range(n)]),                   # many strings
    })
    encodings = example_gen.column_encodings([batch])
    assert set(encodings.dictionary) == {"cents", "codes", "text"}
    assert encodings.encodings == {"hour": "DELTA_BINARY_PACKED", "ramp": "DELTA_BINARY_PACKED"}  # integers
    assert encodings.codecs == {"hour": "none", "cents": "none", "noise": "none", "ramp": "none",
                                "steps": "snappy", "codes": "none", "text": "snappy"}


def test_dictionary_encoded_numbers_read_back_as_written(tmp_path):
    rows = "".join(f"{i},{i % 24},{(i * 37) % 500 / 100},{i * 0.001:.6f}\n" for i in range(5000))
    path = _write(tmp_path / "in" / "data.csv", "n,hour,price,x\n" + rows)
    examples, _ = _run_csv(tmp_path, input_base=str(path.parent))
    shard = next(Path(examples.split_uri("train")).glob("*.parquet"))
    column = {pq.ParquetFile(shard).metadata.row_group(0).column(i).path_in_schema:
              pq.ParquetFile(shard).metadata.row_group(0).column(i) for i in range(4)}
    assert "RLE_DICTIONARY" in column["price"].encodings and column["price"].compression == "UNCOMPRESSED"
    for integers in ("n", "hour"):
        assert "DELTA_BINARY_PACKED" in column[integers].encodings
        assert "RLE_DICTIONARY" not in column[integers].encodings
    assert "RLE_DICTIONARY" not in column["x"].encodings
    table = pa.concat_tables([_read_split(examples, s) for s in examples.split_names]).sort_by("n")
    assert table.column("n").to_pylist() == list(range(5000))
    assert table.column("hour").to_pylist() == [i % 24 for i in range(5000)]
    assert table.column("price").to_pylist() == [(i * 37) % 500 / 100 for i in range(5000)]
    assert table.schema.types == [pa.int64(), pa.int64(), pa.float64(), pa.float64()]


def test_big_splits_are_written_as_row_groups_dealt_to_two_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 2048)  # many batches
    monkeypatch.setattr(eg_config, "ROW_GROUP_ROWS", 100)
    chosen = []  # the encodings are chosen once per input file, for all four of its shards
    monkeypatch.setattr(eg_shards, "column_encodings",
                        lambda batches, choose=eg_shards.column_encodings: chosen.append(choose(batches))
                        or chosen[-1])
    rows = 3000
    path = _write(tmp_path / "in" / "data.csv", "n,label\n" + "".join(f"{i},l{i % 5}\n" for i in range(rows)))
    examples, ctx = _run_csv(tmp_path, input_base=str(path.parent))
    assert len(chosen) == 1
    seen = []
    for split in examples.split_names:
        shards = sorted(Path(examples.split_uri(split)).glob("*.parquet"))
        assert [s.name for s in shards] == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
        files = [pq.ParquetFile(s) for s in shards]
        groups = [[f.read_row_group(i).column("n").to_pylist() for i in range(f.num_row_groups)] for f in files]
        # Row groups of exactly 100 rows but each shard's last, dealt in turn: 0, 2, 4, ... and 1, 3, ...
        dealt = [g for pair in zip(groups[0], groups[1] + [[]]) for g in pair if g]
        assert all(len(g) == 100 for g in dealt[:-2])
        assert [n for g in dealt for n in g] == sorted(n for g in dealt for n in g)  # input order
        assert files[0].schema_arrow.field("label").type == pa.string()
        for file in files:
            assert "RLE_DICTIONARY" in file.metadata.row_group(0).column(1).encodings  # as chosen: labels
        seen += [n for g in dealt for n in g]
        assert ctx.metrics[f"rows_{split}"] == sum(len(g) for g in dealt)
    assert sorted(seen) == list(range(rows))


# --- CSV: splits ------------------------------------------------------------------------------------


def test_splits_are_deterministic_and_near_the_ratio(tmp_path, penguins_csv, monkeypatch):
    first, _ = _run_csv(tmp_path, "a", input_base=str(penguins_csv))
    second, _ = _run_csv(tmp_path, "b", input_base=str(penguins_csv))
    # Another block size must not move rows between splits either.
    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 2048)
    third, _ = _run_csv(tmp_path, "c", input_base=str(penguins_csv))
    order = [("bill_length_mm", "ascending"), ("body_mass_g", "ascending")]
    for split in ("train", "eval"):
        assert _read_split(first, split).equals(_read_split(second, split))
        assert _read_split(first, split).sort_by(order).equals(_read_split(third, split).sort_by(order))
    train, evaluation = _read_split(first, "train"), _read_split(first, "eval")
    assert train.num_rows + evaluation.num_rows == 344
    assert 0.58 < train.num_rows / 344 < 0.75
    assert train.schema.field("body_mass_g").type == pa.int64()  # pandas wrote 3750.0
    assert train.schema.field("bill_length_mm").type == pa.float64()
    assert train.schema.field("year").type == pa.int64()


def test_partition_feature_keeps_equal_values_in_one_split(tmp_path, penguins_csv):
    config = SplitConfig(splits={"train": 1, "eval": 1, "test": 1}, partition_feature="island")
    examples, _ = _run_csv(tmp_path, input_base=str(penguins_csv), output_config=config)
    assert examples.split_names == ["train", "eval", "test"]
    seen: dict[str, str] = {}
    for split in examples.split_names:
        for island in set(_read_split(examples, split).column("island").to_pylist()):
            assert island not in seen, f"{island} in {seen.get(island)} and {split}"
            seen[island] = split
    assert set(seen) == {"Torgersen", "Biscoe", "Dream"}


def test_unknown_partition_feature_is_an_error(tmp_path, penguins_csv):
    with pytest.raises(ComponentError, match="partition_feature 'nope' is not a column"):
        _run_csv(tmp_path, input_base=str(penguins_csv), output_config=SplitConfig(partition_feature="nope"))


def test_input_config_keeps_the_given_splits(tmp_path):
    _write(tmp_path / "in" / "train" / "a.csv", "x,y\n1,a\n2,b\n3,c\n")
    _write(tmp_path / "in" / "train" / "b.csv", "x,y\n4,d\n")
    _write(tmp_path / "in" / "eval" / "a.csv", "x,y\n5,e\n")
    examples, ctx = _run_csv(tmp_path, input_base=str(tmp_path / "in"),
                             input_config={"train": "train/*.csv", "eval": "eval/*.csv"})
    assert examples.split_names == ["train", "eval"]
    assert sorted(_read_split(examples, "train").column("x").to_pylist()) == [1, 2, 3, 4]
    assert _read_split(examples, "eval").column("y").to_pylist() == ["e"]
    assert sorted(p.name for p in Path(examples.split_uri("train")).iterdir()) == [
        "part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert ctx.metrics == {"rows_train": 4.0, "rows_eval": 1.0, "rows": 5.0, "input_files": 3.0}


def test_an_empty_split_still_gets_a_readable_shard(tmp_path):
    _write(tmp_path / "in" / "one.csv", "x\n1\n")
    examples, ctx = _run_csv(tmp_path, input_base=str(tmp_path / "in"),
                             output_config=SplitConfig(splits={"a": 1, "b": 1, "c": 1, "d": 1}))
    tables = {s: _read_split(examples, s) for s in examples.split_names}
    assert sum(t.num_rows for t in tables.values()) == 1
    assert all(t.schema.names == ["x"] for t in tables.values())


# --- formats ----------------------------------------------------------------------------------------


def _parse_tfrecords(paths: list[Path]) -> pa.RecordBatch:
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    records = []
    for path in paths:
        data = gzip.decompress(path.read_bytes())
        pos = 0
        while pos < len(data):
            length = int.from_bytes(data[pos:pos + 8], "little")
            records.append(data[pos + 12:pos + 12 + length])
            pos += 16 + length
    return ExamplesToRecordBatchDecoder().DecodeBatch(records)


def test_tfrecord_output_is_gzipped_tf_examples(tmp_path, penguins_csv):
    examples, ctx = _run_csv(tmp_path, input_base=str(penguins_csv), output_format="tfrecord")
    assert examples.file_format == "tfrecord"
    shards = sorted(Path(examples.split_uri("train")).glob("part-*-of-*.tfrecord.gz"))
    assert [s.name for s in shards] == ["part-00000-of-00001.tfrecord.gz"]
    decoded = _parse_tfrecords(shards)
    assert decoded.num_rows == ctx.metrics["rows_train"]
    assert decoded.schema.field("body_mass_g").type == pa.large_list(pa.int64())
    assert decoded.schema.field("bill_length_mm").type == pa.large_list(pa.float32())
    assert decoded.schema.field("species").type == pa.large_list(pa.large_binary())
    # A missing value is a feature without values, read back as null / empty.
    assert any(not v for v in decoded.column("sex").to_pylist())


def test_tfrecord_output_reads_with_tensorflow(tmp_path, penguins_csv):
    tf = pytest.importorskip("tensorflow")
    examples, ctx = _run_csv(tmp_path, input_base=str(penguins_csv), output_format="tfrecord")
    files = [str(p) for p in Path(examples.split_uri("eval")).glob("*.tfrecord.gz")]
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    assert len(records) == ctx.metrics["rows_eval"]
    parsed = tf.io.parse_example(records, {"year": tf.io.VarLenFeature(tf.int64)})
    assert set(parsed["year"].values.numpy().tolist()) <= {2007, 2008, 2009}


def test_parquet_example_gen(tmp_path):
    from palmerpenguins import load_penguins

    table = pa.Table.from_pandas(load_penguins(), preserve_index=False)
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(table.slice(0, 200), folder / "a.parquet")
    pq.write_table(table.slice(200), folder / "b.parquet")
    out = tmp_path / "out"
    out.mkdir()
    examples, ctx = Examples(uri=str(out)), ExecutionContext()
    parquet_example_gen(examples=examples, input_base=str(folder), ctx=ctx)
    train, evaluation = _read_split(examples, "train"), _read_split(examples, "eval")
    assert train.num_rows + evaluation.num_rows == 344
    assert train.schema.field("bill_length_mm").type == pa.float64()
    assert train.schema.field("species").type == pa.string()
    assert train.schema.field("year").type == pa.int64()
    assert len(list(Path(examples.split_uri("train")).glob("part-*-of-00002.parquet"))) == 2


def _write_tfx_split(folder: Path, rows: list[dict]) -> None:
    import tensorflow as tf

    folder.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(folder / "data_tfrecord-00000-of-00001.gz"), options) as writer:
        for row in rows:
            features = {}
            for name, value in row.items():
                if value is None:
                    continue
                if isinstance(value, str):
                    features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                elif isinstance(value, float):
                    features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                elif isinstance(value, list):
                    features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
                else:
                    features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


def test_import_example_gen_reads_tfx_split_folders(tmp_path):
    pytest.importorskip("tensorflow")
    base = tmp_path / "tfx_examples"
    _write_tfx_split(base / "Split-train", [
        {"fare": 1.5, "company": "A", "trips": 3, "tags": [1, 2]},
        {"fare": None, "company": "B", "trips": None, "tags": [3]},
        {"fare": 2.25, "company": None, "trips": 5, "tags": []},
    ])
    _write_tfx_split(base / "Split-eval", [{"fare": 4.0, "company": "C", "trips": 7, "tags": [4, 5, 6]}])
    out = tmp_path / "out"
    out.mkdir()
    examples, ctx = Examples(uri=str(out)), ExecutionContext()
    import_example_gen(examples=examples, input_base=str(base), ctx=ctx)
    assert examples.split_names == ["eval", "train"]
    train = _read_split(examples, "train")
    assert train.schema.field("fare").type == pa.float64()
    assert train.schema.field("company").type == pa.string()
    assert train.schema.field("trips").type == pa.int64()
    assert train.schema.field("tags").type == pa.large_list(pa.int64())  # multi-valued stays a list
    rows = {r["company"]: r for r in train.to_pylist()}
    assert rows["A"] == {"company": "A", "fare": 1.5, "tags": [1, 2], "trips": 3}
    assert rows["B"]["fare"] is None and rows["B"]["trips"] is None
    assert rows[None]["tags"] in ([], None)
    assert _read_split(examples, "eval").column("tags").to_pylist() == [[4, 5, 6]]
    assert ctx.metrics["rows_train"] == 3 and ctx.metrics["rows_eval"] == 1


def test_import_round_trip_of_csv_tfrecord_output(tmp_path, penguins_csv):
    as_tfrecord, _ = _run_csv(tmp_path, "tfr", input_base=str(penguins_csv), output_format="tfrecord")
    as_parquet, _ = _run_csv(tmp_path, "pq", input_base=str(penguins_csv))
    out = tmp_path / "imported"
    out.mkdir()
    imported = Examples(uri=str(out))
    import_example_gen(examples=imported, input_base=as_tfrecord.uri, ctx=ExecutionContext())
    assert sorted(imported.split_names) == ["eval", "train"]
    original = _read_split(as_parquet, "eval")
    again = _read_split(imported, "eval").select(original.schema.names)
    assert again.num_rows == original.num_rows
    assert again.column("species").to_pylist() == original.column("species").to_pylist()
    assert again.column("body_mass_g").to_pylist() == original.column("body_mass_g").to_pylist()
    np.testing.assert_allclose(
        np.array(again.column("bill_length_mm").to_pylist(), dtype=float),
        np.array(original.column("bill_length_mm").to_pylist(), dtype=float), rtol=1e-6)


# --- the PTransforms ---------------------------------------------------------------------------------


def test_read_csv_transform_with_test_pipeline(tmp_path):
    first = _write(tmp_path / "a.csv", "n,s\n1,x\n2,\n")
    second = _write(tmp_path / "b.csv", "n,s\n3,z\n")
    files = [InputFile(str(first), 0, "train"), InputFile(str(second), 1, "eval")]
    columns = CsvColumns(("n", "s"), (INT, STRING))
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        batches = pipeline | transforms.ReadCsvToRecordBatches(files, columns)
        assert_that(
            batches | beam.Map(lambda e: (e[0], e[1], e[2].to_pydict(), str(e[2].schema.types))),
            equal_to([
                ("train", 0, {"n": [1, 2], "s": ["x", None]}, "[DataType(int64), DataType(string)]"),
                ("eval", 1, {"n": [3], "s": ["z"]}, "[DataType(int64), DataType(string)]"),
            ]),
        )


def test_infer_columns_transform_feeds_the_reader_as_side_input(tmp_path):
    path = _write(tmp_path / "a.csv", "a,b\n1,1\n2,2.5\n")
    files = [InputFile(str(path), 0)]
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        columns = pipeline | "Infer" >> transforms.InferCsvColumns(files, ("a", "b"))
        assert_that(columns | beam.Map(lambda c: c.describe()), equal_to([{"a": "int64", "b": "float64"}]),
                    label="kinds")
        batches = pipeline | "Read" >> transforms.ReadCsvToRecordBatches(files, columns)
        assert_that(batches | beam.Map(lambda e: e[2].to_pydict()), equal_to([{"a": [1, 2], "b": [1.0, 2.5]}]),
                    label="rows")


def test_split_and_write_transform_with_test_pipeline(tmp_path):
    batch = pa.record_batch(
        {"id": pa.array(range(3000), pa.int64()), "name": pa.array([f"n{i % 7}" for i in range(3000)])}
    )
    config = SplitConfig(splits={"train": 2, "eval": 1})
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        written = (
            pipeline
            | beam.Create([
                (None, 0, batch.slice(0, 1000)), (None, 0, batch.slice(1000)), ("test", 1, batch.slice(0, 10)),
            ])
            | transforms.SplitAndWriteExamples(str(tmp_path), config)
        )
        totals = written | beam.Map(lambda e: (e[0], e[2])) | beam.CombinePerKey(sum)
        assert_that(totals | beam.Map(lambda kv: kv[0]), equal_to(["train", "eval", "test"]), label="splits")
        assert_that(totals | beam.Map(lambda kv: kv[1]) | beam.CombineGlobally(sum), equal_to([3010]), label="rows")
        _ = written | transforms.RecordWrittenShards(str(tmp_path))
    rows = example_gen.finalize_shards(str(tmp_path), ["train", "eval", "test"], "parquet",
                                       eg_shards.read_written(str(tmp_path), "test"))
    assert sum(rows.values()) == 3010 and rows["test"] == 10
    train = pq.read_table(tmp_path / "Split-train")
    assert 1800 < train.num_rows < 2200
    hashes = example_gen.row_hashes(pa.record_batch(train.to_pydict()))
    assert len(set(hashes.tolist())) == train.num_rows


# --- bad input --------------------------------------------------------------------------------------


BAD_CSV = {
    "wrong_columns": ("a,b,c\n1,2,3\n4,5\n6,7,8\n", r"bad\.csv:3: expected 3 columns, got 2"),
    "too_many_columns": ("a,b,c\n1,2,3\n4,5,6,7\n", r"bad\.csv:3: expected 3 columns, got 4"),
    "broken_quoting": ('a,b,c\n1,2,3\n4,"5,6\n7,8,9\n', r"bad\.csv:3: broken quoting: unterminated quoted field"),
    "non_utf8": (b"a,b,c\n1,2,x\n4,5,\xff\xfe\n", r"bad\.csv:3: column 'c' is not valid UTF-8"),
    "non_utf8_in_numbers": (b"a,b,c\n1,2,3\n4,5,\xff\n", r"bad\.csv:3: column 'c' is not valid UTF-8"),
    "empty_file": ("", r"bad\.csv: empty file \(0 bytes\)$"),
    "header_only": ("a,b,c\n", r"bad\.csv: has a header but no data rows"),
    "duplicate_columns": ("a,b,a\n1,2,3\n", r"bad\.csv:1: duplicate column name\(s\) 'a'"),
    # pyarrow reads a quote left open in the last field as a value running to the end of the file.
    "unclosed_quote_at_end": ('a,b,c\n1,2,x\n4,5,"y\n7,8,z\n9,9,w\n',
                              r"bad\.csv:3: broken quoting: unterminated quoted field starting '\"y'"),
    "unclosed_quote_no_final_newline": ('a,b,c\n1,2,x\n4,5,"y\n7,8,z',
                                        r"bad\.csv:3: broken quoting: unterminated quoted field"),
    "empty_column_name": ("a,,c\n1,2,3\n", r"bad\.csv:1: empty column name at position\(s\) 2 of 3"),
    "blank_column_names": ("a, ,c,\n1,2,3,4\n", r"bad\.csv:1: empty column name at position\(s\) 2, 4 of 4"),
    "binary_garbage": (bytes(range(256)) * 8, r"bad\.csv:\d+: not a UTF-8 CSV file"),
    # Checked at the door (file_checks): encodings, NUL bytes, the header's bytes and separator.
    "utf16_bom": ("a,b,c\n1,2,3\n".encode("utf-16"), r"bad\.csv: encoded as UTF-16 LE \(byte-order mark\)"),
    "utf16_be_bom": ("a,b,c\n1,2,3\n".encode("utf-16-be").join([b"\xfe\xff", b""]),
                     r"bad\.csv: encoded as UTF-16 BE"),
    "utf32_bom": ("a,b,c\n1,2,3\n".encode("utf-32"), r"bad\.csv: encoded as UTF-32 LE \(byte-order mark\)"),
    "utf16_no_bom": ("a,b,c\n1,2,3\n".encode("utf-16-le"),
                     r"bad\.csv:1: not a UTF-8 CSV file: it holds NUL bytes \(binary data, or UTF-16/32"),
    "nul_in_a_row": (b"a,b,c\n1,2,3\n4,\x005,6\n", r"bad\.csv:3: not a UTF-8 CSV file: it holds NUL bytes"),
    "bad_byte_in_header": (b"\xffa,b,c\n1,2,3\n",
                           r"bad\.csv:1: the header is not valid UTF-8 \(byte 0xff at column 1\)"),
    "bad_byte_and_ragged_row": (b"a,b,c\n1,2,x\n2,caf\xe9\n", r"bad\.csv:3: not a UTF-8 CSV file"),
    "semicolons": ("a;b;c\n1;2;3\n", r"bad\.csv:1: the header is one column 'a;b;c': the file looks ';'-separated"),
    "tabs": ("a\tb\n1\t2\n", r"bad\.csv:1: the header is one column 'a\\tb': the file looks tab-separated"),
    "gzip_compressed": (gzip.compress(b"a,b\n1,2\n" * 100), r"bad\.csv: not a CSV file: it looks like a gzip file$"),
    "blank_lines_only": ("\n\n\n", r"bad\.csv: no header: the file holds only blank lines"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_raises_one_clear_line(tmp_path, case, capfd):
    content, message = BAD_CSV[case]
    _write(tmp_path / "in" / "bad.csv", content)
    with pytest.raises(ComponentError, match=message) as info:
        _run_csv(tmp_path, input_base=str(tmp_path / "in"))
    assert "\n" not in str(info.value)
    assert str(tmp_path / "in" / "bad.csv") in str(info.value)
    # Nothing else on stderr from the CSV reader (e.g. "Exception ignored in: <InvalidRows ...>").
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize("column", ["label", "name"])
def test_non_utf8_past_the_sniffed_head_is_named_with_its_line(tmp_path, monkeypatch, column, quoted):
    # Strings are checked after parsing (a dictionary-encoded column through its dictionary):
    # a bad value far into the file, in a few-valued (dictionary) or a many-valued column, in the
    # parallel pieces or in the serial read of a quoted file, names its line; nothing is published.
    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 4096)  # the sniff sees the first 4 KB only
    rows = [f"{i},l{i % 5},n{i}" for i in range(3000)]
    if quoted:
        rows[1] = '1,"l1",n1'
    rows[2000] = "2000,l<bad>,n2000" if column == "label" else "2000,l0,n<bad>"
    content = ("i,label,name\n" + "\n".join(rows) + "\n").encode().replace(b"<bad>", b"\xff\xfe")
    _write(tmp_path / "in" / "bad.csv", content)
    columns = sniff_csv_columns("CsvExampleGen", [InputFile(str(tmp_path / "in" / "bad.csv"), 0)])
    assert ("label" in columns.dictionary) and ("name" not in columns.dictionary)
    with pytest.raises(ComponentError, match=rf"bad\.csv:2002: column '{column}' is not valid UTF-8$"):
        _run_csv(tmp_path, input_base=str(tmp_path / "in"))
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_undecodable_bad_row_does_not_reach_the_unraisable_hook(tmp_path):
    import sys

    reported = []
    previous = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        _write(tmp_path / "in" / "bad.csv", b"a,b\n1,2\n\xff,\xfe,\x80\n")
        with pytest.raises(ComponentError, match=r"bad\.csv:3: not a UTF-8 CSV file"):
            sniff_csv_columns("CsvExampleGen", [InputFile(str(tmp_path / "in" / "bad.csv"), 0)])
    finally:
        sys.unraisablehook = previous
    assert reported == []


def test_quoted_line_breaks_and_a_closed_quote_at_the_end_are_values(tmp_path):
    _write(tmp_path / "in" / "ok.csv", 'a,b\n1,"x\ny"\n2,"p\nq"\n')
    examples, _ = _run_csv(tmp_path, input_base=str(tmp_path / "in"), output_config=SplitConfig(splits={"t": 1}))
    assert sorted(_read_split(examples, "t").column("b").to_pylist()) == ["p\nq", "x\ny"]


def _many_rows_csv(rows: int, quoted_from: int | None = None) -> str:
    lines = ["n,x,label"]
    for i in range(rows):
        label = f'"l{i}\nmore"' if quoted_from is not None and i >= quoted_from and i % 7 == 0 else f"l{i % 13}"
        lines.append(f"{i},{i * 0.5},{label}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("quoted_from", [None, 0, 1500])
def test_parallel_pieces_give_the_rows_of_a_serial_read_in_order(tmp_path, monkeypatch, quoted_from):
    import pyarrow.csv as pacsv

    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 4096)  # many pieces
    path = _write(tmp_path / "in" / "data.csv", _many_rows_csv(3000, quoted_from))
    columns = sniff_csv_columns("CsvExampleGen", [InputFile(str(path), 0)])
    batches = list(csv_read.ReadCsvFile(columns)(InputFile(str(path), 0)))
    assert len(batches) > 10
    # Few distinct labels: read dictionary-encoded (each piece has its own dictionary).
    assert all(b.schema == columns.batch_schema() for _, _, b in batches)
    assert pa.types.is_dictionary(columns.batch_schema().field("label").type)
    got = pa.Table.from_batches([b for _, _, b in batches]).cast(columns.arrow_schema())
    expected = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=got.schema))
    assert got.equals(expected)


def test_blank_lines_and_crlf_across_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 256)
    text = "a,b\r\n" + "".join(f"{i},{i % 3}\r\n" + "\n" * (40 if i % 50 == 0 else 0) for i in range(400))
    path = _write(tmp_path / "in" / "data.csv", text)
    columns = sniff_csv_columns("CsvExampleGen", [InputFile(str(path), 0)])
    batches = [b for _, _, b in csv_read.ReadCsvFile(columns)(InputFile(str(path), 0))]
    assert pa.Table.from_batches(batches).column("a").to_pylist() == list(range(400))


@pytest.mark.parametrize("quoted_from", [None, 0, 1500])
def test_bad_row_in_a_later_piece_names_its_line(tmp_path, monkeypatch, quoted_from):
    monkeypatch.setattr(eg_config, "CSV_BLOCK_BYTES", 4096)
    rows = _many_rows_csv(3000, quoted_from).split("\n")
    rows = [rows[0]] + [f"{i},{i * 0.5},l" for i in range(1, 2500)] + ["1,2"] + rows[2501:]
    if quoted_from is not None:  # a quoted value with a line break before the bad row, past piece 1
        rows[1600] = '1600,800.0,"two\nlines"'
    _write(tmp_path / "in" / "bad.csv", "\n".join(rows))
    # The line counts rows (the documented assumption: no quoted value spans lines before it).
    with pytest.raises(ComponentError, match=r"bad\.csv:2501: expected 3 columns, got 2"):
        _run_csv(tmp_path, input_base=str(tmp_path / "in"))


def test_a_fifo_is_refused_by_name_without_being_opened(tmp_path):
    # Opening a FIFO waits for a writer for ever: the timeout turns a hang into a failure.
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "data.csv")
    code = (
        "import sys\n"
        "from sluice.components.example_gen import resolve_input\n"
        "from sluice.components.sdk import ComponentError\n"
        "try:\n"
        "    resolve_input('CsvExampleGen', sys.argv[1])\n"
        "except ComponentError as exc:\n"
        "    print(exc)\n"
    )
    for base in (tmp_path / "in", tmp_path / "in" / "data.csv"):
        done = subprocess.run([sys.executable, "-c", code, str(base)], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == (f"CsvExampleGen: {tmp_path / 'in' / 'data.csv'}: is a FIFO (named pipe), "
                                       "not a regular file; ExampleGen reads regular files only"), done.stderr


def test_a_device_is_refused_by_name_not_called_empty(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.csv").symlink_to("/dev/zero")
    for base in ("/dev/zero", str(tmp_path / "in")):
        with pytest.raises(ComponentError, match=r"/(zero|data\.csv): is a character device, not a regular file"):
            resolve_input("CsvExampleGen", base)


def test_one_long_line_is_header_only_not_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(file_checks, "HEAD_BYTES", 1024)  # the line runs far past the head
    path = _write(tmp_path / "in" / "bad.csv", "a" * 5000)
    with pytest.raises(ComponentError, match=rf"^{re.escape(str(path))}: has a header but no data rows "
                                             r"\(the file is one line of 5,000 bytes with no line end\)$"):
        sniff_csv_columns("CsvExampleGen", [InputFile(str(path), 0)])


def test_a_header_longer_than_a_sniffed_block_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(file_checks, "HEAD_BYTES", 1024)
    monkeypatch.setattr(eg_config, "SNIFF_BLOCK_BYTES", 2048)
    names = [f"column_{i}_{'x' * 40}" for i in range(100)]  # a header of about 5 KB
    path = _write(tmp_path / "in" / "wide.csv", ",".join(names) + "\n" + ",".join("1" for _ in names) + "\n")
    assert list(sniff_csv_columns("CsvExampleGen", [InputFile(str(path), 0)]).names) == names
