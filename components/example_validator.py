"""ExampleValidator: checks a split's statistics against a schema, as TFDV does.

The checks follow ``tfdv.validate_statistics`` (TFDV 1.16's C++ validator):
same anomaly types, short/long descriptions and severities, written as a
tensorflow_metadata ``Anomalies`` proto per split (``Split-<s>/SchemaDiff.pb``)
next to a self-contained ``report.html``.

Drift against a previous span (``baseline_statistics``) is configured with
``drift={"feature": threshold}``: string features are compared with the
L-infinity distance of their value frequencies, numeric ones with the
approximate Jensen-Shannon divergence of their histograms (TFDV's
``drift_comparator`` ``infinity_norm`` / ``jensen_shannon_divergence``).

Checking statistics without any pipeline::

    from sluice.components.example_validator import validate_statistics, format_anomalies
    anomalies = validate_statistics(stats_list, schema_proto)   # protos in, Anomalies out
    print(format_anomalies({"eval": anomalies}))

The same checking engine (``update_feature``) relaxes a schema to fit new
statistics; SchemaGen uses it for ``update_schema`` across splits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from sluice.components.artifacts import ExampleAnomalies, ExampleStatistics, Schema
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component

SEVERITIES = ("ERROR", "WARNING")


# --- small file helpers (local paths directly, other URIs through Beam) -------


def read_bytes(path: str) -> bytes:
    """Reads a whole file; ``gs://`` and other schemes go through Beam's FileSystems."""
    if "://" not in path:
        with open(path, "rb") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    if "://" not in path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(data)


def file_exists(path: str) -> bool:
    if "://" not in path:
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def load_statistics(path: str, owner: str):
    """A ``DatasetFeatureStatisticsList`` from a binary file; ComponentError if unreadable."""
    from google.protobuf.message import DecodeError
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if not file_exists(path):
        raise ComponentError(f"{owner}: statistics file {path} does not exist")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(read_bytes(path))
    except DecodeError as exc:
        raise ComponentError(f"{owner}: {path} is not a binary DatasetFeatureStatisticsList: {exc}") from None
    return stats


def load_schema(path: str, owner: str):
    """A ``Schema`` from a text-format file; the error names the file and line."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if not file_exists(path):
        raise ComponentError(f"{owner}: schema file {path} does not exist")
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{owner}: schema file {path} is not UTF-8 text: {exc}") from None
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as exc:
        line = exc.GetLine()
        where = f"line {line}" if line else "unknown line"
        raise ComponentError(f"{owner}: invalid schema in {path}, {where}: {_parse_error_message(exc)}") from None
    return schema


def _parse_error_message(exc: Exception) -> str:
    # ParseError's text starts with "line:column : "; the caller says the line itself.
    message = str(exc)
    head, sep, tail = message.partition(" : ")
    return tail if sep and head.replace(":", "").isdigit() else message


def default_dataset(stats_list, owner: str = "statistics"):
    """The dataset TFDV validates: the only one, or the 'All Examples' slice."""
    datasets = list(stats_list.datasets)
    if len(datasets) == 1:
        return datasets[0]
    for dataset in datasets:
        if dataset.name == "All Examples":
            return dataset
    if not datasets:
        raise ComponentError(f"{owner}: the statistics hold no dataset")
    raise ComponentError(
        f"{owner}: the statistics hold {len(datasets)} datasets and none is the default slice 'All Examples'"
    )


# --- statistics views ---------------------------------------------------------


def serialize_path(steps) -> str:
    """TFDV's ``Path::Serialize``: steps joined by '.', odd steps wrapped in parentheses."""
    def escape(step: str) -> str:
        if any(c in step for c in ".()") or step == "":
            return "(" + step.replace(")", "))") + ")"
        return step

    return ".".join(escape(s) for s in steps)


