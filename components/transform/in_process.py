"""Transform without a Beam pipeline: analysis and transform as loops over Parquet row groups.

Used when the pipeline gives no Beam option but the in-process runner and the examples are
local files. The work is what the Beam transforms in ``transforms`` do, with the same
traced functions and accumulators: each phase reads the analyze splits' row groups, computes
its analyzers' inputs and folds them into one accumulator per analyzer; then the transform
graph (traced with the values, kept in memory) is applied to each split's row groups, written
as one Parquet file per split. Nothing is pickled between stages; the planning trace of
``preprocessing_fn`` serves as the first phase's function, and the analyze splits' rows read
for the analysis are kept (up to ``KEEP_BYTES``) for the transform pass.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sluice.components.io.examples import leaf_owners, open_parquet, read_batches
from sluice.components.tft.accumulators import add_to_accumulator, extract, new_accumulator
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.packed import PackedFunction
from sluice.components.tft.tensors import arrow_schema, slices, tensors_to_arrow
from sluice.components.tft.tracing import AnalysisFunction, AnalysisPlan

# The one file a split's transformed rows go to (the Beam sink's name for a single shard).
SHARD_NAME = "part-00000-of-00001.parquet"
# The analyze splits' rows are kept in memory for the transform pass up to this many bytes (as Arrow).
KEEP_BYTES = 512 << 20
# Bytes per value in memory, by Parquet physical type (8 for others: strings, read as codes or text).
_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8}
# A batch read holds about this many bytes of its widest column, Parquet's levels (2 bytes each)
# counted: the column's decode buffers then stay blocks the heap reuses, not fresh pages that the
# read faults in and grows by copying (wide rows: bench/PROFILES.md). Narrow columns read in
# READ_BATCH_ROWS rows, fewer calls; at least MIN_BATCH_ROWS.
READ_BATCH_BYTES = 8 << 20
READ_BATCH_ROWS = 131072
MIN_BATCH_ROWS = 256


class _Loading:
    """A file the prefetch is reading: its batches so far, handed to a pass as each comes."""

    def __init__(self):
        self.batches: list[pa.RecordBatch] = []
        self.kept = False  # whether the prefetch read it all (else a pass reads what it lacks)
        self._done = False
        self._changed = threading.Condition()

    def add(self, batch: pa.RecordBatch) -> None:
        with self._changed:
            self.batches.append(batch)
            self._changed.notify_all()

    def finish(self, kept: bool) -> None:
        with self._changed:
            self.kept, self._done = kept, True
            self._changed.notify_all()

    def follow(self) -> Iterator[pa.RecordBatch]:
        """Every batch read, waiting for each, until the prefetch is done with the file."""
        index = 0
        while True:
            with self._changed:
                while index == len(self.batches) and not self._done:
                    self._changed.wait()
                if index == len(self.batches):
                    return
                batch = self.batches[index]
            index += 1
            yield batch


class RowGroups:
    """Reads the examples' Parquet files in batches (``io.examples``, errors naming the file), with
    ``columns`` the files have; a file read with ``keep`` is kept, and read again from memory, when
    its size (estimated from its footer) fits in what is left of ``keep_bytes``. Deciding up
    front means a file too big to keep is never held in part; such a file is read with only the
    ``needed`` columns (all when None). ``prefetch`` reads files to keep in a background thread,
    ahead of the first pass that reads them, which takes each batch as it is read."""

    def __init__(self, columns: list[str], owner: str, keep_bytes: int = KEEP_BYTES):
        self._columns = columns
        self._owner = owner
        self._keep_bytes = keep_bytes
        self._kept: dict[str, list[pa.RecordBatch]] = {}
        self._loading: dict[str, _Loading] = {}
        self._refused: set[str] = set()  # files too big to keep: a pass streams them
        self._layouts: dict[str, tuple[Any, list[str], list[int]]] = {}  # each footer read once
        self._batch_rows: dict[tuple[str, tuple[str, ...]], int] = {}
        self._lock = threading.Lock()

    def prefetch(self, files: list[str]) -> None:
        """Reads ``files`` into memory in a background thread, in order, each when it fits what is
        left of the budget (the first that does not ends the prefetch, and a pass streams it
        without trying it again); a pass reaching a file being read takes its batches as they
        come. Parquet decoding releases the GIL, so this overlaps the Python work before the
        first pass (tracing ``preprocessing_fn``) and the analysis of the batches before."""
        pending = {path: _Loading() for path in files if path not in self._kept and path not in self._loading}
        self._loading.update(pending)

        def load() -> None:
            fits = True
            for path, loading in pending.items():
                kept = False
                try:
                    kept = fits = fits and self._load(path, loading)
                except Exception:  # noqa: BLE001 - the pass reports it, reading the file itself
                    fits = False
                finally:
                    if kept:  # before it leaves _loading: a pass looks there first, then here
                        self._kept[path] = loading.batches
                    del self._loading[path]
                    loading.finish(kept)

        threading.Thread(target=load, name="prefetch-examples", daemon=True).start()

    def _load(self, path: str, loading: _Loading) -> bool:
        """Keeps ``path``'s rows in memory if they fit the budget; says whether they did."""
        metadata, present, groups = self._layout(path)
        if not self._reserve(metadata, present):
            self._refused.add(path)  # the budget only shrinks: a later pass would refuse it too
            return False
        for batch in self._read(path, present, groups):
            loading.add(batch)
        return True

    def _layout(self, path: str) -> tuple[Any, list[str], list[int]]:
        """A file's Parquet metadata, which of ``columns`` it has, and its row group indices."""
        found = self._layouts.get(path)
        if found is None:
            metadata = open_parquet(path, self._owner).metadata
            present = [name for name in self._columns if name in metadata.schema.to_arrow_schema().names]
            found = self._layouts[path] = (metadata, present, list(range(metadata.num_row_groups)))
        return found

    def __call__(self, files: list[str], keep: bool = False,
                 needed: set[str] | None = None) -> Iterator[pa.RecordBatch]:
        for path in files:
            loading = self._loading.get(path)
            taken = 0
            if loading is not None:
                for batch in loading.follow():
                    taken += 1
                    yield batch
                if loading.kept:
                    continue
            if path in self._kept:
                yield from self._kept[path]
                continue
            metadata, present, groups = self._layout(path)
            if taken:  # the prefetch failed part-way: the same batches on, read here (its error raised here)
                yield from itertools.islice(self._read(path, present, groups), taken, None)
                continue
            wanted = _wanted(present, needed)
            if not keep or path in self._refused or not self._reserve(metadata, present):
                yield from self._read(path, wanted, groups)
                continue
            batches = []
            for batch in self._read(path, present, groups):
                batches.append(batch)
                yield batch
            self._kept[path] = batches

    def _rows_per_batch(self, path: str, columns: list[str]) -> int:
        """Rows per batch read of ``columns``: about ``READ_BATCH_BYTES`` of the widest, from the footer."""
        key = (path, tuple(columns))
        rows = self._batch_rows.get(key)
        if rows is None:
            metadata = self._layout(path)[0]
            row_bytes = max(_leaf_bytes(metadata, columns, levels=True), default=0) / max(metadata.num_rows, 1)
            rows = self._batch_rows[key] = max(MIN_BATCH_ROWS, min(READ_BATCH_ROWS,
                                                                   int(READ_BATCH_BYTES / max(row_bytes, 1))))
        return rows

    def _read(self, path: str, columns: list[str], groups: list[int]) -> Iterator[pa.RecordBatch]:
        if groups:
            # One thread: pyarrow's threads decode list columns several times slower on few cores.
            yield from read_batches(path, self._owner, self._rows_per_batch(path, columns), columns=columns,
                                    row_groups=groups, use_threads=False, strings_as_dictionary=True)

    def _reserve(self, metadata: Any, present: list[str]) -> bool:
        """Takes a file's size in memory (its ``present`` columns, estimated from its footer
        ``metadata``) from the budget, if it fits."""
        size = sum(_leaf_bytes(metadata, present))
        with self._lock:
            if size > self._keep_bytes:
                return False
            self._keep_bytes -= size
            return True


