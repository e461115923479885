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
import os
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sluice.components.io.examples import open_parquet, read_batches
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


class RowGroups:
    """Reads the examples' Parquet files in batches (``io.examples``, errors naming the file), with
    ``columns`` the files have; a file read with ``keep`` is kept, and read again from memory, when
    its size (estimated from its first row group and its row count) fits in what is left of
    ``keep_bytes``. Deciding up front means a file too big to keep is never held in part; such a
    file is read with only the ``needed`` columns (all when None). ``prefetch`` reads files to
    keep in a background thread, ahead of the first pass that reads them."""

    def __init__(self, columns: list[str], owner: str, keep_bytes: int = KEEP_BYTES):
        self._columns = columns
        self._owner = owner
        self._keep_bytes = keep_bytes
        self._kept: dict[str, list[pa.RecordBatch]] = {}
        self._loading: dict[str, concurrent.futures.Future] = {}
        self._refused: set[str] = set()  # files the prefetch refused (too big to keep): a pass streams them
        self._layouts: dict[str, tuple[Any, list[str], list[int]]] = {}  # each footer read once
        self._lock = threading.Lock()

    def prefetch(self, files: list[str]) -> None:
        """Reads ``files`` into memory in a background thread, in order, each when it fits what is
        left of the budget (the first that does not ends the prefetch, and a pass streams it
        without trying it again); a pass reaching a file still being read waits for it. Parquet
        decoding releases the GIL, so this overlaps the Python work before the first pass (tracing
        ``preprocessing_fn``)."""
        pending = {path: concurrent.futures.Future() for path in files
                   if path not in self._kept and path not in self._loading}
        self._loading.update(pending)

        def load() -> None:
            fits = True
            for path, future in pending.items():
                try:
                    fits = fits and self._load(path)
                except Exception:  # noqa: BLE001 - the pass reports it, reading the file itself
                    fits = False
                finally:
                    future.set_result(None)

        threading.Thread(target=load, name="prefetch-examples", daemon=True).start()

    def _load(self, path: str) -> bool:
        """Keeps ``path``'s rows in memory if they fit the budget; says whether they did."""
        metadata, present, groups = self._layout(path)
        if not groups:  # an empty file: nothing to hold
            self._kept[path] = []
            return True
        first = list(self._read(path, present, groups[:1]))
        if not self._reserve(self._estimate(first, metadata)):
            self._refused.add(path)  # the budget only shrinks: a later pass would refuse it too
            return False
        self._kept[path] = first + list(self._read(path, present, groups[1:]))
        return True

    def _layout(self, path: str) -> tuple[Any, list[str], list[int]]:
        """A file's Parquet metadata, which of ``columns`` it has, and its row group indices."""
        found = self._layouts.get(path)
        if found is None:
            metadata = open_parquet(path, self._owner).metadata
            present = [name for name in self._columns if name in metadata.schema.to_arrow_schema().names]
            found = self._layouts[path] = (metadata, present, list(range(metadata.num_row_groups)))
        return found

    @staticmethod
    def _estimate(first: list[pa.RecordBatch], metadata: Any) -> int:
        """A file's size in memory, from its first row group's and its row count."""
        return sum(b.nbytes for b in first) * metadata.num_rows // max(metadata.row_group(0).num_rows, 1)

    def __call__(self, files: list[str], keep: bool = False,
                 needed: set[str] | None = None) -> Iterator[pa.RecordBatch]:
        for path in files:
            loading = self._loading.pop(path, None)
            if loading is not None:
                loading.result()
            if path in self._kept:
                yield from self._kept[path]
                continue
            metadata, present, groups = self._layout(path)
            wanted = present if needed is None else [name for name in present if name in needed]
            if not keep or not groups or path in self._refused:
                yield from self._read(path, wanted, groups)
                continue
            first = list(self._read(path, present, groups[:1]))
            if not self._reserve(self._estimate(first, metadata)):
                yield from (batch.select(wanted) for batch in first)
                yield from self._read(path, wanted, groups[1:])
                continue
            batches = first
            yield from first
            for batch in self._read(path, present, groups[1:]):
                batches.append(batch)
                yield batch
            self._kept[path] = batches

    def expects_batched(self, files: list[str], needed: set[str] | None = None) -> bool:
        """Whether a pass over ``files`` (their ``needed`` columns, all when None) goes through a
        packed function's traced wrapper (``PackedFunction.expects_batched``), from the files'
        footers: their row groups, and their values at each type's width in memory."""
        groups, nbytes = 0, 0
        for path in files:
            metadata, present, _ = self._layout(path)
            owners = _leaf_owners(metadata.schema.to_arrow_schema())
            leaves = [c for c, name in enumerate(owners) if name in present and (needed is None or name in needed)]
            for index in range(metadata.num_row_groups):
                group = metadata.row_group(index)
                groups += 1
                nbytes += sum(group.column(c).num_values * _WIDTHS.get(group.column(c).physical_type, 8)
                              for c in leaves)
        return PackedFunction.expects_batched(groups, nbytes)

    def _read(self, path: str, columns: list[str], groups: list[int]) -> Iterator[pa.RecordBatch]:
        if groups:
            # One thread: pyarrow's threads decode list columns several times slower on few cores.
            yield from read_batches(path, self._owner, columns=columns, row_groups=groups, use_threads=False,
                                    strings_as_dictionary=True)

    def _reserve(self, size: int) -> bool:
        """Takes a file's estimated size from the budget, if it fits."""
        with self._lock:
            if size > self._keep_bytes:
                return False
            self._keep_bytes -= size
            return True


