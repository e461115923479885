"""StatisticsGen's Beam transforms (imports Beam: the component imports this module inside its executor).

- ``ComputeParquetStatistics``: {split: Parquet file patterns} -> (split, statistics) pairs;
  what the component runs. Each worker folds whole files into accumulators
  (``read_ahead``), so record batches never travel through Beam as elements and the
  pipeline has few stages; in process, a split's few files are one element, and a combine
  per split merges the files of a split that has many. On a runner with several workers
  every file, and every run of row groups of a big file, is an element of its own.
- Each DoFn doing data work counts its rows under its worker process
  (``beam_workers.record_worker``).
- ``ReadParquetBatches | ComputeStatistics``: the same statistics from a PCollection
  of Arrow RecordBatches, for any source of batches.

Outside a pipeline::

    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from sluice.components.statistics_gen.transforms import (
        ComputeParquetStatistics, ComputeStatistics, ReadParquetBatches)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        stats = (p | ReadParquetBatches(["/data/Split-train/*.parquet"])
                   | ComputeStatistics(dataset_name="train"))
        # the same statistics, faster: {split: patterns} -> (split, proto) pairs
        by_split = p | ComputeParquetStatistics({"train": ["/data/Split-train/*.parquet"]})
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows
from tensorflow_metadata.proto.v0 import statistics_pb2

import sluice.components.io.coders  # noqa: F401 - registers the RecordBatch coder
from sluice.components.beam_workers import asks_for_workers, record_worker
from sluice.components.io.examples import DEFAULT_BATCH_ROWS, match_files, read_batches
from sluice.components.statistics_gen import read_ahead
from sluice.components.statistics_gen.accumulate import DatasetAccumulator, add_batch, compact, merge_datasets
from sluice.components.statistics_gen.protos import to_statistics_proto

# Up to this many files in all, each split's files are one element (read and merged by one worker).
FILES_PER_ELEMENT = 16

Statistics = statistics_pb2.DatasetFeatureStatisticsList

@beam.typehints.with_input_types(pa.RecordBatch)
@beam.typehints.with_output_types(Statistics)
class StatisticsCombineFn(beam.CombineFn):
    """RecordBatches -> the DatasetFeatureStatisticsList of one dataset."""

    def __init__(self, dataset_name: str, categorical_int_features: frozenset[str]):
        super().__init__()
        self.dataset_name = dataset_name
        self.categorical_int_features = categorical_int_features

    def create_accumulator(self):
        return DatasetAccumulator()

    def add_input(self, accumulator, batch):
        return add_batch(accumulator, batch, self.categorical_int_features)

    def merge_accumulators(self, accumulators):
        return merge_datasets(accumulators)

    def compact(self, accumulator):
        return compact(accumulator)

    def extract_output(self, accumulator):
        return to_statistics_proto(accumulator, self.dataset_name)


@beam.typehints.with_input_types(DatasetAccumulator)
@beam.typehints.with_output_types(DatasetAccumulator)
class MergeDatasetsFn(beam.CombineFn):
    """Merges per-file accumulators; the output is the merged accumulator itself."""

    def create_accumulator(self):
        return DatasetAccumulator()

    def add_input(self, accumulator, other):
        return merge_datasets([accumulator, other])

    def merge_accumulators(self, accumulators):
        return merge_datasets(accumulators)

    def compact(self, accumulator):
        return compact(accumulator)

    def extract_output(self, accumulator):
        return accumulator


@beam.typehints.with_input_types(tuple[str, tuple[Any, ...]])
@beam.typehints.with_output_types(tuple[str, DatasetAccumulator])
class SummarizeFilesFn(beam.DoFn):
    """(split, files) -> (split, compacted DatasetAccumulator of those Parquet files).

    Each of ``files`` is a path (a big file is cut into pieces here) or a (path, row groups)
    piece cut by the driver (row groups None: the whole file).

    The pieces of the bundle's files are summarized concurrently on ``read_ahead.file_pool``
    and decoded ahead of them by the bundle's ``ReadAhead``. An element's pieces are merged
    in file order as each is done (``read_ahead.InOrderMerge``): a split of many pieces keeps
    only those in flight. At most ``read_ahead.FILES_IN_FLIGHT`` elements are held back; the
    rest are emitted when the bundle finishes.
    """

    def __init__(self, batch_size: int, categorical_int_features: frozenset[str]):
        super().__init__()
        self.batch_size = batch_size
        self.categorical_int_features = categorical_int_features

    def start_bundle(self):
        self._pending = []  # (split, futures of the element's pieces), in file order
        self._read_ahead = read_ahead.ReadAhead(read_ahead.BATCHES_AHEAD)

    def process(self, split_and_paths):
        split, files = split_and_paths
        futures, merge = [], read_ahead.InOrderMerge()
        for index, (path, row_groups) in enumerate(_pieces(files)):
            handoff = self._read_ahead.add(path, row_groups, self.batch_size)
            futures.append(read_ahead.file_pool().submit(read_ahead.summarize_piece, self._read_ahead, handoff,
                                                         self.categorical_int_features, merge, index))
        self._pending.append((split, futures, merge))
        while len(self._pending) > read_ahead.FILES_IN_FLIGHT:
            yield self._next_result()

    def finish_bundle(self):
        while self._pending:
            yield GlobalWindows.windowed_value(self._next_result())
        self._read_ahead.stop()

    def teardown(self):
        reading = getattr(self, "_read_ahead", None)
        if reading is not None:  # a bundle that failed downstream: its reading thread ends
            reading.stop()

    def _next_result(self):
        split, futures, merge = self._pending.pop(0)
        try:
            for future in futures:
                future.result()
        except BaseException:
            for _, others, _ in self._pending:  # files not started yet are not read for nothing
                for future in others:
                    future.cancel()
            for future in futures:
                future.cancel()
            self._pending = []
            self._read_ahead.stop()  # summaries still running get an error for what was not read
            raise
        merged = merge.result(len(futures))  # merged as the pieces were done
        record_worker(merged.num_examples)
        return split, merged


def _pieces(files) -> Iterable[tuple[str, list[int] | None]]:
    """(path, row groups) pieces of an element's files: a path is cut here, a piece is kept."""
    for item in files:
        if isinstance(item, str):
            yield from ((item, row_groups) for row_groups in read_ahead.file_pieces(item, read_ahead.PIECE_ROWS))
        else:
            path, row_groups = item
            yield path, list(row_groups) if row_groups is not None else None