def _wanted(present: list[str], needed: set[str] | None) -> list[str]:
    """The ``present`` columns a pass needs (all when ``needed`` is None), in the file's order."""
    return present if needed is None else [name for name in present if name in needed]


def _leaf_bytes(metadata: Any, columns: list[str], levels: bool = False) -> list[int]:
    """The bytes of each leaf column of ``columns`` in memory, values at their type's width, from
    a file's footer; with ``levels``, 2 bytes more per value for each kind of level (repetition,
    definition) the leaf has."""
    owners = leaf_owners(metadata.schema.to_arrow_schema())
    leaves = [c for c, name in enumerate(owners) if name in columns]
    widths = {c: _WIDTHS.get(metadata.schema.column(c).physical_type, 8) for c in leaves}
    if levels:
        for c in leaves:
            column = metadata.schema.column(c)
            widths[c] += 2 * ((column.max_definition_level > 0) + (column.max_repetition_level > 0))
    return [sum(metadata.row_group(index).column(c).num_values for index in range(metadata.num_row_groups))
            * widths[c] for c in leaves]


def analyze_in_process(plan: AnalysisPlan, preprocessing_fn: Any, raw_features: dict[str, FeatureSpec],
                       source: str, files: list[str], row_groups: RowGroups, schema: pa.Schema) -> dict[str, Any]:
    """``{analyzer key: value}`` of every analyzer, phase after phase (``schema``: the files' Arrow schema)."""
    values: dict[str, Any] = {}
    for number, specs in enumerate(plan.phases):
        keys = [spec.key for spec in specs]
        function = plan.first_phase if number == 0 and plan.first_phase is not None else \
            AnalysisFunction(preprocessing_fn, raw_features, dict(values), keys, source)
        # Set up while the prefetch still reads the first rows.
        function.warm(schema)
        accumulators = {spec.key: new_accumulator(spec) for spec in specs}
        parts = (part for table in row_groups(files, keep=True, needed=function.consumed_features())
                 for part in slices(table))
        with SketchLanes([spec for spec in specs if spec.kind in SketchLanes.KINDS], accumulators) as lanes:
            for found in _ordered_map(function, parts):
                lanes.add(found)
                for spec in specs:
                    if spec.kind not in SketchLanes.KINDS:
                        accumulators[spec.key] = add_to_accumulator(spec, accumulators[spec.key], found[spec.key])
        values.update({spec.key: extract(spec, accumulators[spec.key]) for spec in specs})
    return values


