"""Tests of StatisticsGen: the Beam transforms, the sketches' fallbacks and the component."""

from __future__ import annotations

import math
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
from tensorflow_metadata.proto.v0 import statistics_pb2

from sluice.components.artifacts import Examples, ExampleStatistics, Schema
from sluice.components.sdk import ComponentError, ExecutionContext
from sluice.components.statistics_gen import StatisticsGen, generate_statistics, numeric, protos, transforms
from sluice.components.statistics_gen import order_statistics as ordering
from sluice.components.statistics_gen import read_ahead as reading
from sluice.components.statistics_gen import values as value_counts
from sluice.components.statistics_gen.transforms import ComputeStatistics, ReadParquetBatches

Type = statistics_pb2.FeatureNameStatistics
Histogram = statistics_pb2.Histogram


def _batches():
    first = pa.record_batch(
        {
            "age": pa.array([1, 2, None, 4, 0], pa.int64()),
            "score": pa.array([0.5, None, float("nan"), 2.5, 0.0], pa.float64()),
            "color": pa.array(["red", "blue", "red", None, "red"], pa.string()),
            "empty": pa.array([None] * 5, pa.int64()),
        }
    )
    second = pa.record_batch(
        {
            "age": pa.array([7, 8, 9], pa.int64()),
            "score": pa.array([1.0, 1.0, None], pa.float64()),
            "color": pa.array(["blue", "green", "red"], pa.large_string()),
            "empty": pa.array([None] * 3, pa.int64()),
        }
    )
    return [first, second]


