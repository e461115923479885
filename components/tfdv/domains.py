"""Domain rules of TFDV's Schema::UpdateFeature: string, int, float and bool domains.

Each rule reports the values that break the domain and relaxes the domain so
that they would pass; ``clear`` tells the caller to drop a domain that cannot fit.
"""

from __future__ import annotations

import math

from sluice.components.tfdv.features import Description, six_digits
from sluice.components.tfdv.views import FeatureView


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


def max_off_domain(feature) -> float:
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


def update_int_domain(view: FeatureView, int_domain) -> tuple[list[Description], bool]:
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


def update_float_domain(view: FeatureView, float_domain) -> tuple[list[Description], bool]:
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


def _int_bool_domain(view: FeatureView, feature) -> list[Description]:
    stats = view.num_stats
    for bad, anomaly in ((stats.min < 0.0, "BOOL_TYPE_SMALL_INT"), (stats.max > 1.0, "BOOL_TYPE_BIG_INT")):
        if bad:
            example = stats.min if anomaly == "BOOL_TYPE_SMALL_INT" else stats.max
            feature.int_domain.max = int(stats.max)
            feature.int_domain.min = int(stats.min)
            return [Description(anomaly, "Non-boolean values",
                                f"Integers (such as {six_digits(example)}) not in {{0, 1}}: "
                                "converting to an integer.")]
    return []


def _non_bool_float(stats) -> str | None:
    """Why the float statistics are not those of a boolean (None if they are)."""
    if stats.min not in (0.0, 1.0):
        return f"Floats (such as {six_digits(stats.min)}) not in {{0, 1}}: converting to float_domain."
    if stats.max not in (0.0, 1.0):
        return f"Floats (such as {six_digits(stats.max)}) not in {{0, 1}}: converting to float_domain."
    for histogram in stats.histograms:
        if histogram.num_nan > 0:
            return "Floats (such as NaN) not in {0, 1}: converting to float_domain."
        for bucket in histogram.buckets:
            if bucket.sample_count <= 0:
                continue
            if bucket.high_value < 0:
                return "Float values < 0 not in {0, 1}: converting to float_domain."
            if bucket.low_value > 1:
                return "Float values > 1 not in {0, 1}: converting to float_domain."
            if bucket.high_value < 1 and bucket.low_value > 0:
                return "Float values falling between 0 and 1: converting to float_domain."
    return None


def _float_bool_domain(view: FeatureView, feature) -> list[Description]:
    stats = view.num_stats
    text = _non_bool_float(stats)
    if text is None:
        return []
    feature.float_domain.max = stats.max
    feature.float_domain.min = stats.min
    return [Description("BOOL_TYPE_UNEXPECTED_FLOAT", "Non-boolean values", text)]


def _string_bool_domain(view: FeatureView, feature) -> list[Description]:
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


def update_bool_domain(view: FeatureView, feature) -> list[Description]:
    kind = view.type
    if kind == "INT":
        return _int_bool_domain(view, feature)
    if kind == "FLOAT":
        return _float_bool_domain(view, feature)
    if kind == "STRING":
        return _string_bool_domain(view, feature)
    return []