class SketchLanes:
    """Folds the batches of the analyzers whose adds are long and release the GIL (tfx_bsl's
    quantiles sketches) on ``LANES`` threads of their own, each analyzer on one thread, in batch
    order (a sketch depends on the order of its values), while the analysis thread computes the
    next batch. One thread folding every sketch was the analysis's slowest step (bench/PROFILES.md).
    At most ``AHEAD`` batches wait for the lanes."""

    KINDS = ("quantiles",)
    LANES = 2
    AHEAD = 2

    def __init__(self, specs: list, accumulators: dict[str, Any]):
        self._specs = specs
        self._accumulators = accumulators
        count = min(self.LANES, len(specs))
        self._lanes = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"sketch-{lane}")
                       for lane in range(count)]
        self._pending: collections.deque = collections.deque()

    def add(self, found: dict[str, Any]) -> None:
        """Hands a batch's analyzer inputs to the lanes (waiting while ``AHEAD`` batches are queued)."""
        if not self._specs:
            return
        while len(self._pending) >= self.AHEAD:
            for done in self._pending.popleft():
                done.result()
        self._pending.append([self._lanes[index % len(self._lanes)].submit(self._fold, spec, found[spec.key])
                              for index, spec in enumerate(self._specs)])

    def _fold(self, spec: Any, values: Any) -> None:
        self._accumulators[spec.key] = add_to_accumulator(spec, self._accumulators[spec.key], values)

    def __enter__(self) -> SketchLanes:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            while self._pending:
                for done in self._pending.popleft():
                    if exc_info[0] is None:
                        done.result()
        finally:
            for lane in self._lanes:
                lane.shutdown(wait=True, cancel_futures=exc_info[0] is not None)


def _ordered_map(function: Any, items: Iterator[Any]) -> Iterator[Any]:
    """``map(function, items)`` one item ahead on a second thread: the next batch is read, packed
    and run through TensorFlow (which releases the GIL) while this thread folds the last one.
    More threads measured no faster on two cores (bench/PROFILES.md)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="analyze") as pool:
        yield from _map_ahead(function, items, pool, 1)


def _map_ahead(function: Any, items: Iterator[Any], pool: concurrent.futures.Executor,
               ahead: int) -> Iterator[Any]:
    """``map(function, items)`` on ``pool``, in order, with up to ``ahead`` items submitted beyond
    the one being waited for; those not started yet are cancelled if the caller stops early."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def transform_in_process(transform: PackedFunction, features: dict[str, FeatureSpec], files: list[str],
                         row_groups: RowGroups, out_dir: str,
                         compute: concurrent.futures.Executor | None = None) -> int:
    """Applies ``transform`` to ``files``' rows; writes them to ``out_dir``; returns the row count.

    A batch is written in a second thread while the next one is transformed (Parquet's
    encoder and TensorFlow's kernels both release the GIL). With ``compute``, the batches are
    transformed there, up to ``COMPUTE_AHEAD`` at once, and written in order: splits sharing
    one such pool keep every worker busy to the end, where a thread per split left the
    smaller split's core idle while the bigger one finished (bench/PROFILES.md).
    """
    schema = arrow_schema(features)
    rows = 0
    os.makedirs(out_dir, exist_ok=True)
    # Dictionaries pay off for strings only; no statistics: nothing reads them; list items are
    # named "item", as Beam's Parquet sink names them; values encoded WRITE_BATCH_VALUES at a time.
    strings = [field.name for field in schema if pa.types.is_string(field.type)]
    path = os.path.join(out_dir, SHARD_NAME)

    def apply(part: pa.RecordBatch) -> tuple[pa.Table, int]:
        return tensors_to_arrow(transform(part), features), part.num_rows

    parts = (part for table in row_groups(files) for part in slices(table))
    transformed = _map_ahead(apply, parts, compute, COMPUTE_AHEAD) if compute is not None \
        else (apply(part) for part in parts)
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=strings or False, write_statistics=False,
                          use_compliant_nested_type=False, write_batch_size=WRITE_BATCH_VALUES) as writer, \
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write-transformed") as pool, \
            contextlib.closing(transformed) as batches:
        writing = None
        for table, count in batches:
            if writing is not None:
                writing.result()
            writing = pool.submit(writer.write_table, table)
            rows += count
        if writing is not None:
            writing.result()
    return rows


# Values the Parquet writer encodes at a time (pyarrow's default: 1,024): fewer rounds per column
# chunk, 12% less CPU writing 784-float vectors (bench/PROFILES.md).
WRITE_BATCH_VALUES = 65536
# Batches of a split transformed at once on a shared ``compute`` pool (``transform_in_process``).
COMPUTE_AHEAD = 2