class FeatureView:
    """Read access to one feature's statistics, as TFDV's ``FeatureStatsView``."""

    def __init__(self, stats, num_examples: float):
        self.stats = stats
        self.num_examples = float(num_examples)
        self.steps = tuple(stats.path.step) if stats.HasField("path") else (stats.name,)
        self.key = serialize_path(self.steps)

    @property
    def type(self) -> str:
        """The statistics type: INT, FLOAT, STRING, BYTES or STRUCT."""
        from tensorflow_metadata.proto.v0 import statistics_pb2

        return statistics_pb2.FeatureNameStatistics.Type.Name(self.stats.type)

    @property
    def feature_type(self) -> str:
        """The schema type these statistics imply: INT, FLOAT, BYTES or STRUCT."""
        return {"STRING": "BYTES"}.get(self.type, self.type)

    @property
    def common(self):
        which = self.stats.WhichOneof("stats")
        if which == "num_stats":
            return self.stats.num_stats.common_stats
        if which == "string_stats":
            return self.stats.string_stats.common_stats
        if which == "bytes_stats":
            return self.stats.bytes_stats.common_stats
        if which == "struct_stats":
            return self.stats.struct_stats.common_stats
        raise ComponentError(f"statistics of feature '{self.key}' carry no common_stats")

    @property
    def num_present(self) -> float:
        return float(self.common.num_non_missing)

    @property
    def num_missing(self) -> float:
        return float(self.common.num_missing)

    @property
    def fraction_present(self) -> float | None:
        if self.num_missing == 0.0:
            return 1.0  # as TFDV: avoids numerical noise
        if self.num_examples > 0:
            return self.num_present / self.num_examples
        return None

    @property
    def string_counts(self) -> dict[str, float]:
        """Value -> count from the rank histogram, sorted by value (TFDV's std::map)."""
        counts: dict[str, float] = {}
        for bucket in self.stats.string_stats.rank_histogram.buckets:
            counts.setdefault(bucket.label, float(bucket.sample_count))
        return dict(sorted(counts.items(), key=lambda kv: kv[0].encode("utf-8")))

    @property
    def string_values(self) -> list[str]:
        return list(self.string_counts)

    @property
    def has_invalid_utf8(self) -> bool:
        return "__BYTES_VALUE__" in self.string_counts

    @property
    def min_max_num_values(self) -> list[tuple[int, int]]:
        nested = self.common.presence_and_valency_stats
        if len(nested) > 0:
            return [(int(p.min_num_values), int(p.max_num_values)) for p in nested]
        return [(int(self.common.min_num_values), int(self.common.max_num_values))]

    @property
    def num_missing_nested(self) -> list[float]:
        nested = self.common.presence_and_valency_stats
        if len(nested) > 0:
            return [float(p.num_missing) for p in nested]
        return [self.num_missing]

    @property
    def has_nested_values(self) -> bool:
        return len(self.common.presence_and_valency_stats) > 1

    @property
    def total_value_count(self) -> float:
        common = self.common
        if common.tot_num_values == 0:
            return float(common.num_non_missing) * float(common.avg_num_values)
        return float(common.tot_num_values)

    @property
    def num_stats(self):
        return self.stats.num_stats

    @property
    def num_unique(self) -> int | None:
        return int(self.stats.string_stats.unique) if self.stats.HasField("string_stats") else None

    def standard_histogram(self):
        from tensorflow_metadata.proto.v0 import statistics_pb2

        if not self.stats.HasField("num_stats"):
            return None
        for histogram in self.stats.num_stats.histograms:
            if histogram.type == statistics_pb2.Histogram.STANDARD:
                return histogram
        return None


def _has_empty_stats(stats) -> bool:
    return stats.WhichOneof("stats") is None and len(stats.custom_stats) == 0


