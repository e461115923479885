"""ExampleGen's Beam transforms (imports Beam: the executors import this module in their body).

The elements between them are ``RecordBatchElement``: (split or None, file index, RecordBatch
of about ``BATCH_ROWS`` rows). One input file is read by one worker, so many files scale out
across workers, and memory stays bounded by a few blocks per worker; on workers, a CSV file
larger than ``CSV_RANGE_BYTES`` is cut into byte ranges instead (``ReadCsvRanges``), and the
index is then an order key (``csv_ranges.order_key``: the file's index, then the range's).

    CSV:      ReadCsvToRecordBatches (InferCsvColumns as a side input when the sniffed types failed),
              ReadCsvRanges on workers
    Parquet:  ReadParquetToRecordBatches
    TFRecord: ReadTFRecordExamples
    then:     SplitAndWriteExamples -> (split, temp shard path, rows)
              | RecordWrittenShards; after the run, shards.finalize_shards names them
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

import sluice.components.io.coders  # noqa: F401 - registers the RecordBatch coder the elements' coder uses
from sluice.components.beam_workers import record_worker
from sluice.components.example_gen import config, csv_ranges, shards, sniff, sources
from sluice.components.example_gen.columns import CsvColumns, merge_kinds
from sluice.components.example_gen.config import InputFile, SplitConfig
from sluice.components.example_gen.csv_read import ReadCsvFile
from sluice.components.example_gen.shard_writer import ShardWriter
from sluice.components.example_gen.split import AssignSplits

# Coded as a tuple whose batch goes through the shared RecordBatchCoder (Arrow IPC, its size
# estimated from Arrow's own count instead of pickling sampled elements to measure them).
RecordBatchElement = tuple[str | None, int, pa.RecordBatch]
# What SplitAndWriteExamples emits per shard written: (split, temp shard path, rows).
WrittenShard = tuple[str, str, int]


@beam.typehints.with_output_types(InputFile)
class DistributedFiles(beam.PTransform):
    """PBegin -> the files, spread over workers (a Reshuffle) when there is more than one."""

    def __init__(self, files: list[InputFile]):
        super().__init__()
        self.files = files

    def expand(self, pbegin):
        created = pbegin | "Create" >> beam.Create(self.files)
        return created | "Distribute" >> beam.Reshuffle() if len(self.files) > 1 else created


@beam.typehints.with_output_types(RecordBatchElement)
class ReadCsvToRecordBatches(beam.PTransform):
    """PBegin -> (split, file index, RecordBatch) for every block of every CSV file.

    ``columns`` is a ``CsvColumns`` or a PCollection holding one (``InferCsvColumns``).
    ``range_bytes``: files larger than this are cut into byte ranges, parsed apart
    (``ReadCsvRanges``); None: one file, one element.

    >>> batches = pipeline | ReadCsvToRecordBatches([InputFile("data.csv", 0)], columns)  # doctest: +SKIP
    """

    def __init__(self, files: list[InputFile], columns, range_bytes: int | None = None):
        super().__init__()
        self.files, self.columns, self.range_bytes = files, columns, range_bytes

    def expand(self, pbegin):
        if self.range_bytes:
            return pbegin | "Ranges" >> ReadCsvRanges(self.files, self.columns, self.range_bytes)
        files = pbegin | "Files" >> DistributedFiles(self.files)
        if isinstance(self.columns, CsvColumns):
            return files | "Read" >> beam.FlatMap(ReadCsvFile(self.columns)).with_output_types(RecordBatchElement)
        return files | "Read" >> beam.FlatMap(
            lambda file, columns: ReadCsvFile(columns)(file), beam.pvalue.AsSingleton(self.columns)
        ).with_output_types(RecordBatchElement)


@beam.typehints.with_output_types(RecordBatchElement)
class ReadCsvRanges(beam.PTransform):
    """PBegin -> (split, order key, RecordBatch): files larger than ``range_bytes`` are cut into
    byte ranges parsed by any worker (``csv_ranges``), the others read whole.

    Stage 1 counts the quotes and line ends of every range of a cut file; the counts are a side
    input of stage 2, which parses each range's records. The order key (file index, then range
    number) takes the file index's place in the elements and the shard names.
    """

    def __init__(self, files: list[InputFile], columns, range_bytes: int):
        super().__init__()
        self.files, self.columns, self.range_bytes = files, columns, range_bytes

    def expand(self, pbegin):
        ranges, counts = _ranges_and_counts(pbegin, self.files, self.range_bytes)
        if isinstance(self.columns, CsvColumns):
            columns = self.columns
            return ranges | "Read" >> beam.FlatMap(
                lambda piece, counts: ReadCsvFile(columns).read_range(piece, counts), counts
            ).with_output_types(RecordBatchElement)
        return ranges | "Read" >> beam.FlatMap(
            lambda piece, counts, columns: ReadCsvFile(columns).read_range(piece, counts),
            counts, beam.pvalue.AsSingleton(self.columns),
        ).with_output_types(RecordBatchElement)


def _ranges_and_counts(pbegin, files: list[InputFile], range_bytes: int):
    """The files' ranges (spread over workers), and their stage 1 counts as a side input."""
    planned = csv_ranges.plan_ranges(files, range_bytes)
    ranges = pbegin | "Plan" >> beam.Create(planned)
    if len(planned) > 1:
        ranges = ranges | "Distribute" >> beam.Reshuffle()
    counts = (
        ranges
        | "Cut" >> beam.Filter(lambda piece: piece.count > 1)
        | "CountQuotes" >> beam.Map(csv_ranges.count_range)
    )
    return ranges, beam.pvalue.AsDict(counts)


