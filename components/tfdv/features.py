"""The vocabulary the schema rules share: anomaly descriptions and schema feature lookups."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class Description:
    """One reason of an anomaly: an ``AnomalyInfo.Type`` name and TFDV's texts."""

    type: str
    short: str
    long: str = ""


def six_digits(value: float) -> str:
    """absl::SixDigits: six significant digits, trailing zeros dropped."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def deprecate(feature) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    feature.lifecycle_stage = schema_pb2.DEPRECATED


def is_deprecated(feature) -> bool:
    from tensorflow_metadata.proto.v0 import schema_pb2

    if feature.deprecated:
        return True
    if feature.HasField("lifecycle_stage"):
        return feature.lifecycle_stage in (
            schema_pb2.PLANNED, schema_pb2.ALPHA, schema_pb2.DEPRECATED,
            schema_pb2.DEBUG_ONLY, schema_pb2.DISABLED,
        )
    return False


def is_existence_required(feature) -> bool:
    if is_deprecated(feature):
        return False
    return feature.presence.min_count > 0 or feature.presence.min_fraction > 0.0


def type_name(feature) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2.FeatureType.Name(feature.type)


def find_string_domain(schema, name: str):
    for string_domain in schema.string_domain:
        if string_domain.name == name:
            return string_domain
    return None

def find_feature(schema, steps):
    """The schema feature at a path (struct features nest), or None."""
    features = schema.feature
    found = None
    for step in steps:
        found = next((f for f in features if f.name == step), None)
        if found is None:
            return None
        features = found.struct_domain.feature
    return found


def has_named(items, name: str) -> bool:
    return any(item.name == name for item in items)

def clear_string_domain(schema, name: str) -> None:
    def clear(features) -> None:
        for feature in features:
            if feature.WhichOneof("domain_info") == "domain" and feature.domain == name:
                feature.ClearField("domain_info")
            if feature.HasField("struct_domain"):
                clear(feature.struct_domain.feature)

    clear(schema.feature)
    kept = [d for d in schema.string_domain if d.name != name]
    del schema.string_domain[:]
    schema.string_domain.extend(kept)
