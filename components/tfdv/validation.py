"""Statistics against a schema, as ``tfdv.validate_statistics``: Anomalies protos and their summary."""

from __future__ import annotations

from typing import Any

from sluice.components.tfdv.features import (
    Description,
    find_feature,
    has_named,
    is_deprecated,
    is_existence_required,
)
from sluice.components.tfdv.protos import default_dataset
from sluice.components.tfdv.rules import update_feature
from sluice.components.tfdv.views import DatasetView, FeatureView, serialize_path


def _severity_of(descriptions: list[Description], severity_overrides: dict[str, str]) -> str:
    # All anomalies are errors unless overridden by type; the worst wins.
    levels = [severity_overrides.get(d.type, "ERROR") for d in descriptions]
    return "ERROR" if "ERROR" in levels else ("WARNING" if levels else "UNKNOWN")


def _anomaly_info(steps, descriptions: list[Description], severity: str):
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    info = anomalies_pb2.AnomalyInfo()
    info.path.step.extend(steps)
    if descriptions and all(d.type == "SCHEMA_NEW_COLUMN" for d in descriptions):
        descriptions = descriptions[:1]
    unified = Description("UNKNOWN_TYPE", "", "")
    for description in descriptions:
        reason = info.reason.add()
        reason.type = anomalies_pb2.AnomalyInfo.Type.Value(description.type)
        reason.short_description = description.short
        reason.description = description.long
        if not unified.long:
            unified = description
        elif description.long:
            unified = Description("UNKNOWN_TYPE", "Multiple errors", unified.long + " " + description.long)
    info.description = unified.long
    info.short_description = unified.short
    info.severity = anomalies_pb2.AnomalyInfo.Severity.Value(severity)
    return info


def validate_statistics(statistics, schema, previous_statistics=None,
                        severity_overrides: dict[str, str] | None = None):
    """Validates statistics against a schema, as ``tfdv.validate_statistics``.

    ``statistics``/``previous_statistics`` are ``DatasetFeatureStatisticsList``
    protos (the default dataset is used), ``schema`` a ``Schema`` proto (not
    modified). ``severity_overrides`` maps an anomaly type name (e.g.
    ``"SCHEMA_NEW_COLUMN"``) to ``"WARNING"`` or ``"ERROR"``. Returns an
    ``anomalies_pb2.Anomalies``.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    overrides = severity_overrides or {}
    current = DatasetView(default_dataset(statistics))
    previous = DatasetView(default_dataset(previous_statistics)) if previous_statistics is not None else None
    result = anomalies_pb2.Anomalies()
    result.baseline.CopyFrom(schema)
    result.anomaly_name_format = anomalies_pb2.Anomalies.SERIALIZED_PATH

    drift_by_key: dict[str, tuple] = {}
    for view in current.root_features():
        _validate_recursively(view, current, schema, previous, overrides, result, drift_by_key)
    for key in sorted(drift_by_key):  # TFDV keeps them in a map ordered by path
        steps, measurements = drift_by_key[key]
        info = result.drift_skew_info.add()
        info.path.step.extend(steps)
        info.drift_measurements.extend(measurements)

    present = {view.key for view in current.features}
    for steps, _feature in _required_features(schema.feature, ()):
        key = serialize_path(steps)
        if key not in present:
            description = Description("SCHEMA_MISSING_COLUMN", "Column dropped", "Column is completely missing")
            result.anomaly_info[key].CopyFrom(
                _anomaly_info(steps, [description], _severity_of([description], overrides)))
    return result


def _validate_recursively(view: FeatureView, dataset: DatasetView, schema, previous, overrides, result,
                          drift_by_key: dict) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    feature = find_feature(schema, view.steps)
    if feature is None:
        if len(view.steps) == 1 and (has_named(schema.sparse_feature, view.steps[0])
                                     or has_named(schema.weighted_feature, view.steps[0])):
            return  # composite features are not checked here
        description = Description("SCHEMA_NEW_COLUMN", "New column", "New column (column in data but not in schema)")
        result.anomaly_info[view.key].CopyFrom(
            _anomaly_info(view.steps, [description], _severity_of([description], overrides)))
        return
    if is_deprecated(feature):
        return
    # Each feature is checked against its own copy of the schema, as in TFDV.
    work = schema_pb2.Schema()
    work.CopyFrom(schema)
    work_feature = find_feature(work, view.steps)
    measurements: list = []
    descriptions = update_feature(work_feature, view, work, previous, measurements)
    if descriptions:
        result.anomaly_info[view.key].CopyFrom(
            _anomaly_info(view.steps, descriptions, _severity_of(descriptions, overrides)))
    if measurements:
        drift_by_key[view.key] = (view.steps, measurements)
    if is_deprecated(work_feature):
        return
    for child in dataset.features:
        if len(child.steps) == len(view.steps) + 1 and child.steps[:-1] == view.steps:
            _validate_recursively(child, dataset, schema, previous, overrides, result, drift_by_key)


def _required_features(features, prefix):
    for feature in features:
        steps = prefix + (feature.name,)
        if is_existence_required(feature):
            yield steps, feature
        if not is_deprecated(feature):
            yield from _required_features(feature.struct_domain.feature, steps)


def severity_name(info) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)


def count_errors(anomalies) -> int:
    return sum(1 for info in anomalies.anomaly_info.values() if severity_name(info) == "ERROR")


def format_anomalies(anomalies_by_split: dict[str, Any], report_paths: dict[str, str] | None = None,
                     max_lines: int = 20, full_list_in: str = "the split's anomalies report") -> str:
    """One readable block: per split a headline, then one line per anomalous feature.

    At most ``max_lines`` feature lines in all: the rest of a split is one line "... and N more;
    the full list is in <its report path, or ``full_list_in``>".

    >>> print(format_anomalies({"eval": anomalies}))          # doctest: +SKIP
    2 anomalies in split 'eval'
      - company: Examples contain values missing from the schema: Foo Cab (<1%).
      - tips: Column is completely missing
    """
    blocks = []
    budget = max_lines
    for split, anomalies in anomalies_by_split.items():
        infos = sorted(anomalies.anomaly_info.items())
        if not infos:
            continue
        noun = "anomaly" if len(infos) == 1 else "anomalies"
        head = f"{len(infos)} {noun} in split '{split}'"
        report = (report_paths or {}).get(split)
        if report:
            head += f" (see {report})"
        # A list one line over the budget is shown whole: "and 1 more" would save nothing.
        shown = infos if len(infos) <= budget + 1 else infos[:budget]
        budget = max(0, budget - len(shown))
        lines = [head] + [_anomaly_line(name, info) for name, info in shown]
        if len(shown) < len(infos):
            lines.append(f"  ... and {len(infos) - len(shown):,} more; the full list is in {report or full_list_in}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) if blocks else "no anomalies"


def _anomaly_line(name: str, info) -> str:
    text = (info.description or info.short_description).strip()
    marker = " [warning]" if severity_name(info) == "WARNING" else ""
    return f"  - {name}: {text}{marker}"