def _features(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    assert len(stats.datasets) == 1
    return {"/".join(f.path.step): f for f in stats.datasets[0].features}


def test_compute_statistics_transform_matches_numpy():
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        stats = pipeline | beam.Create(_batches(), reshuffle=False) | ComputeStatistics(dataset_name="train")
        assert_that(stats | beam.Map(lambda s: s.datasets[0].num_examples), equal_to([8]))
        assert_that(stats, _check_small_statistics, label="statistics")


def _check_small_statistics(outputs):
    (stats,) = outputs
    dataset = stats.datasets[0]
    assert dataset.name == "train" and dataset.num_examples == 8
    features = _features(stats)
    assert set(features) == {"age", "score", "color", "empty"}

    age = features["age"]
    assert age.type == Type.INT
    values = np.array([1, 2, 4, 0, 7, 8, 9], dtype=float)
    common = age.num_stats.common_stats
    assert (common.num_non_missing, common.num_missing, common.tot_num_values) == (7, 1, 7)
    assert (common.min_num_values, common.max_num_values, common.avg_num_values) == (1, 1, 1.0)
    assert len(common.num_values_histogram.buckets) == 10
    assert age.num_stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert age.num_stats.std_dev == pytest.approx(values.std(), rel=1e-12)  # population std
    assert (age.num_stats.min, age.num_stats.max, age.num_stats.num_zeros) == (0, 9, 1)
    assert age.num_stats.median == 4
    standard, quantiles = age.num_stats.histograms
    assert standard.type == Histogram.STANDARD and quantiles.type == Histogram.QUANTILES
    assert len(standard.buckets) == 10 and len(quantiles.buckets) == 10
    assert standard.buckets[0].low_value == 0 and standard.buckets[-1].high_value == 9
    assert sum(b.sample_count for b in standard.buckets) == pytest.approx(7)
    assert sum(b.sample_count for b in quantiles.buckets) == pytest.approx(7)

    score = features["score"]
    assert score.type == Type.FLOAT
    present = np.array([0.5, 2.5, 0.0, 1.0, 1.0])  # NaN counts as present but not in moments
    assert score.num_stats.common_stats.num_non_missing == 6
    assert score.num_stats.common_stats.num_missing == 2
    assert score.num_stats.mean == pytest.approx(present.mean())
    assert score.num_stats.std_dev == pytest.approx(present.std())
    assert score.num_stats.histograms[0].num_nan == 1
    assert score.num_stats.num_zeros == 1

    color = features["color"]
    assert color.type == Type.STRING
    assert color.string_stats.common_stats.num_non_missing == 7
    assert color.string_stats.unique == 3
    assert [(v.value, v.frequency) for v in color.string_stats.top_values] == [("red", 4), ("blue", 2), ("green", 1)]
    assert [b.label for b in color.string_stats.rank_histogram.buckets] == ["red", "blue", "green"]
    assert color.string_stats.avg_length == pytest.approx((4 * 3 + 2 * 4 + 5) / 7)

    empty = features["empty"]
    assert empty.type == Type.INT
    assert empty.num_stats.common_stats.num_missing == 8
    assert not empty.num_stats.histograms


def test_combine_fn_is_mergeable():
    """Accumulators built on separate workers and merged equal one pass over all data."""
    rng = np.random.default_rng(1)
    values = rng.normal(100.0, 3.0, 3000)
    names = np.array(["a", "b", "c", "d"])[rng.integers(0, 4, 3000)]
    batches = [pa.record_batch({"x": values[i:i + 500], "s": names[i:i + 500]}) for i in range(0, 3000, 500)]
    fn = transforms.StatisticsCombineFn("d", frozenset())

    single = fn.create_accumulator()
    for batch in batches:
        single = fn.add_input(single, batch)
    parts = []
    for chunk in (batches[:2], batches[2:3], batches[3:]):
        acc = fn.create_accumulator()
        for batch in chunk:
            acc = fn.add_input(acc, batch)
        parts.append(fn.compact(acc))
    merged = fn.merge_accumulators(parts)

    one, many = _features(fn.extract_output(single)), _features(fn.extract_output(merged))
    for stat in ("mean", "std_dev", "min", "max"):
        assert getattr(many["x"].num_stats, stat) == pytest.approx(getattr(one["x"].num_stats, stat), rel=1e-12)
    assert many["x"].num_stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert many["x"].num_stats.std_dev == pytest.approx(values.std(), rel=1e-12)
    assert many["s"].string_stats.top_values == one["s"].string_stats.top_values
    assert abs(np.mean(values <= many["x"].num_stats.median) - 0.5) <= numeric.QUANTILES_EPSILON


def test_large_batches_use_summaries_within_the_stated_bound(monkeypatch):
    monkeypatch.setattr(numeric, "SUMMARY_THRESHOLD", 1000)
    monkeypatch.setattr(numeric, "SUMMARY_SIZE", 256)
    rng = np.random.default_rng(2)
    values = rng.lognormal(0.0, 1.0, 20000)
    fn = transforms.StatisticsCombineFn("d", frozenset())
    acc = fn.create_accumulator()
    for i in range(0, values.size, 5000):
        acc = fn.add_input(acc, pa.record_batch({"x": values[i:i + 5000]}))
    x = _features(fn.extract_output(acc))["x"].num_stats
    assert (x.min, x.max) == (values.min(), values.max())
    bound = numeric.QUANTILES_EPSILON + 2 / 256  # QUANTILES_RANK_BOUND at this SUMMARY_SIZE
    quantiles = x.histograms[1]
    for i, bucket in enumerate(quantiles.buckets):
        rank = np.mean(values <= bucket.high_value)
        assert abs(rank - (i + 1) / 10) <= bound, (i, rank)
    assert sum(b.sample_count for b in x.histograms[0].buckets) == pytest.approx(values.size)


def test_many_distinct_strings_switch_to_sketches(monkeypatch):
    monkeypatch.setattr(value_counts, "EXACT_VALUE_COUNTS_LIMIT", 50)
    values = [f"v{i}" for i in range(400)] + ["hot"] * 300 + ["warm"] * 100
    batches = [pa.record_batch({"s": pa.array(values[i:i + 100])}) for i in range(0, len(values), 100)]
    fn = transforms.StatisticsCombineFn("d", frozenset())
    left, right = fn.create_accumulator(), fn.create_accumulator()
    for i, batch in enumerate(batches):
        fn.add_input(left if i % 2 else right, batch)
    stats = _features(fn.extract_output(fn.merge_accumulators([left, right])))["s"].string_stats
    assert stats.common_stats.num_non_missing == 800
    assert abs(stats.unique - 402) <= 402 * 0.05  # KMV estimate
    assert [v.value for v in stats.top_values[:2]] == ["hot", "warm"]
    assert stats.top_values[0].frequency == pytest.approx(300, abs=800 / value_counts.MISRA_GRIES_BUCKETS + 1)


def test_mixed_column_types_are_rejected():
    fn = transforms.StatisticsCombineFn("d", frozenset())
    acc = fn.add_input(fn.create_accumulator(), pa.record_batch({"c": pa.array([1, 2])}))
    with pytest.raises(ComponentError, match="column 'c' has mixed types"):
        fn.add_input(acc, pa.record_batch({"c": pa.array(["a", "b"])}))
    # INT followed by FLOAT is promoted, as TFDV would see one FLOAT column.
    acc = fn.add_input(fn.create_accumulator(), pa.record_batch({"c": pa.array([1, 2])}))
    acc = fn.add_input(acc, pa.record_batch({"c": pa.array([0.5])}))
    c = _features(fn.extract_output(acc))["c"]
    assert c.type == Type.FLOAT and c.num_stats.mean == pytest.approx(3.5 / 3)


def test_unsupported_column_type_names_the_column():
    fn = transforms.StatisticsCombineFn("d", frozenset())
    with pytest.raises(ComponentError, match="column 'tags' has unsupported Arrow type"):
        fn.add_input(fn.create_accumulator(), pa.record_batch({"tags": pa.array([[[1]], [[2]]])}))


def test_list_columns_count_values_per_example_and_describe_the_flattened_values():
    """TFDV's stats of a multivalent feature: null rows missing, empty lists present with 0 values,
    int lists joined by float lists, all-empty batches (list<null>), merged across workers."""
    import pickle

    fn = transforms.StatisticsCombineFn("d", frozenset({"codes"}))
    batches = [
        pa.record_batch({"v": pa.array([[1, 2], None, []], pa.list_(pa.int64())),
                         "t": pa.array([["a", "b", "a"], [], None], pa.list_(pa.string())),
                         "codes": pa.array([[3, 3], [4], [3]], pa.large_list(pa.int64()))}),
        pa.record_batch({"v": pa.array([[], None], pa.list_(pa.null())),
                         "t": pa.array([None, ["c"]], pa.large_list(pa.large_string())),
                         "codes": pa.array([[5], [3]], pa.list_(pa.int32()))}),
        pa.record_batch({"v": pa.FixedSizeListArray.from_arrays(pa.array([0.5, None, 4.0, 5.0, 6.0, 7.0]), 3),
                         "t": pa.array([["b"], ["a", "a"]], pa.list_(pa.string())),
                         "codes": pa.array([None, [4, 4, 4]], pa.list_(pa.int64()))}),
    ]
    parts = []
    for batch in batches:  # one accumulator per batch, pickled as Beam would, then merged
        parts.append(pickle.loads(pickle.dumps(fn.compact(fn.add_input(fn.create_accumulator(), batch)))))
    features = _features(fn.extract_output(fn.merge_accumulators(parts)))
    v, t, codes = features["v"], features["t"], features["codes"]
    assert v.type == Type.FLOAT and t.type == Type.STRING and codes.type == Type.INT
    common = v.num_stats.common_stats
    assert (common.num_non_missing, common.num_missing, common.tot_num_values) == (5, 2, 8)
    assert (common.min_num_values, common.max_num_values) == (0, 3)
    assert common.avg_num_values == pytest.approx(8 / 5)
    assert sum(b.sample_count for b in common.num_values_histogram.buckets) == pytest.approx(5)
    assert common.num_values_histogram.buckets[-1].high_value == 3
    values = np.array([1, 2, 0.5, 4.0, 5.0, 6.0, 7.0])  # the null inside a list is a NaN, as TFDV reads it
    assert v.num_stats.mean == pytest.approx(values.mean()) and v.num_stats.std_dev == pytest.approx(values.std())
    assert (v.num_stats.min, v.num_stats.max) == (0.5, 7.0) and v.num_stats.histograms[0].num_nan == 1
    common = t.string_stats.common_stats
    assert (common.num_non_missing, common.tot_num_values, common.min_num_values, common.max_num_values) == (5, 7, 0, 3)
    assert [(x.value, x.frequency) for x in t.string_stats.top_values] == [("a", 4), ("b", 2), ("c", 1)]
    assert t.string_stats.avg_length == pytest.approx(1.0)
    # A categorical INT list: the values' top values (string stats), as TFDV.
    assert [(x.value, x.frequency) for x in codes.string_stats.top_values] == [("4", 4), ("3", 4), ("5", 1)]
    assert codes.string_stats.common_stats.tot_num_values == 9
    with pytest.raises(ComponentError, match="column 'v' has mixed types"):
        fn.add_input(fn.add_input(fn.create_accumulator(), batches[0]), pa.record_batch({"v": pa.array([1.0])}))


# --- reading and the component -------------------------------------------------


def _write_examples(root, tables: dict[str, list[pa.Table]]) -> Examples:
    for split, parts in tables.items():
        folder = os.path.join(root, f"Split-{split}")
        os.makedirs(folder, exist_ok=True)
        for i, table in enumerate(parts):
            pq.write_table(table, os.path.join(folder, f"part-{i:05d}-of-{len(parts):05d}.parquet"))
    return Examples(uri=str(root), split_names=list(tables))


@pytest.fixture(scope="module")
def penguins() -> pa.Table:
    import palmerpenguins

    return pa.Table.from_pandas(palmerpenguins.load_penguins(), preserve_index=False)


def test_read_parquet_batches_transform(tmp_path, penguins):
    examples = _write_examples(tmp_path, {"train": [penguins.slice(0, 200), penguins.slice(200)]})
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        batches = pipeline | ReadParquetBatches([os.path.join(examples.split_uri("train"), "*.parquet")], batch_size=64)
        assert_that(batches | beam.Map(lambda b: b.num_rows) | beam.CombineGlobally(sum), equal_to([344]))
        assert_that(batches | "Max" >> beam.Map(lambda b: b.num_rows) | "M" >> beam.CombineGlobally(max),
                    equal_to([64]), label="batched")


def test_component_writes_stats_report_and_metrics(tmp_path, penguins):
    examples = _write_examples(tmp_path / "examples", {
        "train": [penguins.slice(0, 250), penguins.slice(250)],
        "eval": [penguins.slice(0, 40)],
        "test": [penguins.slice(0, 10)],
    })
    examples.span = 3
    output = ExampleStatistics(uri=str(tmp_path / "stats"))
    os.makedirs(output.uri)
    ctx = ExecutionContext()
    generate_statistics(examples=examples, statistics=output, exclude_splits=["test"], ctx=ctx)

    assert output.split_names == ["train", "eval"] and output.span == 3
    assert sorted(os.listdir(output.uri)) == ["Split-eval", "Split-train", "report.html"]
    assert ctx.metrics == {"num_examples_train": 344.0, "num_examples_eval": 40.0}
    with open(os.path.join(output.split_uri("train"), "FeatureStats.pb"), "rb") as handle:
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read())
    assert stats.datasets[0].name == "train" and stats.datasets[0].num_examples == 344
    features = _features(stats)
    assert {name: f.type for name, f in features.items()} == {
        "species": Type.STRING, "island": Type.STRING, "sex": Type.STRING, "year": Type.INT,
        "bill_length_mm": Type.FLOAT, "bill_depth_mm": Type.FLOAT, "flipper_length_mm": Type.FLOAT,
        "body_mass_g": Type.FLOAT,
    }
    assert features["sex"].string_stats.common_stats.num_missing == 11
    assert features["body_mass_g"].num_stats.mean == pytest.approx(
        np.nanmean(penguins.column("body_mass_g").to_numpy(zero_copy_only=False)), rel=1e-12)

    report = Path(output.path("report.html")).read_text()
    assert "<svg" in report and "body_mass_g" in report and "Adelie" in report
    assert "<script src" not in report and "<link" not in report  # self-contained
    assert set(re.findall(r"https?://[^\"\s<]+", report)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert str(tmp_path) not in report
    assert output.report_files() == {"statistics": output.path("report.html")}


def test_schema_marks_categorical_int_features(tmp_path, penguins):
    examples = _write_examples(tmp_path / "examples", {"train": [penguins]})
    schema = Schema(uri=str(tmp_path / "schema"))
    os.makedirs(schema.uri)
    with open(schema.file, "w") as handle:
        handle.write('feature { name: "year" type: INT int_domain { is_categorical: true } }\n')
    output = ExampleStatistics(uri=str(tmp_path / "stats"))
    generate_statistics(examples=examples, statistics=output, schema=schema, ctx=ExecutionContext())
    with open(os.path.join(output.split_uri("train"), "FeatureStats.pb"), "rb") as handle:
        year = _features(statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read()))["year"]
    assert year.type == Type.INT
    assert year.string_stats.unique == 3
    assert [(v.value, v.frequency) for v in year.string_stats.top_values] == [
        ("2009", 120), ("2008", 114), ("2007", 110)]