def _leaf_owners(schema: pa.Schema) -> list[str]:
    """The top-level field of each of a Parquet file's leaf columns, in the file's column order."""
    def leaves(arrow_type: pa.DataType) -> int:
        return sum(leaves(arrow_type.field(i).type) for i in range(arrow_type.num_fields)) \
            if arrow_type.num_fields else 1

    return [field.name for field in schema for _ in range(leaves(field.type))]


def analyze_in_process(plan: AnalysisPlan, preprocessing_fn: Any, raw_features: dict[str, FeatureSpec],
                       source: str, files: list[str], row_groups: RowGroups, schema: pa.Schema) -> dict[str, Any]:
    """``{analyzer key: value}`` of every analyzer, phase after phase (``schema``: the files' Arrow schema)."""
    values: dict[str, Any] = {}
    for number, specs in enumerate(plan.phases):
        keys = [spec.key for spec in specs]
        function = plan.first_phase if number == 0 and plan.first_phase is not None else \
            AnalysisFunction(preprocessing_fn, raw_features, dict(values), keys, source)
        # Set up while the prefetch still reads the first rows.
        function.warm(schema, row_groups.expects_batched(files, function.consumed_features()))
        accumulators = {spec.key: new_accumulator(spec) for spec in specs}
        parts = (part for table in row_groups(files, keep=True, needed=function.consumed_features())
                 for part in slices(table))
        for found in _ordered_map(function, parts):
            for spec in specs:
                accumulators[spec.key] = add_to_accumulator(spec, accumulators[spec.key], found[spec.key])
        values.update({spec.key: extract(spec, accumulators[spec.key]) for spec in specs})
    return values


def _ordered_map(function: Any, items: Iterator[Any]) -> Iterator[Any]:
    """``map(function, items)`` one item ahead on a second thread: the next batch is read, packed
    and run through TensorFlow (which releases the GIL) while this thread folds the last one.
    More threads measured no faster on two cores (bench/PROFILES.md)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="analyze") as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def transform_in_process(transform: PackedFunction, features: dict[str, FeatureSpec], files: list[str],
                         row_groups: RowGroups, out_dir: str) -> int:
    """Applies ``transform`` to ``files``' rows; writes them to ``out_dir``; returns the row count.

    A batch is written in a second thread while the next one is transformed (Parquet's
    encoder and TensorFlow's kernels both release the GIL).
    """
    schema = arrow_schema(features)
    rows = 0
    os.makedirs(out_dir, exist_ok=True)
    # Dictionaries pay off for strings only; no statistics: nothing reads them; list items are
    # named "item", as Beam's Parquet sink names them.
    strings = [field.name for field in schema if pa.types.is_string(field.type)]
    path = os.path.join(out_dir, SHARD_NAME)
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=strings or False, write_statistics=False,
                          use_compliant_nested_type=False) as writer, \
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write-transformed") as pool:
        writing = None
        for table in row_groups(files):
            for part in slices(table):
                transformed = tensors_to_arrow(transform(part), features)
                if writing is not None:
                    writing.result()
                writing = pool.submit(writer.write_table, transformed)
                rows += part.num_rows
        if writing is not None:
            writing.result()
    return rows
