"""The three ExampleGen components: CsvExampleGen, ParquetExampleGen, ImportExampleGen.

Each executor resolves its input files, builds one Beam pipeline from ``transforms`` (imported
in the executor's body, so that defining a pipeline does not import Beam), renames the shards
it wrote and publishes the Examples artifact's span, version, splits and row counts.
"""

from __future__ import annotations

from typing import Any, Literal

from sluice.components import beam_workers
from sluice.components.artifacts import Examples
from sluice.components.example_gen import config, inputs, shards
from sluice.components.example_gen.config import ColumnTypeChanged, SpanRange, SplitConfig, one_line
from sluice.components.example_gen.sniff import sniff_csv_columns
from sluice.components.example_gen.sources import parquet_schema
from sluice.components.example_gen.split import split_names
from sluice.components.sdk import ComponentError, ExecutionContext, ExternalData, Output, component, worker_error_line


def _run(ctx: ExecutionContext, build) -> Any:
    """Runs the pipeline ``build(p)`` made; ComponentErrors from workers come out as one line. On
    workers, logs how many processes wrote rows (``workers``)."""
    pipeline = ctx.beam_pipeline()
    build(pipeline)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except ComponentError as exc:
        raise ComponentError(one_line(str(exc))) from None
    except Exception as exc:
        line = worker_error_line(exc)  # a worker process's error arrives as a traceback's text
        if line is None:
            raise
        raise ComponentError(one_line(line)) from None
    workers = beam_workers.workers_of(result) if beam_workers.asks_for_workers(ctx.beam_pipeline_args) else None
    if workers is not None:
        ctx.log_metric("workers", workers)  # how many processes wrote rows
    return result


def _finalize(uri: str, splits: list[str], file_format: str, schema, owner: str) -> dict[str, int]:
    """Publishes the shards the runner committed (``shards.finalize_shards``); their rows per split."""
    return shards.finalize_shards(uri, splits, file_format, shards.read_written(uri, owner), schema)


def _clear_output(uri: str, splits: list[str]) -> None:
    """Removes what a failed attempt wrote, before the retry."""
    from apache_beam.io.filesystems import FileSystems

    folders = [FileSystems.join(uri, f"Split-{split}") for split in splits]
    FileSystems.delete([f for f in folders if FileSystems.exists(f)])


def _publish(examples, resolved, splits, rows, file_format, ctx) -> None:
    examples.split_names = splits
    examples.span = resolved.span
    examples.version = resolved.version
    examples.file_format = file_format
    for split in splits:
        ctx.log_metric(f"rows_{split}", rows.get(split, 0))
    ctx.log_metric("rows", sum(rows.values()))
    ctx.log_metric("input_files", len(resolved.files))


def csv_example_gen(
    examples: Output[Examples],
    input_base: ExternalData,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    output_config: SplitConfig = SplitConfig(),  # noqa: B008 - a frozen model
    span_range: SpanRange | None = None,
    output_format: Literal["parquet", "tfrecord"] = "parquet",
    null_values: list[str] = [""],  # noqa: B006 - validated, never mutated
    ctx: ExecutionContext = None,
) -> None:
    """Reads CSV files (header line, comma-separated) into split Examples; see the package docstring.

    ``null_values``: the field texts that mean "missing" (an empty field by default; e.g.
    ``["", "NA"]`` for R-style files such as the palmerpenguins CSV).

    >>> csv_example_gen(Examples(uri=out), input_base="data/taxi", ctx=ExecutionContext())  # doctest: +SKIP
    """
    from sluice.components.example_gen import transforms

    ctx = ctx or ExecutionContext()
    who = "CsvExampleGen"
    resolved = inputs.resolve_input(who, input_base, input_pattern, input_config, span_range)
    nulls = tuple(null_values)
    columns = sniff_csv_columns(who, resolved.files, nulls)
    feature = output_config.partition_feature
    if feature is not None and feature not in columns.names and not input_config:
        raise ComponentError(
            f"{who}: output_config.partition_feature '{feature}' is not a column of {resolved.files[0].path}"
        )
    splits = split_names(resolved.files, output_config)

    # On workers, large files are cut into byte ranges; in-process, a file is parsed on threads.
    range_bytes = config.CSV_RANGE_BYTES if beam_workers.asks_for_workers(ctx.beam_pipeline_args) else None

    def build(p, exact: bool):
        infer = transforms.InferCsvColumns(resolved.files, columns.names, nulls, columns.dictionary, range_bytes)
        source = (p | "InferTypes" >> infer) if exact else columns
        (
            p
            | "ReadCsv" >> transforms.ReadCsvToRecordBatches(resolved.files, source, range_bytes)
            | "SplitAndWrite" >> transforms.SplitAndWriteExamples(examples.uri, output_config, output_format)
            | "RecordShards" >> transforms.RecordWrittenShards(examples.uri)
        )

    try:
        _run(ctx, lambda p: build(p, exact=False))
    except Exception as exc:  # noqa: BLE001 - only a type contradiction is retried
        if ColumnTypeChanged.MARKER not in str(exc):
            raise
        # A later block contradicts the sniffed types: start over, inferring over all rows first.
        _clear_output(examples.uri, splits)
        _run(ctx, lambda p: build(p, exact=True))
    rows = _finalize(examples.uri, splits, output_format, columns.arrow_schema(), who)
    _publish(examples, resolved, splits, rows, output_format, ctx)


