"""ExampleValidator: checks a split's statistics against a schema, as TFDV does.

The checks follow ``tfdv.validate_statistics`` (TFDV 1.16's C++ validator):
same anomaly types, short/long descriptions and severities, written as a
tensorflow_metadata ``Anomalies`` proto per split (``Split-<s>/SchemaDiff.pb``)
next to a self-contained ``report.html``. The checking engine is shared:
``sluice.components.tfdv``.

Drift against a previous span (``baseline_statistics``) is configured with
``drift={"feature": threshold}``: string features are compared with the
L-infinity distance of their value frequencies, numeric ones with the
approximate Jensen-Shannon divergence of their histograms (TFDV's
``drift_comparator`` ``infinity_norm`` / ``jensen_shannon_divergence``).

Checking statistics without any pipeline::

    from sluice.components.tfdv import validate_statistics, format_anomalies
    anomalies = validate_statistics(stats_list, schema_proto)   # protos in, Anomalies out
    print(format_anomalies({"eval": anomalies}))
"""

from __future__ import annotations

import os
from typing import Any

from sluice.components import reports
from sluice.components.artifacts import ExampleAnomalies, ExampleStatistics, Schema
from sluice.components.io.files import exists, read_bytes, write_bytes
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component
from sluice.components.tfdv import (
    DatasetView,
    add_drift_comparators,
    count_errors,
    default_dataset,
    find_feature,
    format_anomalies,
    load_schema,
    load_statistics,
    serialize_path,
    severity_name,
    six_digits,
    validate_statistics,
)

__all__ = ["ExampleValidator", "read_anomalies", "render_report", "validate_examples"]

SEVERITIES = ("ERROR", "WARNING")


def read_anomalies(anomalies: ExampleAnomalies) -> tuple[dict[str, Any], dict[str, str]]:
    """Loads a published ExampleAnomalies artifact: ({split: Anomalies}, {split: report path}).

    For the CLI: ``print(format_anomalies(*read_anomalies(artifact)))``.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    by_split, report_paths = {}, {}
    for split in anomalies.split_names:
        result = anomalies_pb2.Anomalies()
        result.ParseFromString(read_bytes(os.path.join(anomalies.split_uri(split), "SchemaDiff.pb")))
        by_split[split] = result
        report_paths[split] = os.path.join(anomalies.split_uri(split), "report.html")
    return by_split, report_paths


def render_report(split: str, anomalies, dataset, schema) -> str:
    """A self-contained HTML page listing one split's anomalies and drift measurements."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    type_name = anomalies_pb2.AnomalyInfo.Type.Name
    rows = [
        {
            "feature": name,
            "severity": severity_name(info),
            "short": info.short_description,
            "long": info.description,
            "types": ", ".join(type_name(r.type) for r in info.reason),
        }
        for name, info in sorted(anomalies.anomaly_info.items())
    ]
    measurement_name = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name
    drift = [
        {
            "feature": serialize_path(info.path.step),
            "metric": measurement_name(m.type),
            "value": six_digits(m.value),
            "threshold": six_digits(m.threshold),
        }
        for info in anomalies.drift_skew_info
        for m in info.drift_measurements
    ]
    return reports.render(
        "anomalies.html.j2",
        split=split,
        rows=rows,
        errors=sum(1 for r in rows if r["severity"] == "ERROR"),
        drift=drift,
        num_examples=int(dataset.num_examples),
        num_features=len(dataset.features),
        schema_features=len(schema.feature),
    )


# --- the component ------------------------------------------------------------


def _check_params(schema, drift: dict[str, float], severity_overrides: dict[str, str]) -> None:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    known_types = set(anomalies_pb2.AnomalyInfo.Type.keys())
    for anomaly_type, severity in severity_overrides.items():
        if anomaly_type not in known_types:
            raise ComponentError(
                f"ExampleValidator: parameter 'severity_overrides' names unknown anomaly type {anomaly_type!r} "
                f"(e.g. SCHEMA_NEW_COLUMN, ENUM_TYPE_UNEXPECTED_STRING_VALUES)")
        if severity not in SEVERITIES:
            raise ComponentError(
                f"ExampleValidator: parameter 'severity_overrides'[{anomaly_type!r}] must be 'ERROR' or 'WARNING', "
                f"got {severity!r}")
    for name, threshold in drift.items():
        if find_feature(schema, (name,)) is None:
            raise ComponentError(
                f"ExampleValidator: parameter 'drift' names feature {name!r}, which is not in the schema")
        if not threshold >= 0:
            raise ComponentError(
                f"ExampleValidator: parameter 'drift'[{name!r}] must be a threshold >= 0, got {threshold}")


