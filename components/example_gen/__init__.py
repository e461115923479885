"""ExampleGen: turns external data (CSV, Parquet, TFRecord) into split Examples.

Three components, one layout (see ``components.artifacts.Examples``)::

    <uri>/Split-<split>/part-NNNNN-of-MMMMM.parquet        (output_format="parquet")
    <uri>/Split-<split>/part-NNNNN-of-MMMMM.tfrecord.gz    (output_format="tfrecord")

Typical use, as in TFX::

    example_gen = CsvExampleGen(input_base="data/taxi")                     # train:eval = 2:1
    example_gen = CsvExampleGen(input_base="data/taxi_spans", input_pattern="span-{SPAN}/data.csv")
    example_gen = CsvExampleGen(input_base="data", input_config={"train": "train/*.csv", "eval": "eval/*.csv"})
    example_gen = ImportExampleGen(input_base="tfx_output/CsvExampleGen/examples/7")   # Split-*/ kept

Inputs (``inputs``)
    ``input_base`` is a folder (or one file). ``input_pattern`` (default ``*``: every file in the
    folder, hidden files and ``_*`` excluded) or ``input_config`` (split name -> pattern, no hash
    splitting) are relative to it. Patterns are globs that may hold ``{SPAN}``, ``{VERSION}`` or
    ``{YYYY}{MM}{DD}`` (parsed by ``sluice.components.io.spans``). A date becomes the span number
    of days since 1970-01-01, as in TFX. The latest span (and its latest version) is read unless
    ``span_range`` picks several; the output's ``span`` is then the last span read, ``version``
    that span's version (None without ``{VERSION}``).

Splitting (``split``)
    ``output_config=SplitConfig(splits={"train": 2, "eval": 1}, partition_feature=None)``: each row
    goes to one of 3 hash buckets, dealt to the splits in the given proportions. The hash is of the
    partition feature's value (equal values share a split) or of all scalar columns of the row, so
    a row lands in the same split on every run, whatever the block size, runner or number of workers.

CSV column types (``columns``, ``sniff``, ``csv_read``)
    Every column becomes int64, float64 or string, nullable; an empty field is null. A column whose
    values are all integral numbers (``480`` or ``480.0``) is int64, other numbers float64, anything
    else string; a column with no value at all is int64 (all of its values are integral, and the
    same column with values in another span is int64 too). Every row counts: the types sniffed
    from each file's first block are checked while converting every block, and any contradiction
    makes the pipeline run again with types inferred over all rows first (``InferCsvColumns``, a
    side input of the same pipeline), so the common case reads the data once.

    String columns with few distinct values in the sniffed block (``CsvColumns.dictionary``) are
    read dictionary-encoded: hashing rows, splitting them and writing Parquet's dictionary pages
    then work on integer codes. They read back as plain strings.

CSV errors (``file_checks``, ``csv_errors``)
    At the door, before any file is opened: a FIFO, a device or a socket is refused by name
    (``os.stat``); then each file's head: no bytes at all ("empty file"), a UTF-16/32 byte-order
    mark, NUL bytes, a header that is not UTF-8, one line with no line end ("header but no data
    rows"), a header of one column holding ';', a tab or '|'. While reading: wrong column count,
    broken quoting, a quote left open up to the end of the file, non-UTF-8 bytes, header-only
    files, empty or duplicate column names. Every error is ``ComponentError("<file>[:<line>]: ...")``;
    the line assumes no quoted value spans lines before it (in its file, or in its byte range).

Ranges (``csv_ranges``)
    When the Beam options ask for workers (another runner, or ``direct_num_workers`` other than 1),
    a CSV file larger than ``CSV_RANGE_BYTES`` (64 MB) is cut into byte ranges that any worker
    parses, their boundaries found from the quote parity (quoted line breaks stay in their value).
    The rows and their order are those of the in-process run.

Parquet output (``shards``, ``shard_writer``)
    Row groups of ``ROW_GROUP_ROWS`` rows; per input file, a split's row groups are dealt in turn
    to ``SHARDS_PER_FILE`` shards written side by side (so a split's rows keep input order within
    a shard, not across its shards). Per column, judged on the shard's first row group
    (``column_encodings``): dictionary pages with uncompressed codes for strings and few-valued
    floats, delta encoding for integers, snappy for other floats unless it barely shrinks them.

The Beam work is in composite transforms in ``sluice.components.example_gen.transforms``
(``ReadCsvToRecordBatches``, ``InferCsvColumns``, ``ReadParquetToRecordBatches``,
``ReadTFRecordExamples``, ``SplitAndWriteExamples``); importing this package does not import Beam.
"""

from sluice.components.example_gen.columns import CsvColumns, classify_strings
from sluice.components.example_gen.component import (
    CsvExampleGen,
    ImportExampleGen,
    ParquetExampleGen,
    csv_example_gen,
    import_example_gen,
    parquet_example_gen,
)
from sluice.components.example_gen.config import InputFile, SpanRange, SplitConfig
from sluice.components.example_gen.inputs import ResolvedInput, resolve_input
from sluice.components.example_gen.shards import column_encodings, finalize_shards
from sluice.components.example_gen.sniff import sniff_csv_columns
from sluice.components.example_gen.split import row_hashes

__all__ = [
    "CsvExampleGen",
    "ParquetExampleGen",
    "ImportExampleGen",
    "csv_example_gen",
    "parquet_example_gen",
    "import_example_gen",
    "SplitConfig",
    "SpanRange",
    "InputFile",
    "ResolvedInput",
    "CsvColumns",
    "sniff_csv_columns",
    "classify_strings",
    "resolve_input",
    "row_hashes",
    "column_encodings",
    "finalize_shards",
]