def test_bad_inputs_raise_one_line_component_errors(tmp_path, penguins):
    examples = _write_examples(tmp_path / "examples", {"train": [penguins]})
    output = ExampleStatistics(uri=str(tmp_path / "stats"))
    with pytest.raises(ComponentError, match=r"'exclude_splits' names unknown splits \['nope'\]"):
        generate_statistics(examples=examples, statistics=output, exclude_splits=["nope"])

    bad = os.path.join(examples.split_uri("train"), "part-00001-of-00002.parquet")
    with open(bad, "wb") as handle:
        handle.write(b"this is not parquet")
    with pytest.raises(ComponentError) as error:
        generate_statistics(examples=examples, statistics=output, ctx=ExecutionContext())
    assert f"cannot read Parquet file {bad}" in str(error.value) and "\n" not in str(error.value)

    with pytest.raises(ComponentError, match="no files match .*Split-eval"):
        generate_statistics(examples=Examples(uri=examples.uri, split_names=["eval"]), statistics=output)
    with pytest.raises(ComponentError, match="file_format 'tfrecord' is not supported"):
        generate_statistics(examples=Examples(uri=examples.uri, split_names=["train"], file_format="tfrecord"),
                            statistics=output)
    schema = Schema(uri=str(tmp_path))
    with open(schema.file, "w") as handle:
        handle.write("feature { nme: 1 }")
    with pytest.raises(ComponentError, match="invalid schema .*schema.pbtxt"):
        generate_statistics(examples=examples, statistics=output, schema=schema)