@beam.typehints.with_input_types(pa.RecordBatch)
@beam.typehints.with_output_types(Statistics)
class ComputeStatistics(beam.PTransform):
    """PCollection of Arrow RecordBatches -> one DatasetFeatureStatisticsList (TFDV format).

    Each batch column is a flat Arrow array or a one-level list array (nulls are missing values).
    ``categorical_int_features`` names INT columns that also get string
    stats (top values), as TFDV does for ``int_domain.is_categorical``.
    A column missing from a batch counts as missing there.
    """

    def __init__(self, dataset_name: str = "", categorical_int_features: Iterable[str] = ()):
        super().__init__()
        self.dataset_name = dataset_name
        self.categorical_int_features = frozenset(categorical_int_features)

    def expand(self, batches):
        return batches | "CombineStatistics" >> beam.CombineGlobally(
            StatisticsCombineFn(self.dataset_name, self.categorical_int_features))


@beam.typehints.with_output_types(pa.RecordBatch)
class ReadParquetBatches(beam.PTransform):
    """File patterns -> PCollection of Arrow RecordBatches (``batch_size`` rows at most).

    Files are distributed over workers; each is read batch by batch, so
    memory stays bounded by one batch. Paths may be any Beam filesystem.
    """

    def __init__(self, file_patterns: list[str], batch_size: int = DEFAULT_BATCH_ROWS,
                 columns: list[str] | None = None):
        super().__init__()
        self.file_patterns = list(file_patterns)
        self.batch_size = batch_size
        self.columns = columns

    def expand(self, pbegin):
        files = match_files(self.file_patterns, "StatisticsGen")
        names = pbegin | "ListFiles" >> beam.Create(files)
        if len(files) > 1:  # spread files over workers; a lone file gains nothing from it
            names = names | "Distribute" >> beam.Reshuffle()
        return names | "ReadBatches" >> beam.FlatMap(
            read_batches, "StatisticsGen", self.batch_size, self.columns).with_output_types(pa.RecordBatch)