class DatasetView:
    """The features of one dataset, by serialized path (empty statistics skipped)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.num_examples = float(dataset.num_examples)
        self.features = [FeatureView(f, dataset.num_examples) for f in dataset.features if not _has_empty_stats(f)]
        self.by_key = {view.key: view for view in self.features}

    def root_features(self) -> list[FeatureView]:
        return [view for view in self.features if len(view.steps) == 1]


# --- the checking engine (TFDV's Schema::UpdateFeature) ----------------------


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


def _deprecate(feature) -> None:
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


_ALLOWED_TYPES = {
    "domain": {"BYTES"},
    "bool_domain": {"INT", "BYTES", "FLOAT"},
    "int_domain": {"INT", "BYTES"},
    "float_domain": {"FLOAT", "BYTES"},
    "string_domain": {"BYTES"},
    "struct_domain": {"STRUCT"},
    "natural_language_domain": {"BYTES"},
    "image_domain": {"BYTES"},
    "mid_domain": {"BYTES"},
    "url_domain": {"BYTES"},
    "time_domain": {"INT", "BYTES"},
}


def _type_name(feature) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2.FeatureType.Name(feature.type)


def find_string_domain(schema, name: str):
    for string_domain in schema.string_domain:
        if string_domain.name == name:
            return string_domain
    return None


def _update_feature_self(feature, schema) -> list[Description]:
    """Schema::UpdateFeatureSelf: repairs a malformed feature definition."""
    out: list[Description] = []
    if is_deprecated(feature):
        return out
    if not feature.HasField("name"):
        out.append(Description("FEATURE_MISSING_NAME",
                               "unspecified name (maybe meant to be the empty string): find name rather than deprecating."))
        _deprecate(feature)
        return out
    if not feature.HasField("type"):
        if feature.HasField("domain") or feature.HasField("string_domain"):
            out.append(Description("FEATURE_MISSING_TYPE",
                                   "unspecified type: inferring the type to be BYTES, given the domain specified."))
            from tensorflow_metadata.proto.v0 import schema_pb2

            feature.type = schema_pb2.BYTES
        else:
            out.append(Description("FEATURE_MISSING_TYPE",
                                   "unspecified type: determine the type and set it, rather than deprecating."))
            _deprecate(feature)
            return out
    if feature.presence.min_fraction < 0.0:
        feature.presence.ClearField("min_fraction")
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "min_fraction should not be negative: clear is equal to zero"))
    if feature.presence.min_fraction > 1.0:
        feature.presence.min_fraction = 1.0
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "min_fraction should not greater than 1"))
    if feature.value_count.min < 0:
        feature.value_count.ClearField("min")
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "ValueCount.min should not be negative"))
    if feature.value_count.HasField("max") and feature.value_count.max < feature.value_count.min:
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "ValueCount.max should not be less than min"))
        feature.value_count.max = feature.value_count.min
    domain_case = feature.WhichOneof("domain_info")
    allowed = _ALLOWED_TYPES.get(domain_case, {"INT", "FLOAT", "BYTES", "STRUCT"})
    if _type_name(feature) not in allowed:
        out.append(Description("DOMAIN_INVALID_FOR_TYPE", "The domain does not match the type",
                               f'The domain "{domain_case}" does not match the type: {_type_name(feature)}'))
        feature.ClearField("domain_info")
        domain_case = None
    if domain_case == "domain":
        if find_string_domain(schema, feature.domain) is None:
            missing = feature.domain
            feature.ClearField("domain")
            out.append(Description("INVALID_SCHEMA_SPECIFICATION", f"missing domain: {missing}"))
    elif domain_case == "string_domain":
        seen: set[str] = set()
        repeats: list[str] = []
        kept: list[str] = []
        for value in feature.string_domain.value:
            if value in seen:
                repeats.append(value)
            else:
                seen.add(value)
                kept.append(value)
        if repeats:
            del feature.string_domain.value[:]
            feature.string_domain.value.extend(kept)
            out.append(Description("INVALID_DOMAIN_SPECIFICATION", "Malformed StringDomain",
                                   "Repeated values in StringDomain:" + ", ".join(repeats)))
    elif domain_case == "bool_domain":
        if feature.HasField("distribution_constraints"):
            feature.ClearField("distribution_constraints")
            out.append(Description("INVALID_SCHEMA_SPECIFICATION", "distribution constraints not supported for bool domains."))
        bool_domain = feature.bool_domain
        if (bool_domain.HasField("true_value") and bool_domain.HasField("false_value")
                and bool_domain.true_value == bool_domain.false_value):
            bool_domain.ClearField("false_value")
            out.append(Description("UNKNOWN_TYPE", "Malformed BoolDomain",
                                   f"True and false value equal for BoolDomain:{bool_domain.true_value}. The suggested "
                                   "change is to clear the false_value, but a domain expert should review this change."))
    elif feature.HasField("distribution_constraints") and domain_case not in ("domain", "string_domain"):
        kind = {"int_domain": "int domains.", "float_domain": "float domains.", "struct_domain": "struct domains.",
                None: None}.get(domain_case, "semantic domains.")
        feature.ClearField("distribution_constraints")
        text = (f"distribution constraints not supported for {kind}" if kind
                else "distribution constraints require domain or string domain.")
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", text))
    return out


def _update_value_count(view: FeatureView, feature) -> list[Description]:
    min_max = view.min_max_num_values
    out: list[Description] = []
    if feature.HasField("value_count"):
        if len(min_max) > 1:
            out.append(Description(
                "VALUE_NESTEDNESS_MISMATCH", "Mismatched value nest level",
                "This feature has a value_count, but the nestedness level of the feature > 1. For features with "
                "nestedness levels greater than 1, value_counts, not value_count, should be specified."))
            feature.ClearField("value_count")
            init_value_count(view, feature)
            return out
        lowest, highest = min_max[0]
        if feature.value_count.HasField("min") and lowest < feature.value_count.min:
            out.append(Description("FEATURE_TYPE_LOW_NUMBER_VALUES", "Missing values",
                                   "Some examples have fewer values than expected."))
            if lowest == 0:
                feature.value_count.ClearField("min")
            else:
                feature.value_count.min = lowest
        if feature.value_count.HasField("max") and highest > feature.value_count.max:
            out.append(Description("FEATURE_TYPE_HIGH_NUMBER_VALUES", "Superfluous values",
                                   "Some examples have more values than expected."))
            feature.value_count.max = highest
        return out
    counts = feature.value_counts.value_count
    if len(counts) != len(min_max):
        out.append(Description("VALUE_NESTEDNESS_MISMATCH", "Mismatched value nest level",
                               "The values have a different nest level than expected. Value counts will not be checked."))
        feature.ClearField("value_counts")
        init_value_count(view, feature)
        return out
    for level, (count, (lowest, highest)) in enumerate(zip(counts, min_max)):
        if count.HasField("min") and lowest < count.min:
            out.append(Description("FEATURE_TYPE_LOW_NUMBER_VALUES", "Missing values",
                                   f"Some examples have fewer values than expected at nestedness level {level}."))
            if lowest == 0:
                count.ClearField("min")
            else:
                count.min = lowest
        if count.HasField("max") and highest > count.max:
            out.append(Description("FEATURE_TYPE_HIGH_NUMBER_VALUES", "Superfluous values",
                                   f"Some examples have more values than expected at nestedness level {level}."))
            count.max = highest
    return out


def init_value_count(view: FeatureView, feature) -> None:
    """TFDV's InitValueCount: value_count min=max when fixed, else min 1."""
    def set_count(lowest: int, highest: int, value_count) -> None:
        if lowest > 0:
            if lowest == highest:
                value_count.min = lowest
                value_count.max = highest
            else:
                value_count.min = 1

    min_max = view.min_max_num_values
    if view.has_nested_values:
        for lowest, highest in min_max:
            set_count(lowest, highest, feature.value_counts.value_count.add())
    elif len(min_max) == 1 and min_max[0][0] > 0:
        set_count(min_max[0][0], min_max[0][1], feature.value_count)


def _update_shape(view: FeatureView, feature) -> list[Description]:
    expected = 1
    for dim in feature.shape.dim:
        expected *= dim.size
    actual = 1
    for lowest, highest in view.min_max_num_values:
        if lowest == highest and lowest != 0:
            actual *= lowest
        else:
            actual = -1
            break
    has_missing = any(n != 0 for n in view.num_missing_nested)
    if actual <= 0 or has_missing:
        feature.ClearField("shape")
        return [Description(
            "INVALID_FEATURE_SHAPE", "Feature shape dropped",
            "The feature has a shape, but it's not always present (if the feature is nested, then it should always be "
            "present at each nested level) or its value lengths vary.")]
    if actual != expected:
        feature.ClearField("shape")
        return [Description("INVALID_FEATURE_SHAPE", "Feature shape dropped",
                            f"The feature has fixed value length {actual} but it's not compatible with the specified shape.")]
    return []