def validate_examples(
    statistics: Input[ExampleStatistics],
    schema: Input[Schema],
    anomalies: Output[ExampleAnomalies],
    baseline_statistics: Input[ExampleStatistics] | None = None,
    fail_on_anomalies: bool = True,
    exclude_splits: list[str] = [],  # noqa: B006 - never mutated; the component's declared default
    drift: dict[str, float] = {},  # noqa: B006 - never mutated; the component's declared default
    severity_overrides: dict[str, str] = {},  # noqa: B006 - never mutated; the component's declared default
    ctx: ExecutionContext = None,
) -> None:
    """Validates each split's statistics against the schema (and a baseline span, for drift).

    Writes ``Split-<s>/SchemaDiff.pb`` (TFDV Anomalies) and ``Split-<s>/report.html``.
    With ``fail_on_anomalies`` (default) and any anomaly of severity ERROR, it still publishes
    them but blocks what depends on it (``ctx.block``: the run fails, listing the anomalies).
    ``severity_overrides`` (anomaly type name -> "WARNING"/"ERROR") demotes or promotes types, e.g.
    ``{"SCHEMA_NEW_COLUMN": "WARNING"}``.
    """
    ctx = ctx or ExecutionContext()
    schema_proto = load_schema(schema.file, "ExampleValidator")
    _check_params(schema_proto, drift, severity_overrides)
    add_drift_comparators(schema_proto, drift)

    splits = [s for s in statistics.split_names if s not in exclude_splits]
    if not splits:
        raise ComponentError(
            f"ExampleValidator: no split left to validate (split_names={statistics.split_names}, "
            f"exclude_splits={exclude_splits})")
    results: dict[str, Any] = {}
    total = 0
    for split in splits:
        stats_path = os.path.join(statistics.split_uri(split), "FeatureStats.pb")
        stats = load_statistics(stats_path, "ExampleValidator")
        previous = None
        if baseline_statistics is not None:
            # Drift compares a split with the same split of the baseline span.
            baseline_path = os.path.join(baseline_statistics.split_uri(split), "FeatureStats.pb")
            if split in baseline_statistics.split_names or exists(baseline_path):
                previous = load_statistics(baseline_path, "ExampleValidator")
        try:
            result = validate_statistics(stats, schema_proto, previous, severity_overrides)
        except ComponentError as exc:
            raise ComponentError(f"ExampleValidator: {stats_path}: {exc}") from None
        split_dir = anomalies.split_uri(split)
        write_bytes(os.path.join(split_dir, "SchemaDiff.pb"), result.SerializeToString())
        report = render_report(split, result, DatasetView(default_dataset(stats)), schema_proto)
        write_bytes(os.path.join(split_dir, "report.html"), report.encode("utf-8"))
        results[split] = result
        total += len(result.anomaly_info)
    anomalies.split_names = splits
    anomalies.anomaly_count = total
    ctx.log_metric("anomalies", total)
    if fail_on_anomalies and any(count_errors(r) for r in results.values()):
        ctx.block(anomalies_block(results))


def anomalies_block(results: dict[str, Any], max_lines: int = 20) -> str:
    """Why the run stops: a first line naming the columns, then the list (at most ``max_lines``
    anomalies; every one is in the splits' reports, which are published)."""
    columns = sorted({name for r in results.values() for name, info in r.anomaly_info.items()
                      if severity_name(info) == "ERROR"})
    named = ", ".join(repr(c) for c in columns[:5]) + (f" and {len(columns) - 5:,} more" if len(columns) > 5 else "")
    noun = "column breaks" if len(columns) == 1 else "columns break"
    head = f"blocked by anomalies: {len(columns):,} {noun} the schema: {named} (fail_on_anomalies is set)"
    return head + "\n" + format_anomalies(results, max_lines=max_lines)


ExampleValidator = component(validate_examples, name="ExampleValidator")
