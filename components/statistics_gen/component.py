"""The StatisticsGen component: per-split statistics of an Examples artifact, written as TFDV's protos."""

from __future__ import annotations

import os
from typing import Any

from sluice.components.artifacts import Examples, ExampleStatistics, Schema
from sluice.components.io.files import read_bytes, write_bytes, write_text
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component
from sluice.components.statistics_gen.report import render_report

FEATURE_STATS_FILE = "FeatureStats.pb"
REPORT_FILE = "report.html"


def generate_statistics(
    examples: Input[Examples],
    statistics: Output[ExampleStatistics],
    schema: Input[Schema] | None = None,
    exclude_splits: list[str] = [],  # noqa: B006 (validated, never mutated)
    ctx: ExecutionContext = None,
) -> None:
    """Computes TFDV-format statistics of every split of ``examples`` not in ``exclude_splits``.

    ``schema`` (optional) marks INT features as categorical (``int_domain
    { is_categorical: true }``): those get string stats (top values), as TFDV.
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
        os.makedirs(statistics.split_uri(split), exist_ok=True)
        outputs[split] = os.path.join(statistics.split_uri(split), FEATURE_STATS_FILE)
    patterns = {split: [examples.parquet_pattern(split)] for split in splits}
    try:
        # One pipeline for all splits: one start-up cost, and the runner may overlap them.
        with ctx.beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "Statistics" >> transforms.ComputeParquetStatistics(patterns, categorical)
                | "Write" >> beam.MapTuple(
                    lambda split, proto: _write_outputs(proto, outputs[split], split)).with_output_types(Any)
            )
    except ComponentError as exc:
        # Beam appends the failing step and a traceback; keep the one-line message.
        raise ComponentError(str(exc).splitlines()[0]) from None
    for split, output in outputs.items():
        dataset = statistics_pb2.DatasetFeatureStatisticsList.FromString(read_bytes(output)).datasets[0]
        ctx.log_metric(f"num_examples_{split}", dataset.num_examples)
    statistics.split_names = splits
    statistics.span = examples.span


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


def _write_outputs(proto, output_path: str, split: str) -> None:
    """Writes one split's statistics and, beside them, its report."""
    write_bytes(output_path, proto.SerializeToString())
    write_text(os.path.join(os.path.dirname(output_path), REPORT_FILE), render_report(proto, split))


StatisticsGen = component(generate_statistics, name="StatisticsGen")