def _update_presence(view: FeatureView, presence) -> list[Description]:
    import numpy as np

    out: list[Description] = []
    num_present = view.num_present
    if presence.HasField("min_count") and num_present < presence.min_count:
        original = presence.min_count
        presence.min_count = int(num_present)
        out.append(Description(
            "FEATURE_TYPE_LOW_NUMBER_PRESENT", "Column dropped",
            f"The feature was present in fewer examples than expected: minimum count = {original}, "
            f"actual = {presence.min_count}"))
    fraction = view.fraction_present
    if presence.HasField("min_fraction") and fraction is not None:
        if fraction < presence.min_fraction:
            original = float(np.float32(presence.min_fraction))  # TFDV keeps it in a C float
            presence.min_fraction = fraction
            out.append(Description(
                "FEATURE_TYPE_LOW_FRACTION_PRESENT", "Column dropped",
                f"The feature was present in fewer examples than expected: minimum fraction = {original:f}, "
                f"actual = {presence.min_fraction:f}"))
        if presence.min_fraction == 1.0 and view.num_missing != 0.0:
            # A sliver of missing examples that floating point hides.
            presence.min_fraction = 0.9999
            out.append(Description(
                "FEATURE_TYPE_LOW_FRACTION_PRESENT", "Column dropped",
                f"The feature was expected everywhere, but was missing in {six_digits(view.num_missing)} examples."))
    return out


def _percentage(count: float, total: float | None) -> str:
    if not total:
        return "?"
    percent = 100.0 * count / total
    return "<1%" if percent < 1.0 else f"~{int(math.floor(percent))}%"


def _c_escape(value: str) -> str:
    """absl::Utf8SafeCEscape for the printable cases that matter in messages."""
    table = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "'": "\\'", "\\": "\\\\"}
    return "".join(table.get(c, c) for c in value)


def update_string_domain(view: FeatureView, max_off_domain: float, string_domain) -> tuple[list[Description], bool]:
    """UpdateStringDomain: unexpected values are reported, then added. Returns (descriptions, clear)."""
    if view.has_invalid_utf8:
        return [Description("ENUM_TYPE_INVALID_UTF8", "Invalid UTF8 strings",
                            "Found strings that were not valid UTF8 strings.")], True
    valid = set(string_domain.value)
    missing = {value: count for value, count in view.string_counts.items() if value not in valid}
    missing_count = sum(missing.values())
    total = view.total_value_count
    if total:
        ratio = missing_count / total
    else:
        ratio = math.inf if missing_count else math.nan
    out: list[Description] = []
    if ratio > max_off_domain or (max_off_domain == 0 and missing):
        listed = ", ".join(f"{_c_escape(v)} ({_percentage(c, total)})" for v, c in missing.items())
        out.append(Description("ENUM_TYPE_UNEXPECTED_STRING_VALUES", "Unexpected string values",
                               f"Examples contain values missing from the schema: {listed}. "))
        string_domain.value.extend(missing)
    return out, False


def _max_off_domain(feature) -> float:
    constraints = feature.distribution_constraints
    return 1.0 - constraints.min_domain_mass if constraints.HasField("min_domain_mass") else 0.0


def _int_interval(view: FeatureView):
    """GetIntInterval: (min, max), a string that is not an int, or None."""
    values = view.string_values
    kind = view.type
    if kind in ("STRUCT", "FLOAT"):
        return None
    if kind == "INT" and not values:
        low, high = view.num_stats.min, view.num_stats.max
        if low < -(2 ** 63):
            return str(low)
        if high > 2 ** 63 - 1:
            return str(high)
        return (int(low), int(high))
    interval = None
    for text in values:
        try:
            value = int(text.strip())
        except ValueError:
            return text
        if not -(2 ** 63) <= value < 2 ** 63:
            return text
        interval = (value, value) if interval is None else (min(interval[0], value), max(interval[1], value))
    return interval


def _update_int_domain(view: FeatureView, int_domain) -> tuple[list[Description], bool]:
    result = _int_interval(view)
    if result is None:
        return [], False
    if isinstance(result, str):
        if view.feature_type == "BYTES":
            return [Description("INT_TYPE_NOT_INT_STRING", "Invalid values",
                                f'String values that were not ints were found, such as "{result}".')], True
        if view.feature_type == "INT":
            if int_domain.HasField("max") or int_domain.HasField("min"):
                return [Description("DOMAIN_INVALID_FOR_TYPE", "Invalid values",
                                    f'Integer had values that were not valid Int64, such as "{result}".')], True
            return [], False
        return [Description("DOMAIN_INVALID_FOR_TYPE", "Invalid values",
                            f"IntDomain incompatible with feature type {view.feature_type}")], True
    low, high = result
    out: list[Description] = []
    if int_domain.HasField("min") and int_domain.min > low:
        out.append(Description("INT_TYPE_SMALL_INT", "Out-of-range values", f"Unexpectedly small value: {low}."))
        int_domain.min = low
    if int_domain.HasField("max") and int_domain.max < high:
        out.append(Description("INT_TYPE_BIG_INT", "Out-of-range values", f"Unexpectedly large value: {high}."))
        int_domain.max = high
    return out, False


