"""StatisticsGen on runners with several worker processes: the portable runner (local job server,
external worker pool), the DirectRunner in multi_processing mode, and that with every bundle
replayed. Each run's FeatureStats.pb must equal the in-process run's: counts, strings and
structure exactly, floats to a relative 1e-9 (the per-worker sums merge in another order), except
the median and histograms, which come from quantiles sketches merged in another order: their
quantiles within twice the sketch's rank bound of each other (2 x 0.011 of the data), their bucket
counts within four times it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from google.protobuf.descriptor import FieldDescriptor
from tensorflow_metadata.proto.v0 import statistics_pb2

from sluice.components.artifacts import Examples, ExampleStatistics
from sluice.components.sdk import ExecutionContext
from sluice.components.statistics_gen import generate_statistics, read_ahead
from sluice.components.statistics_gen.component import FEATURE_STATS_FILE
from sluice.components.statistics_gen.numeric import QUANTILES_RANK_BOUND

# A worker that cannot start leaves the job waiting: fail well before the suite's 900 s.
pytestmark = pytest.mark.timeout(240)

REL = 1e-9
RANK_BOUND = QUANTILES_RANK_BOUND
MULTI_PROCESSING = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def _table(rng: np.random.Generator, rows: int, start: int) -> pa.Table:
    x = rng.normal(10.0, 3.0, rows)
    x[rng.random(rows) < 0.05] = np.nan
    colors = np.array(["red", "green", "blue", "amber", "violet"])[rng.integers(0, 5, rows)]
    return pa.table({
        "id": pa.array(np.arange(start, start + rows), pa.int64()),
        "x": pa.array(x, pa.float64(), mask=rng.random(rows) < 0.1),
        "color": pa.array(colors, pa.string(), mask=rng.random(rows) < 0.02),
        "tags": pa.array([list(range(n)) for n in rng.integers(0, 4, rows)], pa.list_(pa.int64())),
    })


def _examples(root, files: dict[str, list[pa.Table]], row_group_size: int | None = None) -> Examples:
    for split, tables in files.items():
        os.makedirs(root / f"Split-{split}")
        for i, table in enumerate(tables):
            pq.write_table(table, root / f"Split-{split}" / f"part-{i:05d}.parquet", row_group_size=row_group_size)
    return Examples(uri=str(root), split_names=list(files))


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    """Nine train files and two eval files."""
    rng = np.random.default_rng(22)
    files = {"train": [_table(rng, 3000, 3000 * i) for i in range(9)], "eval": [_table(rng, 1000, i) for i in range(2)]}
    return _examples(tmp_path_factory.mktemp("many-files"), files)


@pytest.fixture(scope="module")
def one_big_file(tmp_path_factory):
    """One file of five row groups, three pieces (``read_ahead.file_pieces``)."""
    rows = 500_000
    examples = _examples(tmp_path_factory.mktemp("big-file"), {"train": [_table(np.random.default_rng(7), rows, 0)]},
                         row_group_size=rows // 5)
    (path,) = (examples.split_uri("train") + "/" + name for name in os.listdir(examples.split_uri("train")))
    assert len(read_ahead.file_pieces(path, read_ahead.PIECE_ROWS)) == 3
    return examples


def _run(examples: Examples, out, args: list[str]) -> tuple[dict[str, statistics_pb2.DatasetFeatureStatisticsList],
                                                             dict[str, float], float]:
    ctx = ExecutionContext(beam_pipeline_args=args)
    statistics = ExampleStatistics(uri=str(out))
    start = time.perf_counter()
    generate_statistics(examples=examples, statistics=statistics, ctx=ctx)
    seconds = time.perf_counter() - start
    protos = {split: statistics_pb2.DatasetFeatureStatisticsList.FromString(
        Path(statistics.split_uri(split), FEATURE_STATS_FILE).read_bytes()) for split in examples.split_names}
    return protos, ctx.metrics, seconds


@pytest.fixture(scope="module")
def in_process(many_files, one_big_file, tmp_path_factory):
    """The in-process runs' statistics (no Beam options: the driver does the work)."""
    results = {}
    for name, examples in (("many_files", many_files), ("one_big_file", one_big_file)):
        protos, metrics, _ = _run(examples, tmp_path_factory.mktemp(f"in-process-{name}"), [])
        assert "workers" not in metrics  # recorded where the runner has workers
        results[name] = protos
    return results