def test_component_definition():
    assert StatisticsGen.name == "StatisticsGen"
    assert set(StatisticsGen.inputs) == {"examples", "schema", "baseline_statistics"}
    assert StatisticsGen.inputs["schema"].optional and StatisticsGen.inputs["baseline_statistics"].optional
    assert set(StatisticsGen.outputs) == {"statistics"}
    assert StatisticsGen.parameters["exclude_splits"].default == []


def test_module_import_is_light():
    code = (
        "import sys, sluice.components.statistics_gen\n"
        "heavy = [m for m in ('apache_beam', 'tensorflow', 'pyarrow', 'mlflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_split_and_escaped_report_values(tmp_path):
    examples = _write_examples(tmp_path / "examples", {
        "train": [pa.table({"s": pa.array(["<script>x</script>", "a"]), "n": pa.array([1, 2])})],
        "eval": [pa.table({"s": pa.array([], pa.string()), "n": pa.array([], pa.int64())})],
    })
    output = ExampleStatistics(uri=str(tmp_path / "stats"))
    ctx = ExecutionContext()
    generate_statistics(examples=examples, statistics=output, ctx=ctx)
    assert ctx.metrics == {"num_examples_train": 2.0, "num_examples_eval": 0.0}
    report = Path(output.path("report.html")).read_text()
    assert "&lt;script&gt;x&lt;/script&gt;" in report and "<script>x" not in report
    assert report.count("<script>") == 1  # the page's own sorting script only
    # The empty eval split: 0 examples, and its statistics print as dashes, not zeros.
    assert re.search(r"eval</td><td>0</td><td>\d+</td>", report)


# --- the fast path: whole files folded into accumulators -------------------------


def test_parquet_statistics_transform_matches_the_batch_path(tmp_path, penguins):
    examples = _write_examples(tmp_path, {"train": [penguins.slice(0, 200), penguins.slice(200)],
                                          "eval": [penguins.slice(0, 40)]})
    patterns = {split: [os.path.join(examples.split_uri(split), "*.parquet")] for split in ("train", "eval")}
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        fast = pipeline | transforms.ComputeParquetStatistics(patterns, batch_size=64)
        slow = (pipeline | ReadParquetBatches(patterns["train"], batch_size=64)
                | ComputeStatistics(dataset_name="train"))
        assert_that(fast | beam.MapTuple(lambda split, s: (split, s.datasets[0].num_examples)),
                    equal_to([("train", 344), ("eval", 40)]))
        assert_that((fast | beam.Filter(lambda pair: pair[0] == "train") | beam.Values(),
                     slow) | beam.Flatten() | beam.combiners.ToList(), _check_same_statistics, label="same")


def _check_same_statistics(outputs):
    ((fast, slow),) = outputs  # one list of the two protos
    first, second = _features(fast), _features(slow)
    assert set(first) == set(second)
    for name, feature in first.items():
        other = second[name]
        assert feature.type == other.type, name
        kind = feature.WhichOneof("stats")
        mine, theirs = getattr(feature, kind), getattr(other, kind)
        assert mine.common_stats == theirs.common_stats, name
        if kind == "num_stats":
            for stat in ("mean", "std_dev", "min", "max", "num_zeros"):
                assert getattr(mine, stat) == pytest.approx(getattr(theirs, stat), rel=1e-12), (name, stat)
        else:
            assert mine.top_values == theirs.top_values and mine.avg_length == pytest.approx(theirs.avg_length)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # moments of inf - inf
def test_nulls_nans_infinities_and_booleans_are_counted_apart():
    batch = pa.record_batch({
        "f": pa.array([None, float("nan"), 0.0, float("inf"), -1.5, None, float("-inf"), 2.0, float("nan")]),
        "i": pa.array([None, 3, 0, 0, None, 7, 1, None, 2], pa.int64()),
        "b": pa.array([True, None, False, True, None, True, False, True, None]),
        "s": pa.array(["x", None, "yy", "x", None, None, "x", "", "yy"]),
        # How the fast path reads strings; a dictionary may repeat a value ("x" twice here).
        "d": pa.DictionaryArray.from_arrays(pa.array([0, None, 1, 2, None, None, 2, 3, 1], pa.int32()),
                                            pa.array(["x", "yy", "x", ""])),
    })
    fn = transforms.StatisticsCombineFn("d", frozenset())
    features = _features(fn.extract_output(fn.add_input(fn.create_accumulator(), batch)))
    f = features["f"].num_stats
    assert f.common_stats.num_non_missing == 7 and f.histograms[0].num_nan == 2
    assert (f.min, f.max, f.num_zeros) == (float("-inf"), float("inf"), 1)
    i = features["i"].num_stats
    assert i.common_stats.num_non_missing == 6 and i.histograms[0].num_nan == 0
    assert (i.min, i.max, i.num_zeros, i.mean) == (0, 7, 2, pytest.approx(13 / 6))
    b = features["b"]
    assert b.type == Type.INT and b.num_stats.mean == pytest.approx(4 / 6) and b.num_stats.num_zeros == 2
    s = features["s"].string_stats
    assert s.common_stats.num_non_missing == 6 and s.unique == 3
    assert [(v.value, v.frequency) for v in s.top_values] == [("x", 3), ("yy", 2), ("", 1)]
    assert s.avg_length == pytest.approx(7 / 6)
    assert features["d"].type == Type.STRING and features["d"].string_stats == s


def test_dictionary_strings_switch_to_sketches(monkeypatch):
    monkeypatch.setattr(value_counts, "EXACT_VALUE_COUNTS_LIMIT", 5)
    values = pa.array([f"v{i}" for i in range(20)] + ["hot"] * 30 + [None] * 5).dictionary_encode()
    fn = transforms.StatisticsCombineFn("d", frozenset())
    acc = fn.add_input(fn.create_accumulator(), pa.record_batch({"s": values.slice(0, 25)}))
    acc = fn.add_input(acc, pa.record_batch({"s": values.slice(25)}))
    stats = _features(fn.extract_output(acc))["s"].string_stats
    assert stats.common_stats.num_non_missing == 50 and stats.top_values[0].value == "hot"
    assert stats.avg_length == pytest.approx((10 * 2 + 10 * 3 + 30 * 3) / 50)


def test_read_ahead_decodes_pieces_in_order_within_its_limit_and_hands_errors_to_their_piece(tmp_path):
    import time

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"n": pa.array(range(100))}), path, row_group_size=10)  # 10 row groups
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    read_ahead = reading.ReadAhead(limit=2)
    try:
        first = read_ahead.add(str(path), [0, 1, 2, 3, 4], 10)  # 5 batches of 10 rows
        bad = read_ahead.add(str(broken), None, 10)
        last = read_ahead.add(str(path), [5, 6, 7, 8, 9], 10)
        time.sleep(0.2)  # nothing summarized yet: the reader stops at its limit
        assert read_ahead.waiting == 2
        seen = [batch.column("n").to_pylist() for batch in read_ahead.batches(first)]
        assert seen == [list(range(i, i + 10)) for i in range(0, 50, 10)]
        with pytest.raises(ComponentError, match="cannot read Parquet file .*broken.parquet"):
            list(read_ahead.batches(bad))
        assert sum(batch.num_rows for batch in read_ahead.batches(last)) == 50  # the next piece still comes
        assert read_ahead.waiting == 0
    finally:
        read_ahead.stop()
    assert not read_ahead.thread.is_alive()