def _float_interval(view: FeatureView):
    import numpy as np

    kind = view.type
    if kind == "FLOAT":
        return (float(np.float32(view.num_stats.min)), float(np.float32(view.num_stats.max)))
    if kind in ("STRING", "BYTES"):
        interval = None
        for text in view.string_values:
            try:
                value = float(np.float32(float(text.strip())))
            except ValueError:
                return text
            interval = (value, value) if interval is None else (min(interval[0], value), max(interval[1], value))
        return interval
    return None


def _update_float_domain(view: FeatureView, float_domain) -> tuple[list[Description], bool]:
    result = _float_interval(view)
    if result is None:
        return [], False
    if isinstance(result, str):
        return [Description("FLOAT_TYPE_STRING_NOT_FLOAT", "Invalid values",
                            f'String values that were not floats were found, such as "{result}".')], True
    low, high = result
    out: list[Description] = []
    if float_domain.HasField("min") and low < float_domain.min:
        out.append(Description("FLOAT_TYPE_SMALL_FLOAT", "Out-of-range values",
                               f"Unexpectedly low values: {six_digits(low)}<{six_digits(float_domain.min)}"
                               "(upto six significant digits)"))
        float_domain.min = low
    if float_domain.HasField("max") and high > float_domain.max:
        out.append(Description("FLOAT_TYPE_BIG_FLOAT", "Out-of-range values",
                               f"Unexpectedly high value: {six_digits(high)}>{six_digits(float_domain.max)}"
                               "(upto six significant digits)"))
        float_domain.max = high
    return out, False


def _update_bool_domain(view: FeatureView, feature) -> list[Description]:
    kind = view.type
    stats = view.num_stats
    if kind == "INT":
        for bad, anomaly in ((stats.min < 0.0, "BOOL_TYPE_SMALL_INT"), (stats.max > 1.0, "BOOL_TYPE_BIG_INT")):
            if bad:
                example = stats.min if anomaly == "BOOL_TYPE_SMALL_INT" else stats.max
                feature.int_domain.max = int(stats.max)
                feature.int_domain.min = int(stats.min)
                return [Description(anomaly, "Non-boolean values",
                                    f"Integers (such as {six_digits(example)}) not in {{0, 1}}: converting to an integer.")]
        return []
    if kind == "FLOAT":
        def to_float_domain(text: str) -> list[Description]:
            feature.float_domain.max = stats.max
            feature.float_domain.min = stats.min
            return [Description("BOOL_TYPE_UNEXPECTED_FLOAT", "Non-boolean values", text)]

        if stats.min not in (0.0, 1.0):
            return to_float_domain(f"Floats (such as {six_digits(stats.min)}) not in {{0, 1}}: converting to float_domain.")
        if stats.max not in (0.0, 1.0):
            return to_float_domain(f"Floats (such as {six_digits(stats.max)}) not in {{0, 1}}: converting to float_domain.")
        for histogram in stats.histograms:
            if histogram.num_nan > 0:
                return to_float_domain("Floats (such as NaN) not in {0, 1}: converting to float_domain.")
            for bucket in histogram.buckets:
                if bucket.sample_count <= 0:
                    continue
                if bucket.high_value < 0:
                    return to_float_domain("Float values < 0 not in {0, 1}: converting to float_domain.")
                if bucket.low_value > 1:
                    return to_float_domain("Float values > 1 not in {0, 1}: converting to float_domain.")
                if bucket.high_value < 1 and bucket.low_value > 0:
                    return to_float_domain("Float values falling between 0 and 1: converting to float_domain.")
        return []
    if kind == "STRING":
        bool_domain = feature.bool_domain
        valid = {v for v, has in ((bool_domain.true_value, bool_domain.HasField("true_value")),
                                  (bool_domain.false_value, bool_domain.HasField("false_value"))) if has}
        for value in view.string_values:
            if value not in valid:
                described = "{}" if not valid else '{"' + '", "'.join(sorted(valid)) + '"}'
                feature.ClearField("bool_domain")
                return [Description("BOOL_TYPE_UNEXPECTED_STRING", "Non-boolean values",
                                    f'Saw unexpected value "{value}" instead of {described}.')]
    return []


def _update_unique_constraints(view: FeatureView, feature) -> list[Description]:
    unique = view.num_unique
    constraints = feature.unique_constraints
    if unique is None:
        feature.ClearField("unique_constraints")
        return [Description("FEATURE_TYPE_NO_UNIQUE", "No unique values",
                            "UniqueConstraints specified for the feature, but unique values were not counted (i.e., "
                            "feature is not string or categorical).")]
    out: list[Description] = []
    if unique < constraints.min:
        out.append(Description("FEATURE_TYPE_LOW_UNIQUE", "Low number of unique values",
                               f"Expected at least {constraints.min} unique values but found only {unique}."))
        constraints.min = unique
    if unique > constraints.max:
        out.append(Description("FEATURE_TYPE_HIGH_UNIQUE", "High number of unique values",
                               f"Expected no more than {constraints.max} unique values but found {unique}."))
        constraints.max = unique
    return out


# --- drift metrics (TFDV metrics.cc) ------------------------------------------


