"""Parity of StatisticsGen with real TFDV 1.16.1 (run in a side venv, see tests/oracle/tfdv_env.py).

Both sides get the same typed data: our Examples Parquet file is what the
oracle feeds TFDV (each column as a singleton list array, TFDV's own scalar
representation), or, for the CSV case, TFDV reads the CSV with pandas
(``generate_statistics_from_dataframe``) and we read Parquet written from the
same pandas frame.

List columns (list, large_list, fixed_size_list) are fed to TFDV as list arrays:
their counts per example are exact, their numeric stats and quantiles are those of
the flattened values, checked as scalar values are.

Compared per feature: type; exact counts (num_non_missing, num_missing,
tot_num_values, num values and their histogram, num_zeros, unique, top values,
rank histogram); mean, std_dev, min, max and avg_length within 1e-6 relative;
quantiles (QUANTILES histogram boundaries and median) within the sketch's rank
error bound: a reported p-quantile has a true rank within
``QUANTILES_RANK_BOUND`` = 0.01 + 2/2048 of p (TFDV's own bound is eps = 0.01;
we check TFDV's boundaries against the same data as a control). Standard
histogram edges must match and counts agree within that bound. Finally our
FeatureStats.pb must load with ``tfdv.load_stats_binary`` /
``tfdv.load_statistics`` and give TFDV the same inferred schema as TFDV's own
statistics.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from sluice.components import statistics_gen
from sluice.components.artifacts import Examples, ExampleStatistics
from sluice.components.sdk import ExecutionContext
from sluice.components.tfdv import infer_schema, schema_to_text
from tests.oracle import tfdv_env
from tests.oracle.tfdv_lists import list_table

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TAXI_CSV = DATA / "chicago_taxi" / "data.csv"
RANK_BOUND = statistics_gen.QUANTILES_RANK_BOUND

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tfdv_python():
    return tfdv_env.require_tfdv()


def _load(path) -> statistics_pb2.DatasetFeatureStatistics:
    with open(path, "rb") as handle:
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read())
    assert len(stats.datasets) == 1
    return stats.datasets[0]


def _run_ours(table: pa.Table, root: Path) -> tuple[Path, statistics_pb2.DatasetFeatureStatistics]:
    split_dir = root / "examples" / "Split-train"
    split_dir.mkdir(parents=True)
    pq.write_table(table, split_dir / "part-00000-of-00001.parquet")
    output = ExampleStatistics(uri=str(root / "stats"))
    os.makedirs(output.uri)
    statistics_gen.generate_statistics(
        examples=Examples(uri=str(root / "examples"), split_names=["train"]), statistics=output, ctx=ExecutionContext()
    )
    pb = Path(output.split_uri("train")) / statistics_gen.FEATURE_STATS_FILE
    return pb, _load(pb)


def _run_tfdv(source: Path, out: Path, *options) -> statistics_pb2.DatasetFeatureStatistics:
    done = tfdv_env.run_tfdv(tfdv_env.ORACLE_DIR / "tfdv_stats.py", source, out, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    return _load(out)


def _rank_gap(values: np.ndarray, q: float, p: float) -> float:
    """How far p lies outside the rank interval [P(x < q), P(x <= q)] of q in the data."""
    low, high = np.mean(values < q), np.mean(values <= q)
    return max(low - p, p - high, 0.0)


def _values(column) -> np.ndarray:
    """A column's non-null, non-NaN values as float64; a list column's flattened values."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        column = column.flatten()  # the values of the present rows
    values = column.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
    return values[~np.isnan(values)]