def test_stopping_the_read_ahead_ends_the_pieces_not_read_with_an_error(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"n": pa.array(range(100))}), path, row_group_size=10)
    read_ahead = reading.ReadAhead(limit=1)
    started = read_ahead.add(str(path), None, 10)
    waiting = read_ahead.add(str(path), None, 10)
    batches = read_ahead.batches(started)
    assert next(batches).num_rows == 10  # one batch taken; the reader waits to decode the next
    read_ahead.stop()  # e.g. another piece failed: the bundle gives up
    with pytest.raises(ComponentError, match="reading stopped"):
        list(batches)
    with pytest.raises(ComponentError, match="reading stopped"):
        list(read_ahead.batches(waiting))


def _reference_equi_width_counts(boundaries, cumulative, finite_min, finite_max):
    """TFDV's loop (quantiles_util.py) for finite data, the vectorized histogram's reference."""
    low, high = boundaries[:-1], boundaries[1:]
    counts = np.diff(cumulative.astype(np.float64))
    i = 0
    while i < low.size:
        j = i + 1
        while j < low.size and high[i] == high[j]:
            j += 1
        if j > i + 1:
            counts[i:j] = counts[i:j].sum() / (j - i)
        i = j
    same = 0
    while same < low.size and low[0] == low[same] and high[0] == high[same]:
        same += 1
    if same:
        counts[0:same] += cumulative[0] / same
    edges = np.linspace(finite_min, finite_max, protos.NUM_HISTOGRAM_BUCKETS + 1)
    result = []
    for e in range(edges.size - 1):
        lo, hi, total = edges[e], edges[e + 1], 0.0
        for b_low, b_high, count in zip(low, high, counts):
            total += _reference_bucket_share(e, lo, hi, b_low, b_high, count)
        result.append(total)
    return result


def _reference_bucket_share(e, lo, hi, b_low, b_high, count):
    """The part of a quantiles bucket's ``count`` that falls into histogram bucket ``e`` (``lo``..``hi``)."""
    if b_high == b_low == lo:
        return count if e == 0 else 0.0
    if b_high < lo or b_low > hi:
        return 0.0
    if lo <= b_low and hi >= b_high:
        return count
    if lo <= b_low:
        return (hi - b_low) / (b_high - b_low) * count
    if hi >= b_high:
        return (b_high - lo) / (b_high - b_low) * count
    return (hi - lo) / (b_high - b_low) * count


@pytest.mark.parametrize("values", [
    np.random.default_rng(3).normal(0, 1, 3000),
    np.random.default_rng(4).integers(0, 4, 3000).astype(float),  # many equal boundaries
    np.concatenate([np.zeros(1500), np.random.default_rng(5).lognormal(0, 2, 1500)]),
])
def test_vectorized_histograms_match_tfdv_loop(values):
    from tfx_bsl import sketches

    sketch = sketches.QuantilesSketch(numeric.QUANTILES_EPSILON, 1 << 32, 1)
    sketch.AddValues(pa.array(values))
    boundaries, cumulative = sketch.GetQuantilesAndCumulativeWeights(1000)
    boundaries = boundaries.flatten().to_numpy(zero_copy_only=False)
    cumulative = cumulative.flatten().to_numpy(zero_copy_only=False)
    histogram = protos._equi_width_histogram(
        boundaries, cumulative, values.min(), values.max(), 0, statistics_pb2)
    expected = _reference_equi_width_counts(boundaries, cumulative, values.min(), values.max())
    assert [b.sample_count for b in histogram.buckets] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_files_of_a_bundle_are_summarized_concurrently_each_emitted_once(tmp_path, penguins, monkeypatch):
    # One file per split: no merge step, every file's summary is a split's statistics. With at
    # most 2 files in flight, the bundle's first results are emitted before the bundle ends.
    monkeypatch.setattr(reading, "FILES_IN_FLIGHT", 2)
    sizes = {f"s{i}": 10 * (i + 1) for i in range(5)}
    examples = _write_examples(tmp_path, {split: [penguins.slice(0, size)] for split, size in sizes.items()})
    patterns = {split: [os.path.join(examples.split_uri(split), "*.parquet")] for split in sizes}
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        stats = pipeline | transforms.ComputeParquetStatistics(patterns, batch_size=16)
        assert_that(stats | beam.MapTuple(lambda split, s: (split, s.datasets[0].num_examples)),
                    equal_to(list(sizes.items())))