def linfty_distance(counts_a: dict[str, float], counts_b: dict[str, float]) -> tuple[str, float]:
    """Largest difference of normalized value frequencies, and the value where it occurs.

    >>> linfty_distance({"a": 3, "b": 1}, {"a": 1, "b": 1})
    ('b', 0.25)
    """
    def normalize(counts: dict[str, float]) -> dict[str, float]:
        total = sum(counts.values())
        return {k: (v / total if total else 0.0) for k, v in counts.items()}

    a, b = normalize(counts_a), normalize(counts_b)
    best_key, best_value = "", 0.0
    for key in sorted(set(a) | set(b), key=lambda k: k.encode("utf-8")):
        value = abs(a.get(key, 0.0) - b.get(key, 0.0))
        if value >= best_value:
            best_key, best_value = key, value
    return best_key, best_value


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log2(pi / qi) for pi, qi in zip(p, q) if pi > 0 and qi > 0)


def _categorical_jsd(counts_a: dict[str, float], counts_b: dict[str, float]) -> float | None:
    if not counts_a or not counts_b:
        return None
    if any(v <= 0 for v in counts_a.values()) or any(v <= 0 for v in counts_b.values()):
        return None
    a_sum, b_sum = sum(counts_a.values()), sum(counts_b.values())
    total = 0.0
    for key in set(counts_a) | set(counts_b):
        pa, pb = counts_a.get(key, 0.0) / a_sum, counts_b.get(key, 0.0) / b_sum
        m = (pa + pb) / 2
        if pa:
            total += pa * math.log2(pa / m)
        if pb:
            total += pb * math.log2(pb / m)
    return min(total / 2, 1.0)


def _strip_point_and_infinite(buckets):
    kept, points, infinite = [], {}, 0.0
    for low, high, count in buckets:
        if not (math.isfinite(low) and math.isfinite(high)):
            infinite += count
        elif low == high:
            points[low] = points.get(low, 0.0) + count
        else:
            kept.append((low, high, count))
    return kept, points, infinite


def _rebucket(boundaries: list[float], buckets):
    out = []
    index = 0
    last = len(boundaries) - 1
    for low, high, count in buckets:
        while low > boundaries[index]:
            out.append((boundaries[index], boundaries[index + 1], 0.0))
            index += 1
        if low == high and low == boundaries[index]:
            out.append((boundaries[index], boundaries[index + 1], count))
            index += 1
            continue
        covered = []
        while high > boundaries[index]:
            covered.append(boundaries[index])
            index += 1
        covered.append(boundaries[index])
        width = high - low
        for i in range(len(covered) - 1):
            out.append((covered[i], covered[i + 1], (covered[i + 1] - covered[i]) / width * count))
    for i in range(index, last):
        out.append((boundaries[i], boundaries[i + 1], 0.0))
    return out


def histogram_jsd(histogram_a, histogram_b) -> float | None:
    """Approximate Jensen-Shannon divergence of two numeric histograms (TFDV's algorithm)."""
    if histogram_a.type != histogram_b.type:
        return None
    a, a_points, a_inf = _strip_point_and_infinite(
        [(b.low_value, b.high_value, b.sample_count) for b in histogram_a.buckets])
    b, b_points, b_inf = _strip_point_and_infinite(
        [(x.low_value, x.high_value, x.sample_count) for x in histogram_b.buckets])
    bounds_a = {v for low, high, _ in a for v in (low, high)}
    bounds_b = {v for low, high, _ in b for v in (low, high)}
    if bounds_a != bounds_b:
        boundaries = sorted(bounds_a | bounds_b)
        a, b = _rebucket(boundaries, a), _rebucket(boundaries, b)
    counts_a = [c for _, _, c in a]
    counts_b = [c for _, _, c in b]
    for point in sorted(set(a_points) | set(b_points)):
        counts_a.append(a_points.get(point, 0.0))
        counts_b.append(b_points.get(point, 0.0))
    if a_inf:
        counts_a.append(a_inf)
        counts_b.append(0.0)
    if b_inf:
        counts_a.append(0.0)
        counts_b.append(b_inf)
    if histogram_a.num_nan > 0 or histogram_b.num_nan > 0:
        counts_a += [0.0, float(histogram_a.num_nan)]
        counts_b += [float(histogram_b.num_nan), 0.0]
    sum_a, sum_b = sum(counts_a), sum(counts_b)
    if sum_a == 0 or sum_b == 0:
        return None
    p = [c / sum_a for c in counts_a]
    q = [c / sum_b for c in counts_b]
    m = [(x + y) / 2 for x, y in zip(p, q)]
    return min((_kl(p, m) + _kl(q, m)) / 2, 1.0)


def jensen_shannon_divergence(current: FeatureView, previous: FeatureView) -> float | None:
    """Categorical JSD when both have value counts, else histogram JSD; None if not comparable."""
    counts_a, counts_b = current.string_counts, previous.string_counts
    if counts_a and counts_b:
        return _categorical_jsd(counts_a, counts_b)
    histogram_a, histogram_b = current.standard_histogram(), previous.standard_histogram()
    if histogram_a is not None and histogram_b is not None:
        return histogram_jsd(histogram_a, histogram_b)
    return None