@beam.typehints.with_input_types(tuple[int, ...])
@beam.typehints.with_output_types(tuple[int, ...])
class MergeColumnKinds(beam.CombineFn):
    """Merges per-file column kinds (tuples) by taking the widest kind of each column."""

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, kinds):
        return merge_kinds(accumulator, kinds)

    def merge_accumulators(self, accumulators):
        merged = None
        for accumulator in accumulators:
            merged = merge_kinds(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


@beam.typehints.with_output_types(CsvColumns)
class InferCsvColumns(beam.PTransform):
    """PBegin -> one ``CsvColumns`` with the exact kinds over all rows of all files.

    ``dictionary``: the string columns to read dictionary-encoded (a speed hint, see ``CsvColumns``).
    ``range_bytes``: files larger than this are scanned in byte ranges (as ``ReadCsvRanges`` reads them).
    """

    def __init__(self, files: list[InputFile], names: tuple[str, ...], null_values: tuple[str, ...] = ("",),
                 dictionary: frozenset[str] = frozenset(), range_bytes: int | None = None):
        super().__init__()
        self.files, self.names, self.null_values = files, tuple(names), tuple(null_values)
        self.dictionary, self.range_bytes = frozenset(dictionary), range_bytes

    def expand(self, pbegin):
        names, nulls, dictionary = self.names, self.null_values, self.dictionary
        scan = sniff.ScanCsvKinds(names, nulls)
        if self.range_bytes:
            ranges, counts = _ranges_and_counts(pbegin, self.files, self.range_bytes)
            kinds = ranges | "ScanKinds" >> beam.FlatMap(scan.scan_range, counts)
        else:
            kinds = pbegin | "Files" >> DistributedFiles(self.files) | "ScanKinds" >> beam.FlatMap(scan)
        return (
            kinds
            | "Merge" >> beam.CombineGlobally(MergeColumnKinds())
            | "Columns" >> beam.Map(lambda kinds: CsvColumns(names, tuple(kinds), exact=True, null_values=nulls,
                                                             dictionary=dictionary))
        )


@beam.typehints.with_output_types(RecordBatchElement)
class ReadParquetToRecordBatches(beam.PTransform):
    """PBegin -> (split, file index, RecordBatch) for Parquet files with ``schema``'s columns."""

    def __init__(self, files: list[InputFile], schema):
        super().__init__()
        self.files, self.schema = files, schema

    def expand(self, pbegin):
        return (
            pbegin
            | "Files" >> DistributedFiles(self.files)
            | "Read" >> beam.FlatMap(sources.ReadParquetFile(self.schema)).with_output_types(RecordBatchElement)
        )


@beam.typehints.with_output_types(RecordBatchElement)
class ReadTFRecordExamples(beam.PTransform):
    """PBegin -> (split, file index, RecordBatch) from TFRecord files of tf.Example.

    Reads the files twice: once to learn every feature's type and size (a side input), once to
    convert, so a column has one type across all files and no data is held in memory.
    """

    def __init__(self, files: list[InputFile]):
        super().__init__()
        self.files = files

    def expand(self, pbegin):
        features = (
            pbegin
            | "FilesForTypes" >> DistributedFiles(self.files)
            | "ScanFeatures" >> beam.FlatMap(sources.ScanTFRecordFeatures())
            | "MergeFeatures" >> beam.CombineGlobally(sources.merge_all_feature_summaries)
        )
        return (
            pbegin
            | "Files" >> DistributedFiles(self.files)
            | "Read" >> beam.FlatMap(sources.read_tfrecord_file, beam.pvalue.AsSingleton(features))
            .with_output_types(RecordBatchElement)
        )


def _count_rows(split: str, rows: int) -> None:
    beam.metrics.Metrics.counter(config.METRICS_NAMESPACE, f"rows/{split}").inc(rows)


@beam.typehints.with_input_types(RecordBatchElement)
@beam.typehints.with_output_types(WrittenShard)
class WriteShardsFn(beam.DoFn):
    """(split, file index, batch) -> temp shard files; emits (split, temp path, rows) per shard.

    The work is ``shard_writer.ShardWriter``'s (one per worker); the rows written per split are
    also counted in the metrics (namespace ``METRICS_NAMESPACE``, ``rows/<split>``), for runners'
    UIs: the published counts are those of the committed shards (``RecordWrittenShards``).
    """

    def __init__(self, output_uri: str, file_format: str):
        self.output_uri, self.file_format = output_uri, file_format

    def setup(self):
        self.writer = ShardWriter(self.output_uri, self.file_format, _count_rows)

    def teardown(self):
        self.writer.shutdown()

    def start_bundle(self):
        self.writer.start()

    def process(self, element):
        self.writer.add(*element)
        record_worker(element[2].num_rows)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        for item in self.writer.finish():
            yield GlobalWindows.windowed_value(item)


@beam.typehints.with_input_types(RecordBatchElement)
@beam.typehints.with_output_types(WrittenShard)
class SplitAndWriteExamples(beam.PTransform):
    """(split or None, file index, RecordBatch) -> (split, temp shard path, rows).

    Rows without a split are dealt by ``split_config``; the shards stay temp files under
    ``<output_uri>/Split-<split>/`` until ``finalize_shards`` names them part-NNNNN-of-MMMMM.
    """

    def __init__(self, output_uri: str, split_config: SplitConfig, file_format: str = "parquet"):
        super().__init__()
        self.output_uri, self.split_config, self.file_format = output_uri, split_config, file_format

    def expand(self, batches):
        return (
            batches
            | "AssignSplits" >> beam.FlatMap(AssignSplits(self.split_config)).with_output_types(RecordBatchElement)
            | "WriteShards" >> beam.ParDo(WriteShardsFn(self.output_uri, self.file_format))
        )


@beam.typehints.with_input_types(WrittenShard)
class RecordWrittenShards(beam.PTransform):
    """Saves the list of the shards the runner committed in ``output_uri`` (``shards.record_written``):
    what ``finalize_shards`` publishes, whatever retried attempts left beside them."""

    def __init__(self, output_uri: str):
        super().__init__()
        self.output_uri = output_uri

    def expand(self, written):
        return (
            written
            | "AllShards" >> beam.combiners.ToList()
            | "Record" >> beam.Map(shards.record_written, self.output_uri)
        )


__all__ = [
    "DistributedFiles",
    "InferCsvColumns",
    "MergeColumnKinds",
    "ReadCsvRanges",
    "ReadCsvToRecordBatches",
    "ReadParquetToRecordBatches",
    "ReadTFRecordExamples",
    "RecordBatchElement",
    "RecordWrittenShards",
    "SplitAndWriteExamples",
    "WriteShardsFn",
]