def parquet_example_gen(
    examples: Output[Examples],
    input_base: ExternalData,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    output_config: SplitConfig = SplitConfig(),  # noqa: B008 - a frozen model
    span_range: SpanRange | None = None,
    output_format: Literal["parquet", "tfrecord"] = "parquet",
    ctx: ExecutionContext = None,
) -> None:
    """Reads Parquet files (all with the first file's columns) into split Examples."""
    from sluice.components.example_gen import transforms

    ctx = ctx or ExecutionContext()
    who = "ParquetExampleGen"
    resolved = inputs.resolve_input(who, input_base, input_pattern, input_config, span_range)
    schema = parquet_schema(resolved.files)
    _split_write_publish(ctx, examples, resolved, output_config, output_format,
                         "ReadParquet" >> transforms.ReadParquetToRecordBatches(resolved.files, schema),
                         schema, who)


def import_example_gen(
    examples: Output[Examples],
    input_base: ExternalData,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    output_config: SplitConfig = SplitConfig(),  # noqa: B008 - a frozen model
    span_range: SpanRange | None = None,
    output_format: Literal["parquet", "tfrecord"] = "parquet",
    ctx: ExecutionContext = None,
) -> None:
    """Reads TFRecord files of serialized tf.Example (gzip when named ``*.gz``) into Examples.

    When ``input_base`` holds TFX-style ``Split-<name>/`` folders (what a TFX ExampleGen wrote)
    and neither ``input_config`` nor ``input_pattern`` is given, those splits are kept as they are.
    Single-valued features become scalar columns (int64, float64, string); features with more
    than one value in some example stay list columns.
    """
    import pyarrow as pa

    from sluice.components.example_gen import transforms

    ctx = ctx or ExecutionContext()
    who = "ImportExampleGen"
    if input_config is None and input_pattern == "*" and not inputs.is_file(input_base):
        input_config = inputs.tfx_split_folders(input_base) or None
    resolved = inputs.resolve_input(who, input_base, input_pattern, input_config, span_range)
    _split_write_publish(ctx, examples, resolved, output_config, output_format,
                         "ReadTFRecord" >> transforms.ReadTFRecordExamples(resolved.files),
                         pa.schema([]), who)


def _split_write_publish(ctx, examples, resolved, output_config, output_format, read, schema, who) -> None:
    """Runs ``read`` into split shards, finalizes them (``schema`` for an empty split when no shard
    was written) and publishes the counts."""
    from sluice.components.example_gen import transforms

    splits = split_names(resolved.files, output_config)
    _run(ctx, lambda p: (
        p | read | "SplitAndWrite" >> transforms.SplitAndWriteExamples(examples.uri, output_config, output_format)
        | "RecordShards" >> transforms.RecordWrittenShards(examples.uri)
    ))
    rows = _finalize(examples.uri, splits, output_format, schema, who)
    _publish(examples, resolved, splits, rows, output_format, ctx)


# Every read and write goes through Beam's filesystems: on workers, the Examples go straight to the store.
CsvExampleGen = component(csv_example_gen, name="CsvExampleGen", remote_io=True)
ParquetExampleGen = component(parquet_example_gen, name="ParquetExampleGen", remote_io=True)
ImportExampleGen = component(import_example_gen, name="ImportExampleGen", remote_io=True)