def _update_drift(view: FeatureView, comparator, previous: DatasetView | None, measurements: list) -> list[Description]:
    """UpdateFeatureComparatorDirect for the drift comparator (current vs previous span)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    has_linf = comparator.infinity_norm.HasField("threshold")
    has_jsd = comparator.jensen_shannon_divergence.HasField("threshold")
    if not has_linf and not has_jsd:
        return []
    if previous is None:
        return []
    control = previous.by_key.get(view.key)
    Measurement = anomalies_pb2.DriftSkewInfo.Measurement
    if control is None:
        if has_linf:
            comparator.infinity_norm.ClearField("threshold")
        if has_jsd:
            comparator.jensen_shannon_divergence.ClearField("threshold")
        return [Description("COMPARATOR_CONTROL_DATA_MISSING", "previous data missing", "previous data is missing.")]
    out: list[Description] = []
    if has_linf:
        threshold = comparator.infinity_norm.threshold
        value_at, distance = linfty_distance(view.string_counts, control.string_counts)
        measurements.append(Measurement(type=Measurement.L_INFTY, value=distance, threshold=threshold))
        if distance > threshold:
            comparator.infinity_norm.threshold = distance
            out.append(Description(
                "COMPARATOR_L_INFTY_HIGH", "High Linfty distance between current and previous",
                f"The Linfty distance between current and previous is {six_digits(distance)} (up to six significant "
                f"digits), above the threshold {six_digits(threshold)}. The feature value with maximum difference "
                f"is: {value_at}"))
    if has_jsd:
        threshold = comparator.jensen_shannon_divergence.threshold
        divergence = jensen_shannon_divergence(view, control)
        if divergence is not None:
            measurements.append(Measurement(type=Measurement.JENSEN_SHANNON_DIVERGENCE, value=divergence,
                                            threshold=threshold))
            if divergence > threshold:
                out.append(Description(
                    "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                    "High approximate Jensen-Shannon divergence between current and previous",
                    f"The approximate Jensen-Shannon divergence between current and previous is "
                    f"{six_digits(divergence)} (up to six significant digits), above the threshold "
                    f"{six_digits(threshold)}."))
                comparator.jensen_shannon_divergence.threshold = divergence
    return out


def update_feature(feature, view: FeatureView, schema, previous: DatasetView | None = None,
                   drift_measurements: list | None = None) -> list[Description]:
    """Checks one feature's statistics against its schema entry (TFDV's UpdateFeatureInternal).

    Like TFDV, it also relaxes ``feature`` (and its string domain in ``schema``)
    so that the statistics would pass: that is what ``update_schema`` keeps.
    Returns the anomaly descriptions, in TFDV's order.
    """
    descriptions = _update_feature_self(feature, schema)
    if is_deprecated(feature):
        return descriptions
    if view.num_present == 0:
        if is_existence_required(feature):
            descriptions.append(Description("FEATURE_TYPE_NOT_PRESENT", "Column dropped",
                                            "The feature was not present in any examples."))
            _deprecate(feature)
        return descriptions
    if feature.HasField("value_count") or feature.HasField("value_counts"):
        descriptions += _update_value_count(view, feature)
    if feature.HasField("shape"):
        descriptions += _update_shape(view, feature)
    if feature.HasField("presence"):
        descriptions += _update_presence(view, feature.presence)
    if view.feature_type != _type_name(feature):
        _deprecate(feature)
        descriptions.append(Description("UNEXPECTED_DATA_TYPE", "Unexpected data type",
                                        f"Expected data of type: {_type_name(feature)} but got {view.type}"))
    domain_case = feature.WhichOneof("domain_info")
    if view.type == "BYTES" and domain_case not in (None, "natural_language_domain", "image_domain", "url_domain"):
        from google.protobuf import text_format

        feature.ClearField("domain_info")
        domain_case = None
        descriptions.append(Description("DOMAIN_INVALID_FOR_TYPE", "Invalid domain type",
                                        "Data is marked as BYTES with incompatible domain_info: "
                                        + text_format.MessageToString(feature)))
    if domain_case == "domain":
        string_domain = find_string_domain(schema, feature.domain)
        found, clear = update_string_domain(view, _max_off_domain(feature), string_domain)
        descriptions += found
        if clear:
            _clear_string_domain(schema, feature.domain)
    elif domain_case == "string_domain":
        found, clear = update_string_domain(view, _max_off_domain(feature), feature.string_domain)
        descriptions += found
        if clear:
            feature.ClearField("domain_info")
    elif domain_case == "bool_domain":
        if view.type != "BYTES":
            descriptions += _update_bool_domain(view, feature)
    elif domain_case == "int_domain":
        found, clear = _update_int_domain(view, feature.int_domain)
        descriptions += found
        if clear:
            feature.ClearField("domain_info")
    elif domain_case == "float_domain":
        found, clear = _update_float_domain(view, feature.float_domain)
        descriptions += found
        if clear:
            feature.ClearField("domain_info")
    if feature.HasField("unique_constraints"):
        descriptions += _update_unique_constraints(view, feature)
    if feature.HasField("drift_comparator"):
        descriptions += _update_drift(view, feature.drift_comparator, previous,
                                      drift_measurements if drift_measurements is not None else [])
    return descriptions


def _clear_string_domain(schema, name: str) -> None:
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


def _named(items, name: str) -> bool:
    return any(item.name == name for item in items)


# --- validation ---------------------------------------------------------------


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
    for steps, feature in _required_features(schema.feature, ()):
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
        if len(view.steps) == 1 and (_named(schema.sparse_feature, view.steps[0])
                                     or _named(schema.weighted_feature, view.steps[0])):
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


# --- summaries and reports ----------------------------------------------------


def _severity_name(info) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)


def count_errors(anomalies) -> int:
    return sum(1 for info in anomalies.anomaly_info.values() if _severity_name(info) == "ERROR")


def format_anomalies(anomalies_by_split: dict[str, Any], report_paths: dict[str, str] | None = None) -> str:
    """One readable block: per split a headline, then one line per anomalous feature.

    >>> print(format_anomalies({"eval": anomalies}))          # doctest: +SKIP
    2 anomalies in split 'eval'
      - company: Examples contain values missing from the schema: Foo Cab (<1%).
      - tips: Column is completely missing
    """
    blocks = []
    for split, anomalies in anomalies_by_split.items():
        infos = sorted(anomalies.anomaly_info.items())
        if not infos:
            continue
        noun = "anomaly" if len(infos) == 1 else "anomalies"
        head = f"{len(infos)} {noun} in split '{split}'"
        if report_paths and report_paths.get(split):
            head += f" (see {report_paths[split]})"
        lines = [head]
        for name, info in infos:
            text = (info.description or info.short_description).strip()
            marker = " [warning]" if _severity_name(info) == "WARNING" else ""
            lines.append(f"  - {name}: {text}{marker}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) if blocks else "no anomalies"


def read_anomalies(anomalies: ExampleAnomalies) -> tuple[dict[str, Any], dict[str, str]]:
    """Loads a published ExampleAnomalies artifact: ({split: Anomalies}, {split: report path}).

    For the CLI: ``print(format_anomalies(*read_anomalies(artifact)))``.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    by_split, reports = {}, {}
    for split in anomalies.split_names:
        result = anomalies_pb2.Anomalies()
        result.ParseFromString(read_bytes(os.path.join(anomalies.split_uri(split), "SchemaDiff.pb")))
        by_split[split] = result
        reports[split] = os.path.join(anomalies.split_uri(split), "report.html")
    return by_split, reports