def assert_close(actual, expected, where: str = "") -> None:
    """Two protos field by field: floats to a relative ``REL``, everything else exactly; a
    dataset's features matched by path (their order is not part of the statistics)."""
    assert [f.name for f, _ in actual.ListFields()] == [f.name for f, _ in expected.ListFields()], where
    for field, value in expected.ListFields():
        other = getattr(actual, field.name)
        here = f"{where}.{field.name}"
        if field.name == "features":
            value = sorted(value, key=lambda f: tuple(f.path.step))
            other = sorted(other, key=lambda f: tuple(f.path.step))
        repeated = field.label == FieldDescriptor.LABEL_REPEATED
        assert not repeated or len(other) == len(value), here
        for i, (got, want) in enumerate(zip(other, value) if repeated else [(other, value)]):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                assert_close(got, want, f"{here}[{i}]")
            elif field.type in FLOATS:
                assert math.isclose(got, want, rel_tol=REL, abs_tol=1e-12) or (math.isnan(got) and math.isnan(want)), \
                    f"{here}[{i}]: {got} != {want}"
            else:
                assert got == want, f"{here}[{i}]: {got!r} != {want!r}"


def _without_sketches(stats):
    """A copy without the fields a quantiles sketch gives, and those fields by (feature, kind)."""
    stats = type(stats).FromString(stats.SerializeToString())
    sketched = {}
    for feature in stats.datasets[0].features:
        name = "/".join(feature.path.step)
        numeric = feature.HasField("num_stats")
        common = feature.num_stats.common_stats if numeric else feature.string_stats.common_stats
        sketched[name, "lengths"] = [type(common.num_values_histogram).FromString(
            common.num_values_histogram.SerializeToString())]
        common.ClearField("num_values_histogram")
        if numeric:
            sketched[name, "median"] = feature.num_stats.median
            sketched[name, "values"] = [type(h).FromString(h.SerializeToString()) for h in feature.num_stats.histograms]
            feature.num_stats.ClearField("median")
            feature.num_stats.ClearField("histograms")
    return stats, sketched


def _data(examples: Examples, split: str, feature: str) -> dict[str, np.ndarray]:
    """A feature's values and per-example value counts, sorted (what its sketches summarize)."""
    column = pq.read_table(examples.split_uri(split)).column(feature).combine_chunks()
    present = column.filter(column.is_valid())
    if pa.types.is_list(column.type):
        values, lengths = present.flatten(), pc.list_value_length(present)
    else:
        values, lengths = present, pa.array(np.ones(len(present)))
    values = values.to_numpy(zero_copy_only=False) if values.type != pa.string() else np.array([])
    values = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    return {"values": np.sort(values), "lengths": np.sort(lengths.to_numpy(zero_copy_only=False))}


def _rank_gap(data: np.ndarray, got: float, want: float) -> float:
    """How far apart, as fractions of the data, the ranks of two values are (ties: any of their ranks)."""
    if got == want:
        return 0.0
    lo_got, hi_got = np.searchsorted(data, got, "left"), np.searchsorted(data, got, "right")
    lo_want, hi_want = np.searchsorted(data, want, "left"), np.searchsorted(data, want, "right")
    return max(0, lo_got - hi_want, lo_want - hi_got) / len(data)