@pytest.mark.parametrize("files_per_element", [16, 1])
def test_a_split_of_two_files_is_merged_even_beside_a_split_with_none(tmp_path, penguins, monkeypatch,
                                                                      files_per_element):
    # Two files and two splits: counting files against splits would skip the merge and emit
    # split "a" twice, once per file. Up to FILES_PER_ELEMENT files a split's files are one
    # element; beyond, one element per file, merged by a combine.
    monkeypatch.setattr(transforms, "FILES_PER_ELEMENT", files_per_element)
    examples = _write_examples(tmp_path, {"a": [penguins.slice(0, 10), penguins.slice(10, 20)]})
    patterns = {"a": [os.path.join(examples.split_uri("a"), "*.parquet")], "b": []}
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        stats = pipeline | transforms.ComputeParquetStatistics(patterns, batch_size=16)
        assert_that(stats | beam.MapTuple(lambda split, s: (split, s.datasets[0].num_examples)),
                    equal_to([("a", 30)]))


def test_a_big_file_is_summarized_in_pieces_of_whole_row_groups(tmp_path, penguins, monkeypatch):
    folder = tmp_path / "Split-train"
    folder.mkdir()
    path = folder / "part-00000-of-00001.parquet"
    pq.write_table(penguins, path, row_group_size=20)  # 344 rows: 17 groups of 20, then 4
    # Every row group once, in order; the 44-row tail (< half a piece) joins the last piece.
    assert reading.file_pieces(str(path), 100) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], list(range(10, 18))]
    assert reading.file_pieces(str(path), 1000) == [None]  # under 1.5 pieces: whole
    monkeypatch.setattr(reading, "PIECE_ROWS", 100)
    patterns = [str(folder / "*.parquet")]
    with BeamTestPipeline(runner=FnApiRunner()) as pipeline:
        pieces = pipeline | transforms.ComputeParquetStatistics({"train": patterns}, batch_size=16)
        whole = pipeline | ReadParquetBatches(patterns, batch_size=64) | ComputeStatistics(dataset_name="train")
        assert_that(pieces | beam.MapTuple(lambda split, s: (split, s.datasets[0].num_examples)),
                    equal_to([("train", 344)]))
        assert_that((pieces | beam.Values(), whole) | beam.Flatten() | beam.combiners.ToList(),
                    _check_same_statistics, label="same")