_REPORT_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Anomalies: split {{ split }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .35em .7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.ERROR { color: #b00020; font-weight: bold; } .WARNING { color: #a66b00; font-weight: bold; }
.ok { color: #1b7f3b; font-weight: bold; } code { font-size: .9em; }
</style></head><body>
<h1>Example validation: split <code>{{ split }}</code></h1>
<p>{{ num_examples }} examples, {{ num_features }} features in the statistics, {{ schema_features }} in the schema.</p>
{% if rows %}
<p class="{{ 'ERROR' if errors else 'WARNING' }}">{{ rows|length }} {{ 'anomaly' if rows|length == 1 else 'anomalies' }}
({{ errors }} {{ 'error' if errors == 1 else 'errors' }}).</p>
<table><tr><th>Feature</th><th>Severity</th><th>Anomaly</th><th>Details</th><th>Types</th></tr>
{% for row in rows %}<tr><td><code>{{ row.feature }}</code></td><td class="{{ row.severity }}">{{ row.severity }}</td>
<td>{{ row.short }}</td><td>{{ row.long }}</td><td>{{ row.types }}</td></tr>
{% endfor %}</table>
{% else %}<p class="ok">No anomalies.</p>{% endif %}
{% if drift %}<h2>Drift against the baseline statistics</h2>
<table><tr><th>Feature</th><th>Metric</th><th>Value</th><th>Threshold</th></tr>
{% for row in drift %}<tr><td><code>{{ row.feature }}</code></td><td>{{ row.metric }}</td><td>{{ row.value }}</td>
<td>{{ row.threshold }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>
"""


def render_report(split: str, anomalies, dataset, schema) -> str:
    """A self-contained HTML page listing one split's anomalies and drift measurements."""
    import jinja2
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    type_name = anomalies_pb2.AnomalyInfo.Type.Name
    rows = [
        {
            "feature": name,
            "severity": _severity_name(info),
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
    environment = jinja2.Environment(autoescape=True)
    return environment.from_string(_REPORT_TEMPLATE).render(
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
            raise ComponentError(f"ExampleValidator: parameter 'drift' names feature {name!r}, which is not in the schema")
        if not threshold >= 0:
            raise ComponentError(f"ExampleValidator: parameter 'drift'[{name!r}] must be a threshold >= 0, got {threshold}")


def add_drift_comparators(schema, drift: dict[str, float]) -> None:
    """Adds TFDV drift comparators: L-infinity for string features, JS divergence for numeric ones."""
    for name, threshold in drift.items():
        feature = find_feature(schema, (name,))
        if _type_name(feature) == "BYTES":
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold


def validate_examples(
    statistics: Input[ExampleStatistics],
    schema: Input[Schema],
    anomalies: Output[ExampleAnomalies],
    baseline_statistics: Input[ExampleStatistics] | None = None,
    fail_on_anomalies: bool = True,
    exclude_splits: list[str] = [],
    drift: dict[str, float] = {},
    severity_overrides: dict[str, str] = {},
    ctx: ExecutionContext = None,
) -> None:
    """Validates each split's statistics against the schema (and a baseline span, for drift).

    Writes ``Split-<s>/SchemaDiff.pb`` (TFDV Anomalies) and ``Split-<s>/report.html``.
    With ``fail_on_anomalies`` (default) it raises ComponentError listing the
    anomalies when any has severity ERROR; ``severity_overrides`` (anomaly type
    name -> "WARNING"/"ERROR") demotes or promotes types, e.g.
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
            if split in baseline_statistics.split_names or file_exists(baseline_path):
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
        # The runner discards outputs of a failed execution, so the message carries everything.
        raise ComponentError(format_anomalies(results))


ExampleValidator = component(validate_examples, name="ExampleValidator")