@beam.typehints.with_output_types(tuple[str, Statistics])
class ComputeParquetStatistics(beam.PTransform):
    """{split: file patterns} -> PCollection of (split, DatasetFeatureStatisticsList), one per split.

    What the component runs: each worker reads whole Parquet files (those of a
    bundle concurrently) and folds their batches straight into an accumulator
    per file (the next batch is read while the current one is summarized), so
    batches never travel through Beam as elements. In process, up to
    ``FILES_PER_ELEMENT`` files, a split's files are one element, merged by the
    worker that reads them; more files are spread over workers one by one and a
    combine per split merges them. With ``distribute`` (by default: when the
    pipeline's options ask for a runner with several workers, ``beam_workers.asks_for_workers``)
    every file is an element, a big file one per run of row groups
    (``read_ahead.file_pieces``), and the combine merges them. Same statistics as
    ``ReadParquetBatches | ComputeStatistics``, far fewer Beam stages and elements.
    """

    def __init__(self, file_patterns_by_split: dict[str, list[str]],
                 categorical_int_features: Iterable[str] = (), batch_size: int = DEFAULT_BATCH_ROWS,
                 distribute: bool | None = None):
        super().__init__()
        self.file_patterns_by_split = {split: list(p) for split, p in file_patterns_by_split.items()}
        self.categorical_int_features = frozenset(categorical_int_features)
        self.batch_size = batch_size
        self.distribute = distribute

    def expand(self, pbegin):
        by_split = {split: tuple(match_files(patterns, "StatisticsGen"))
                    for split, patterns in self.file_patterns_by_split.items()}
        distribute = self.distribute
        if distribute is None:
            distribute = asks_for_workers(pbegin.pipeline.options)
        if distribute:  # the driver cuts big files, so that their pieces go to different workers
            files = [(split, ((path, None if row_groups is None else tuple(row_groups)),))
                     for split, paths in by_split.items() for path in paths
                     for row_groups in read_ahead.file_pieces(path, read_ahead.PIECE_ROWS)]
        elif sum(len(paths) for paths in by_split.values()) <= FILES_PER_ELEMENT:
            # A few files: one element per split (that has files), nothing to merge.
            files = [(split, paths) for split, paths in by_split.items() if paths]
        else:
            files = [(split, (path,)) for split, paths in by_split.items() for path in paths]
        # Declared output types spare Beam's type inference (a noticeable part of its fixed cost).
        names = pbegin | "ListFiles" >> beam.Create(files, reshuffle=False).with_output_types(Any)
        several_in_a_split = distribute or len(files) > sum(1 for paths in by_split.values() if paths)
        if several_in_a_split:  # spread them over workers
            names = names | "Distribute" >> beam.Reshuffle().with_output_types(Any)
        summaries = names | "SummarizeFiles" >> beam.ParDo(
            SummarizeFilesFn(self.batch_size, self.categorical_int_features))
        if several_in_a_split:  # with one element per split (the usual case) there is nothing to merge
            summaries = summaries | "MergeFiles" >> beam.CombinePerKey(MergeDatasetsFn())
        return summaries | "ToProto" >> beam.MapTuple(
            lambda split, merged: (split, to_statistics_proto(merged, split))).with_output_types(Any)