def _compare(ours, theirs, table: pa.Table) -> None:
    Type = statistics_pb2.FeatureNameStatistics
    assert ours.num_examples == theirs.num_examples
    our_features = {"/".join(f.path.step): f for f in ours.features}
    their_features = {"/".join(f.path.step): f for f in theirs.features}
    assert set(our_features) == set(their_features)
    for name, theirs_f in their_features.items():
        ours_f = our_features[name]
        assert ours_f.type == theirs_f.type, name
        kind = theirs_f.WhichOneof("stats")
        assert ours_f.WhichOneof("stats") == kind, name
        our_stats, their_stats = getattr(ours_f, kind), getattr(theirs_f, kind)
        assert our_stats.common_stats == their_stats.common_stats, name  # all counts, exactly
        if kind == "string_stats":
            assert our_stats.unique == their_stats.unique, name
            assert our_stats.top_values == their_stats.top_values, name
            assert our_stats.rank_histogram == their_stats.rank_histogram, name
            assert our_stats.avg_length == pytest.approx(their_stats.avg_length, rel=1e-6), name
            continue
        assert ours_f.type in (Type.INT, Type.FLOAT)
        assert our_stats.num_zeros == their_stats.num_zeros, name
        for stat in ("mean", "std_dev", "min", "max"):
            assert getattr(our_stats, stat) == pytest.approx(getattr(their_stats, stat), rel=1e-6, abs=1e-12), \
                (name, stat)
        values = _values(table.column(name))
        for label, stats, bound in (("ours", our_stats, RANK_BOUND),
                                    ("tfdv", their_stats, statistics_gen.QUANTILES_EPSILON)):
            assert _rank_gap(values, stats.median, 0.5) <= bound, (name, label, "median")
            standard, quantiles = stats.histograms
            assert quantiles.type == statistics_pb2.Histogram.QUANTILES
            assert len(quantiles.buckets) == statistics_gen.NUM_QUANTILES_HISTOGRAM_BUCKETS
            for i, bucket in enumerate(quantiles.buckets):
                p = (i + 1) / len(quantiles.buckets)
                assert _rank_gap(values, bucket.high_value, p) <= bound, (name, label, i)
        our_standard, their_standard = our_stats.histograms[0], their_stats.histograms[0]
        assert our_standard.type == their_standard.type == statistics_pb2.Histogram.STANDARD
        assert len(our_standard.buckets) == len(their_standard.buckets), name
        tolerance = 2 * (2 * RANK_BOUND + 0.001) * values.size
        for mine, other in zip(our_standard.buckets, their_standard.buckets):
            assert mine.low_value == pytest.approx(other.low_value, rel=1e-6, abs=1e-9), name
            assert mine.high_value == pytest.approx(other.high_value, rel=1e-6, abs=1e-9), name
            assert abs(mine.sample_count - other.sample_count) <= tolerance, name


def _check_loads_in_tfdv(ours_pb: Path, theirs_pb: Path, tmp_path: Path, expected) -> None:
    """Our proto loads with TFDV's loaders and yields the schema TFDV infers from its own stats."""
    results = {}
    with ThreadPoolExecutor(2) as pool:  # two TFDV processes at once: each is mostly its start-up
        runs = {label: pool.submit(tfdv_env.run_tfdv, tfdv_env.ORACLE_DIR / "tfdv_load_stats.py", pb,
                                   tmp_path / f"load-{label}")
                for label, pb in (("ours", ours_pb), ("tfdv", theirs_pb))}
    for label, run in runs.items():
        done = run.result()
        assert done.returncode == 0, done.stderr[-3000:]
        results[label] = (
            json.loads((tmp_path / f"load-{label}" / "summary.json").read_text()),
            (tmp_path / f"load-{label}" / "schema.pbtxt").read_text(),
        )
    summary, schema = results["ours"]
    assert summary["train"]["num_examples"] == expected.num_examples
    assert summary["train"]["features"] == {
        f.path.step[0]: statistics_pb2.FeatureNameStatistics.Type.Name(f.type) for f in expected.features
    }
    assert schema == results["tfdv"][1]


def test_taxi_parity_on_same_parquet(tfdv_python, tmp_path):
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(TAXI_CSV)
    ours_pb, ours = _run_ours(table, tmp_path)
    theirs = _run_tfdv(ours_pb.parents[2] / "examples" / "Split-train", tmp_path / "tfdv.pb")
    _compare(ours, theirs, table)
    _check_loads_in_tfdv(ours_pb, tmp_path / "tfdv.pb", tmp_path, ours)


