"""Transform's in-process loops (components/transform/in_process.py): the analysis's sketch lanes,
and the splits' batches transformed on one shared pool and written in order."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components.tft.accumulators import add_to_accumulator, extract, new_accumulator
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.tracing import AnalyzerSpec
from sluice.components.transform import in_process

pytest.importorskip("tfx_bsl")


def _specs() -> list[AnalyzerSpec]:
    quantiles = [AnalyzerSpec(f"00{i}_quantiles", "quantiles", {"epsilon": 0.01, "num_buckets": 10})
                 for i in range(3)]
    return [*quantiles, AnalyzerSpec("003_mean_and_var", "mean_and_var", {})]


def _batches(count: int = 24, rows: int = 5000) -> list[dict]:
    rng = np.random.default_rng(7)
    return [{**{f"00{i}_quantiles": rng.normal(i, 1 + i, rows).astype(np.float32) for i in range(3)},
             "003_mean_and_var": rng.normal(size=rows)} for _ in range(count)]


def _fold_serially(specs: list[AnalyzerSpec], batches: list[dict]) -> dict:
    accumulators = {spec.key: new_accumulator(spec) for spec in specs}
    for found in batches:
        for spec in specs:
            accumulators[spec.key] = add_to_accumulator(spec, accumulators[spec.key], found[spec.key])
    return {spec.key: extract(spec, accumulators[spec.key]) for spec in specs if spec.kind == "quantiles"}


def test_sketches_are_folded_on_their_own_threads_in_batch_order_with_the_serial_folds_result(monkeypatch):
    specs = _specs()
    batches = _batches()
    calls: list[tuple[str, str, int]] = []
    position = {id(found[spec.key]): number for number, found in enumerate(batches) for spec in specs}
    lock = threading.Lock()

    def spying_add(spec, acc, values):
        with lock:
            calls.append((spec.key, threading.current_thread().name, position[id(values)]))
        return add_to_accumulator(spec, acc, values)

    monkeypatch.setattr(in_process, "add_to_accumulator", spying_add)
    sketched = [spec for spec in specs if spec.kind in in_process.SketchLanes.KINDS]
    accumulators = {spec.key: new_accumulator(spec) for spec in specs}
    with in_process.SketchLanes(sketched, accumulators) as lanes:
        for found in batches:
            lanes.add(found)
    got = {spec.key: extract(spec, accumulators[spec.key]) for spec in sketched}

    assert got == _fold_serially(specs, batches)  # the same sketches, to the last digit
    for spec in sketched:
        mine = [(thread, number) for key, thread, number in calls if key == spec.key]
        assert [number for _, number in mine] == list(range(len(batches))), spec.key
        assert all(thread.startswith("sketch") for thread, _ in mine), spec.key
    # Two lanes: the three sketches are spread over two threads, each sketch kept on one.
    assert len({thread for _, thread, _ in calls}) == 2


def test_sketch_lanes_queue_at_most_their_lead_and_pass_on_a_failure(monkeypatch):
    release = threading.Event()
    waiting = []

    def slow_add(spec, acc, values):
        waiting.append(values)
        release.wait(5)
        if isinstance(values, str):
            raise ValueError("a bad batch")
        return acc

    monkeypatch.setattr(in_process, "add_to_accumulator", slow_add)
    spec = AnalyzerSpec("000_quantiles", "quantiles", {"epsilon": 0.01, "num_buckets": 2})
    lanes = in_process.SketchLanes([spec], {spec.key: None})
    added = threading.Thread(target=lambda: [lanes.add({spec.key: n}) for n in range(5)])
    added.start()
    added.join(0.5)
    assert added.is_alive()  # held back while AHEAD batches wait for the lane
    release.set()
    added.join(5)
    with pytest.raises(ValueError, match="a bad batch"), lanes:
        lanes.add({spec.key: "bad"})


class _Doubling:
    """A transform of a batch's ``x`` column, recording the threads that ran it."""

    def __init__(self):
        self.threads: set[str] = set()

    def __call__(self, part: pa.RecordBatch) -> dict:
        self.threads.add(threading.current_thread().name)
        return {"x2": np.asarray(part.column("x")) * 2}


class _Batches:
    """``RowGroups``' call: each file's rows as batches of 100."""

    def __init__(self, tables: dict[str, pa.Table]):
        self.tables = tables

    def __call__(self, files, keep=False, needed=None):
        for path in files:
            yield from self.tables[path].to_batches(max_chunksize=100)


def test_splits_sharing_one_pool_are_transformed_there_and_written_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(in_process, "slices", lambda batch: [batch])
    tables = {"train": pa.table({"x": np.arange(2500, dtype=np.int64)}),
              "eval": pa.table({"x": np.arange(10_000, 10_700, dtype=np.int64)})}
    features = {"x2": FeatureSpec("int64", ())}
    transform = _Doubling()
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="transform-batch") as compute, \
            concurrent.futures.ThreadPoolExecutor(2) as splits:
        rows = [splits.submit(in_process.transform_in_process, transform, features, [split], _Batches(tables),
                              str(tmp_path / split), compute) for split in tables]
        assert [done.result() for done in rows] == [2500, 700]
    for split, table in tables.items():
        written = pq.read_table(tmp_path / split / in_process.SHARD_NAME)
        assert written.column("x2").to_pylist() == [2 * x for x in table.column("x").to_pylist()]
    assert transform.threads and all(name.startswith("transform-batch") for name in transform.threads)

    alone = _Doubling()  # without a pool: on the split's own thread, the same rows
    assert in_process.transform_in_process(alone, features, ["eval"], _Batches(tables), str(tmp_path / "alone")) == 700
    assert alone.threads == {threading.current_thread().name}
    assert pq.read_table(tmp_path / "alone" / in_process.SHARD_NAME).equals(
        pq.read_table(tmp_path / "eval" / in_process.SHARD_NAME))