def assert_sketches_close(got: list, want: list, data: np.ndarray, where: str) -> None:
    """Histograms from two merges of one quantiles sketch: each run's quantile has a true rank within
    ``QUANTILES_RANK_BOUND`` of its own, so two runs' are within twice that, and a bucket's count
    (two such quantiles apart) within four times that of the data."""
    assert [(h.type, len(h.buckets)) for h in got] == [(h.type, len(h.buckets)) for h in want], where
    for histogram, expected in zip(got, want):
        for bucket, other in zip(histogram.buckets, expected.buckets):
            for edge in ("low_value", "high_value"):
                if histogram.type == statistics_pb2.Histogram.QUANTILES:
                    assert _rank_gap(data, getattr(bucket, edge), getattr(other, edge)) <= 2 * RANK_BOUND, where
                else:  # equal-width buckets between the exact extremes
                    assert math.isclose(getattr(bucket, edge), getattr(other, edge), rel_tol=REL), where
            assert abs(bucket.sample_count - other.sample_count) <= 4 * RANK_BOUND * len(data), where


def assert_statistics_close(actual, expected, examples: Examples, split: str) -> None:
    """All exact (floats to ``REL``) but what comes from quantiles sketches (``assert_sketches_close``)."""
    actual, actual_sketched = _without_sketches(actual)
    expected, expected_sketched = _without_sketches(expected)
    assert_close(actual, expected, split)
    assert actual_sketched.keys() == expected_sketched.keys()
    for (feature, kind), want in expected_sketched.items():
        got, where = actual_sketched[feature, kind], f"{split}: {feature} {kind}"
        data = _data(examples, split, feature)["lengths" if kind == "lengths" else "values"]
        if kind == "median":
            assert _rank_gap(data, got, want) <= 2 * RANK_BOUND, f"{where}: {got} != {want}"
        else:
            assert_sketches_close(got, want, data, where)


def _check(name, examples, args, in_process, tmp_path, workers: int = 2):
    protos, metrics, seconds = _run(examples, tmp_path / "stats", args)
    for split, expected in in_process[name].items():
        assert_statistics_close(protos[split], expected, examples, split)
    print(f"\nStatisticsGen {name} {' '.join(a for a in args if 'endpoint' not in a and 'config' not in a)}: "
          f"{seconds:.1f} s, workers={metrics.get('workers')}")
    assert metrics["workers"] >= workers, metrics


@pytest.mark.parametrize("name", ["many_files", "one_big_file"])
def test_direct_runner_multi_processing(name, request, in_process, tmp_path):
    _check(name, request.getfixturevalue(name), MULTI_PROCESSING, in_process, tmp_path)


@pytest.mark.parametrize("name", ["many_files", "one_big_file"])
def test_direct_runner_bundle_repeat_counts_each_row_once(name, request, in_process, tmp_path):
    # Every bundle runs twice and the first attempt's outputs are dropped, as on a retried task.
    _check(name, request.getfixturevalue(name), [*MULTI_PROCESSING, "--direct_runner_bundle_repeat=1"],
           in_process, tmp_path)


@pytest.mark.parametrize("name", ["many_files", "one_big_file"])
def test_portable_runner_with_external_worker_pool(name, request, in_process, portable_runner, tmp_path):
    _check(name, request.getfixturevalue(name), portable_runner, in_process, tmp_path)


def test_portable_runner_bundle_repeat_counts_each_row_once(one_big_file, in_process, portable_runner, tmp_path):
    # job_server.py hands the replay option to its runner (Beam's own job server drops it).
    _check("one_big_file", one_big_file, [*portable_runner, "--direct_runner_bundle_repeat=1"], in_process, tmp_path)


def test_portable_runner_on_beams_own_job_server(many_files, in_process, beams_own_portable_runner, tmp_path):
    # Beam's job server gives a job one SDK worker whatever its options: the same statistics.
    _check("many_files", many_files, beams_own_portable_runner, in_process, tmp_path, workers=1)