def test_taxi_parity_with_tfdv_reading_the_csv(tfdv_python, tmp_path):
    """TFDV's own CSV -> DataFrame path; we get Parquet written from the same pandas frame."""
    import pandas as pd

    table = pa.Table.from_pandas(pd.read_csv(TAXI_CSV), preserve_index=False)
    _, ours = _run_ours(table, tmp_path)
    theirs = _run_tfdv(TAXI_CSV, tmp_path / "tfdv.pb")
    _compare(ours, theirs, table)


def test_penguins_parity(tfdv_python, tmp_path):
    import palmerpenguins

    table = pa.Table.from_pandas(palmerpenguins.load_penguins(), preserve_index=False)
    ours_pb, ours = _run_ours(table, tmp_path)
    theirs = _run_tfdv(ours_pb.parents[2] / "examples" / "Split-train", tmp_path / "tfdv.pb")
    _compare(ours, theirs, table)
    _check_loads_in_tfdv(ours_pb, tmp_path / "tfdv.pb", tmp_path, ours)


def test_parity_on_large_batches_with_summaries(tfdv_python, tmp_path):
    """Above SUMMARY_THRESHOLD values per batch our sketch gets summaries; bound still holds."""
    rng = np.random.default_rng(7)
    n = 3 * statistics_gen.SUMMARY_THRESHOLD
    table = pa.table({
        "skewed": rng.lognormal(0, 1.5, n),
        "ints": rng.integers(-50, 50, n),
        "with_nulls": pa.array(np.where(rng.random(n) < 0.2, np.nan, rng.normal(5, 2, n)), from_pandas=True),
        "cat": pa.array(rng.choice(["x", "y", "z", "w"], n, p=[0.4, 0.3, 0.2, 0.1])),
    })
    ours_pb, ours = _run_ours(table, tmp_path)
    theirs = _run_tfdv(ours_pb.parents[2] / "examples" / "Split-train", tmp_path / "tfdv.pb")
    _compare(ours, theirs, table)


def test_list_columns_parity(tfdv_python, tmp_path):
    """Fixed-length float images, token lists with nulls and empty lists, int and large lists:
    TFDV's statistics; TFDV infers the same schema from ours as from its own, and so does SchemaGen."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    table = list_table(200)
    ours_pb, ours = _run_ours(table, tmp_path)
    with ThreadPoolExecutor(1) as pool:  # TFDV loads ours while it computes its own
        loaded = pool.submit(tfdv_env.run_tfdv, tfdv_env.ORACLE_DIR / "tfdv_load_stats.py", ours_pb,
                             tmp_path / "load-ours")
        theirs = _run_tfdv(ours_pb.parents[2] / "examples" / "Split-train", tmp_path / "tfdv.pb",
                           "--infer-schema", tmp_path / "tfdv_schema.pbtxt")
    _compare(ours, theirs, table)
    common = {f.path.step[0]: f.num_stats.common_stats if f.HasField("num_stats") else f.string_stats.common_stats
              for f in ours.features}
    assert (common["image"].min_num_values, common["image"].max_num_values) == (784, 784)
    assert common["tokens"].min_num_values == 0 and common["tokens"].num_missing > 0
    tfdv_schema = text_format.Parse((tmp_path / "tfdv_schema.pbtxt").read_text(), schema_pb2.Schema())
    done = loaded.result()
    assert done.returncode == 0, done.stderr[-3000:]
    from_ours = text_format.Parse((tmp_path / "load-ours" / "schema.pbtxt").read_text(), schema_pb2.Schema())
    sluice_schema = infer_schema(statistics_pb2.DatasetFeatureStatisticsList.FromString(ours_pb.read_bytes()))
    assert schema_to_text(from_ours) == schema_to_text(tfdv_schema)
    assert schema_to_text(sluice_schema) == schema_to_text(tfdv_schema)
    image = next(f for f in sluice_schema.feature if f.name == "image")
    assert [d.size for d in image.shape.dim] == [784]
