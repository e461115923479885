"""The StatisticsGen component: per-split statistics of an Examples artifact, written as TFDV's protos."""

from __future__ import annotations

import os
from typing import Any

from sluice.components import beam_workers
from sluice.components.artifacts import Examples, ExampleStatistics, Schema
from sluice.components.io.files import exists, makedirs, read_bytes, write_bytes, write_text
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component
from sluice.components.statistics_gen.report import columns_for, render_report

FEATURE_STATS_FILE = "FeatureStats.pb"
REPORT_FILE = "report.html"


def generate_statistics(
    examples: Input[Examples],
    statistics: Output[ExampleStatistics],
    schema: Input[Schema] | None = None,
    baseline_statistics: Input[ExampleStatistics] | None = None,
    exclude_splits: list[str] = [],  # noqa: B006 (validated, never mutated)
    ctx: ExecutionContext = None,
) -> None:
    """Computes TFDV-format statistics of every split of ``examples`` not in ``exclude_splits``.

    ``schema`` (optional) marks INT features as categorical (``int_domain
    { is_categorical: true }``): those get string stats (top values), as TFDV.
    ``baseline_statistics`` (optional, a previous span's) are shown beside each split of the
    same name in the report, with the drift from them; they change no statistics.
    """
    ctx = ctx or ExecutionContext()
    if examples.file_format != "parquet":
        raise ComponentError(
            f"StatisticsGen: examples file_format '{examples.file_format}' is not supported (only 'parquet')"
        )
    unknown = sorted(set(exclude_splits) - set(examples.split_names))
    if unknown:
        raise ComponentError(
            f"StatisticsGen: parameter 'exclude_splits' names unknown splits {unknown} "
            f"(splits: {examples.split_names})"
        )
    splits = [s for s in examples.split_names if s not in exclude_splits]
    categorical = _categorical_int_features(schema)

    import apache_beam as beam
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from sluice.components.statistics_gen import transforms

    outputs = {}
    for split in splits:
        makedirs(statistics.split_uri(split))
        outputs[split] = os.path.join(statistics.split_uri(split), FEATURE_STATS_FILE)
    patterns = {split: [examples.parquet_pattern(split)] for split in splits}
    try:
        # One pipeline for all splits: one start-up cost, and the runner may overlap them.
        # The statistics reach the driver through the artifact store: workers write them there.
        with ctx.beam_pipeline() as pipeline:
            distributed = beam_workers.asks_for_workers(pipeline.options)  # running may rewrite the options
            _ = (
                pipeline
                | "Statistics" >> transforms.ComputeParquetStatistics(patterns, categorical)
                | "Write" >> beam.MapTuple(
                    lambda split, proto: write_bytes(outputs[split], proto.SerializeToString())
                ).with_output_types(Any)
            )
    except ComponentError as exc:
        # Beam appends the failing step and a traceback; keep the one-line message.
        raise ComponentError(str(exc).splitlines()[0]) from None
    # On a runner with workers: how many processes summarized rows (none where it has no metrics).
    workers = beam_workers.workers_of(pipeline.result) if distributed else None
    if workers is not None:
        ctx.log_metric("workers", workers)
    datasets = {}
    for split, output in outputs.items():
        datasets[split] = statistics_pb2.DatasetFeatureStatisticsList.FromString(read_bytes(output)).datasets[0]
        ctx.log_metric(f"num_examples_{split}", datasets[split].num_examples)
    baseline = _baseline_datasets(baseline_statistics, splits)
    columns = columns_for(datasets, baseline, baseline_statistics.span if baseline_statistics else None)
    write_text(statistics.path(REPORT_FILE), render_report(columns))
    statistics.split_names = splits
    statistics.span = examples.span


def _baseline_datasets(baseline: ExampleStatistics | None, splits: list[str]) -> dict[str, Any]:
    """The baseline's statistics of the splits it shares with this run, by split."""
    if baseline is None:
        return {}
    from sluice.components.tfdv import default_dataset, load_statistics

    found = {}
    for split in splits:
        path = os.path.join(baseline.split_uri(split), FEATURE_STATS_FILE)
        if split in baseline.split_names and exists(path):
            found[split] = default_dataset(load_statistics(path, "StatisticsGen"))
    return found


def _categorical_int_features(schema: Schema | None) -> list[str]:
    """INT features the schema marks categorical (int_domain.is_categorical or bool_domain)."""
    if schema is None:
        return []
    from tensorflow_metadata.proto.v0 import schema_pb2

    from sluice.components.tfdv import load_schema

    parsed = load_schema(schema.file, "StatisticsGen")
    return [
        f.name for f in parsed.feature
        if f.type == schema_pb2.INT and (f.int_domain.is_categorical or f.HasField("bool_domain"))
    ]


# Its report's charts: matplotlib imported in the background while earlier components run.
StatisticsGen = component(generate_statistics, name="StatisticsGen", remote_io=True,
                          warm_imports=("matplotlib.figure", "matplotlib.backends.backend_svg"))