def test_a_big_files_pieces_are_merged_as_they_are_done_not_held_to_the_end(tmp_path, penguins, monkeypatch):
    # 34 pieces of one split: each piece's accumulator is merged in file order once done, so only
    # the pieces in flight are alive at any time (all 34 were, until the last was done), and the
    # statistics are those of one left fold over the pieces in order.
    import threading
    import weakref

    path = tmp_path / "rows.parquet"
    pq.write_table(penguins, path, row_group_size=10)
    monkeypatch.setattr(reading, "PIECE_ROWS", 10)
    alive, most, lock = [0], [0], threading.Lock()

    def gone():
        with lock:
            alive[0] -= 1

    class Counted(reading.DatasetAccumulator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with lock:
                alive[0] += 1
                most[0] = max(most[0], alive[0])
            weakref.finalize(self, gone)

    monkeypatch.setattr(reading, "DatasetAccumulator", Counted)
    fn = transforms.SummarizeFilesFn(16, frozenset())
    fn.start_bundle()
    emitted = list(fn.process(("train", (str(path),)))) + [v.value for v in fn.finish_bundle()]
    assert len(reading.file_pieces(str(path), 10)) == 34
    assert [(split, merged.num_examples) for split, merged in emitted] == [("train", 344)]
    assert 1 <= most[0] <= 10  # those being summarized, the merge, a few done ahead of an earlier one

    def summaries():  # merging changes the first piece: each fold gets its own
        return [transforms.StatisticsCombineFn("train", frozenset()).add_input(reading.DatasetAccumulator(), batch)
                for batch in penguins.to_batches(max_chunksize=100)]

    one_by_one, pieces = reading.InOrderMerge(), summaries()
    for index in (2, 0, 3, 1):  # done out of order: merged in order all the same
        one_by_one.add(index, pieces[index])
    merged = one_by_one.result(4)
    assert merged.num_examples == 344
    in_order = reading.compact(reading.merge_datasets(summaries()))
    assert transforms.to_statistics_proto(merged, "train") == transforms.to_statistics_proto(in_order, "train")


def _rank_errors(x, ranks, got):
    """How far each returned value's ranks in sorted ``x`` lie from the rank asked for."""
    ordered = np.sort(x)
    low = np.searchsorted(ordered, got, side="left")
    high = np.searchsorted(ordered, got, side="right") - 1
    return np.maximum(0, np.maximum(low - ranks, ranks - high))


@pytest.mark.parametrize("name", ["uniform", "lognormal", "few ints", "outliers", "many zeros", "ulp apart",
                                  "infinities", "huge range", "negative pareto"])
def test_order_statistics_are_data_values_within_the_slack(name):
    rng = np.random.default_rng(3)
    n = 40_000
    x = {
        "uniform": rng.random(n),
        "lognormal": rng.lognormal(0, 3, n),
        "few ints": rng.integers(0, 24, n).astype(float),
        "outliers": np.concatenate([rng.integers(500, 5000, n - 10) / 100, np.full(10, 1e6)]),
        "many zeros": np.concatenate([np.zeros(n // 2), rng.random(n // 2)]),
        "ulp apart": 41.88 + rng.integers(0, 3, n) * 1e-14,
        "infinities": np.concatenate([rng.random(n - 4), [np.inf, np.inf, -np.inf, -np.inf]]),
        "huge range": np.concatenate([rng.random(n - 2) * 1e308, [-1e308, 1e308]]),
        "negative pareto": -rng.pareto(0.5, n),
    }[name]
    rng.shuffle(x)
    ranks = np.linspace(0, n - 1, numeric.SUMMARY_SIZE).round().astype(np.int64)
    slack = n // numeric.SUMMARY_SIZE
    got = ordering.order_statistics(x, ranks, slack)
    assert np.isin(got, x).all()  # values of the data, never interpolated
    assert _rank_errors(x, ranks, got).max() < slack
    exact = ordering.order_statistics(x, ranks, 0)  # no slack: every bucket refined or sorted
    assert np.array_equal(exact, np.sort(x)[ranks])


def _numeric_accumulator(batches, counting: bool):
    accumulator = numeric.NumericAccumulator("FLOAT")
    accumulator.counting = counting
    for batch in batches:
        accumulator.add(batch if isinstance(batch, pa.Array) else pa.array(batch, from_pandas=True))
    return accumulator


def test_value_counts_and_value_by_value_give_the_same_statistics():
    rng = np.random.default_rng(5)
    # Prices in cents (few distinct values per batch), with nulls and zeros.
    values = rng.integers(0, 3000, 60_000) / 100
    values[rng.random(values.size) < 0.05] = np.nan  # from_pandas: NaN becomes null here
    batches = [values[i:i + 20_000] for i in range(0, values.size, 20_000)]
    counted, direct = _numeric_accumulator(batches, True), _numeric_accumulator(batches, False)
    assert counted.counting  # ~3000 distinct values in 20k rows: still counting
    for field in ("num_non_missing", "num_nan", "count", "num_zeros", "min", "max", "finite_min", "finite_max",
                  "num_pos_inf"):
        assert getattr(counted, field) == getattr(direct, field), field
    present = values[~np.isnan(values)]
    assert counted.count == present.size
    assert counted.mean == pytest.approx(present.mean(), rel=1e-12)
    assert direct.mean == pytest.approx(present.mean(), rel=1e-12)
    assert counted.m2 == pytest.approx(direct.m2, rel=1e-9)
    for accumulator in (counted, direct):
        boundaries = accumulator.quantiles.GetQuantilesAndCumulativeWeights(100)[0].flatten()
        median = protos._median(boundaries.to_numpy(zero_copy_only=False))
        assert abs(np.mean(present <= median) - 0.5) <= numeric.QUANTILES_RANK_BOUND
    # Infinities and NaNs (not nulls) are counted apart the same way.
    odd = [np.array([1.0, np.inf, -np.inf, 0.0, 2.0, np.inf]), np.array([3.0, -np.inf])]
    counted = _numeric_accumulator([pa.array(b) for b in odd], True)
    direct = _numeric_accumulator([pa.array(b) for b in odd], False)
    for field in ("num_non_missing", "count", "num_zeros", "min", "max", "finite_min", "finite_max", "num_pos_inf"):
        assert getattr(counted, field) == getattr(direct, field), field
    assert (counted.finite_min, counted.finite_max, counted.num_pos_inf) == (0.0, 3.0, 2)


def test_a_big_batch_of_mostly_distinct_values_stops_the_counting():
    rng = np.random.default_rng(6)
    small = _numeric_accumulator([rng.random(1000)], True)
    assert small.counting  # a small batch is no evidence: its values are bound to be distinct
    big = _numeric_accumulator([rng.random(numeric.SUMMARY_THRESHOLD + 1), rng.integers(0, 3, 100)], True)
    assert not big.counting
    assert big.num_non_missing == numeric.SUMMARY_THRESHOLD + 101


def test_few_distinct_values_give_exact_quantiles():
    hours = np.random.default_rng(7).integers(0, 24, 100_000)
    fn = transforms.StatisticsCombineFn("d", frozenset())
    acc = fn.create_accumulator()
    for i in range(0, hours.size, 25_000):
        acc = fn.add_input(acc, pa.record_batch({"hour": pa.array(hours[i:i + 25_000])}))
    stats = _features(fn.extract_output(acc))["hour"].num_stats
    assert stats.median == np.sort(hours)[hours.size // 2]
    quantiles = stats.histograms[1]
    for i, bucket in enumerate(quantiles.buckets[:-1]):
        # Each boundary is a value whose ranks span (i + 1) / 10 of the rows, as sorting would find.
        below, through = np.mean(hours < bucket.high_value), np.mean(hours <= bucket.high_value)
        assert below - numeric.QUANTILES_EPSILON <= (i + 1) / 10 <= through + numeric.QUANTILES_EPSILON


def test_a_sample_of_the_batch_decides_whether_to_count_it():
    rng = np.random.default_rng(8)
    n = 131_072
    prices = pa.array(rng.choice(rng.integers(0, 100_000, 3000) / 100, n))  # 3000 distinct values
    coordinates = pa.array(41.8 + rng.random(n) / 10)  # all distinct
    with_nulls = pa.array(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 50, n) / 2), from_pandas=True)
    assert with_nulls.null_count  # the sample is then taken by pyarrow, nulls left out
    # Mostly distinct at the head, few values over the whole batch: the strided sample sees the batch.
    head_distinct = pa.array(np.concatenate([rng.random(20_000), rng.integers(0, 10, n - 20_000)]))
    assert numeric._looks_few_valued(numeric._strided_sample(prices))
    assert numeric._looks_few_valued(numeric._strided_sample(with_nulls))
    assert numeric._looks_few_valued(numeric._strided_sample(head_distinct))
    assert not numeric._looks_few_valued(numeric._strided_sample(coordinates))
    for values, counted in ((prices, True), (coordinates, False)):
        accumulator = _numeric_accumulator([values], True)
        assert accumulator.counting == counted  # counted batches keep counting; distinct ones stop it


def test_small_integers_and_codes_count_the_same_with_and_without_nulls():
    rng = np.random.default_rng(9)
    values = rng.integers(1000, 1024, 50_000)
    dense = _numeric_accumulator([pa.array(values)], True)
    nulls = _numeric_accumulator([pa.array(np.append(values, 0), mask=np.append(np.zeros(values.size, bool), True))],
                                 True)
    for field in ("count", "num_non_missing", "min", "max", "mean", "m2", "num_zeros"):
        assert getattr(dense, field) == pytest.approx(getattr(nulls, field), rel=1e-12), field
    assert nulls.num_non_missing == values.size
    codes = pa.array(rng.integers(0, 7, 1000), pa.int32())
    expected = np.bincount(codes.to_numpy(), minlength=9)
    assert value_counts.code_counts(codes, 9).tolist() == expected.tolist()
    with_null = pa.concat_arrays([codes, pa.array([None], pa.int32())])
    assert value_counts.code_counts(with_null, 9).tolist() == expected.tolist()


def test_summary_ranks_are_remembered_read_only_and_span_the_batch():
    ranks = numeric._summary_ranks(131_072, 2048)
    assert ranks is numeric._summary_ranks(131_072, 2048)
    assert (ranks[0], ranks[-1], ranks.size) == (0, 131_071, 2048)
    assert np.array_equal(ranks, np.linspace(0, 131_071, 2048).round().astype(np.int64))
    with pytest.raises(ValueError):
        ranks[0] = 1


def _counted_by_hashing(array):
    """The accumulator ``pc.value_counts`` gives for ``array`` (the path before decimals were counted)."""
    import pyarrow.compute as pc

    accumulator = numeric.NumericAccumulator("FLOAT")
    accumulator.num_non_missing = len(array) - array.null_count
    accumulator._add_distinct(pc.value_counts(array))
    return accumulator


def test_decimals_are_counted_in_units_of_their_last_place_exactly():
    rng = np.random.default_rng(10)
    n = 131_072
    cases = {
        "prices": rng.integers(0, 8_000, n) / 100,  # two places, zeros among them
        "miles with nulls": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 20_000, n) / 10),
        "negative thousandths": rng.integers(-5_000, 5_000, n) / 1000,
        "whole floats": rng.integers(-50, 50, n).astype(np.float64),
    }
    for label, values in cases.items():
        array = pa.array(values, from_pandas=True)  # NaN -> null
        assert numeric._decimal_scale(array.drop_null().to_numpy()) is not None, label
        decimals = numeric.NumericAccumulator("FLOAT")
        decimals.add(array)
        assert decimals.counting, label
        hashed = _counted_by_hashing(array)
        for field in ("num_non_missing", "num_nan", "count", "num_zeros", "min", "max", "finite_min", "finite_max",
                      "mean", "m2"):
            assert getattr(decimals, field) == getattr(hashed, field), (label, field)
        for sketch in (decimals.quantiles, hashed.quantiles):
            sketch.Compact()
        ours, theirs = (s.GetQuantilesAndCumulativeWeights(100) for s in (decimals.quantiles, hashed.quantiles))
        assert ours[0].equals(theirs[0]) and ours[1].equals(theirs[1]), label


def test_floats_that_are_not_few_place_decimals_are_not_counted_as_decimals():
    rng = np.random.default_rng(11)
    n = 50_000
    cents = rng.integers(0, 3000, n) / 100
    cases = {
        "nine places": 41.8 + rng.integers(0, 10**9, n) / 1e10,
        "sums of tenths": np.full(n, 0.1 + 0.2),  # 0.30000000000000004: not a decimal of a few places
        "a negative zero": np.append(cents[:-1], -0.0),  # would come back as 0.0
        "a NaN": np.append(cents[:-1], np.nan),
        "an infinity": np.append(cents[:-1], np.inf),
        "a wide range": np.append(cents[:-1], 1e7),  # 10^9 cents apart
    }
    for label, values in cases.items():
        accumulator = numeric.NumericAccumulator("FLOAT")
        array = pa.array(values)
        assert not accumulator._add_decimals(array, n, numeric._strided_sample(array)), label
        assert accumulator.count == 0 and accumulator.quantiles is None, label  # nothing added
    assert numeric._decimal_scale(cents[:2048]) == 100.0
    assert numeric._decimal_scale(np.array([1.5, 2.0])) == 10.0
    assert numeric._decimal_scale(np.array([], np.float64)) is None
    single = pa.array(rng.integers(0, 3000, n) / 100, pa.float32())  # 0.1 in float32 is not 1 / 10
    from_single = numeric.NumericAccumulator("FLOAT")
    from_single.add(single)
    hashed = _counted_by_hashing(single)
    assert (from_single.min, from_single.max, from_single.mean) == (hashed.min, hashed.max, hashed.mean)
    negative_zero = numeric.NumericAccumulator("FLOAT")
    negative_zero.add(pa.array(np.array([-0.0, -0.0, 1.5] * 100)))
    assert math.copysign(1.0, negative_zero.min) == -1.0  # counted by hashing: -0.0 kept


def test_order_statistics_get_about_half_as_many_buckets_as_values_within_bounds():
    assert ordering._grid_buckets(131_072) == 65_536
    assert ordering._grid_buckets(131_050) == 65_536  # a few nulls do not halve it
    assert ordering._grid_buckets(60_000) == 32_768
    assert ordering._grid_buckets(20_000) == ordering.MIN_GRID_BUCKETS
    assert ordering._grid_buckets(10_000_000) == ordering.GRID_BUCKETS


def test_a_mostly_null_batch_gives_the_statistics_of_its_values():
    rng = np.random.default_rng(12)
    values = rng.integers(17031010100, 17031980100, 100_000).astype(np.float64)
    values[rng.random(values.size) < 0.97] = np.nan  # from_pandas: NaN becomes null
    sparse = pa.array(values, from_pandas=True)
    assert sparse.null_count > len(sparse) // 2
    from_sparse = _numeric_accumulator([sparse], True)
    from_values = _numeric_accumulator([sparse.drop_null()], True)
    assert from_sparse.num_non_missing == from_values.num_non_missing == len(sparse) - sparse.null_count
    for field in ("num_nan", "count", "num_zeros", "min", "max", "mean", "m2"):
        assert getattr(from_sparse, field) == getattr(from_values, field), field
