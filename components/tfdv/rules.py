"""TFDV's Schema::UpdateFeature: checks one feature's statistics against its schema entry.

The same rules validate statistics (``validation``) and relax a schema to fit
new statistics (``inference.update_schema``).
"""

from __future__ import annotations

from sluice.components.tfdv.domains import (
    max_off_domain,
    update_bool_domain,
    update_float_domain,
    update_int_domain,
    update_string_domain,
)
from sluice.components.tfdv.drift import update_drift
from sluice.components.tfdv.features import (
    Description,
    clear_string_domain,
    deprecate,
    find_string_domain,
    is_deprecated,
    is_existence_required,
    six_digits,
    type_name,
)
from sluice.components.tfdv.views import DatasetView, FeatureView

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


def _update_feature_self(feature, schema) -> list[Description]:
    """Schema::UpdateFeatureSelf: repairs a malformed feature definition."""
    out: list[Description] = []
    if is_deprecated(feature):
        return out
    if not feature.HasField("name"):
        out.append(Description("FEATURE_MISSING_NAME",
                               "unspecified name (maybe meant to be the empty string): "
                               "find name rather than deprecating."))
        deprecate(feature)
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
            deprecate(feature)
            return out
    if feature.presence.min_fraction < 0.0:
        feature.presence.ClearField("min_fraction")
        out.append(Description("INVALID_SCHEMA_SPECIFICATION",
                               "min_fraction should not be negative: clear is equal to zero"))
    if feature.presence.min_fraction > 1.0:
        feature.presence.min_fraction = 1.0
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "min_fraction should not greater than 1"))
    if feature.value_count.min < 0:
        feature.value_count.ClearField("min")
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "ValueCount.min should not be negative"))
    if feature.value_count.HasField("max") and feature.value_count.max < feature.value_count.min:
        out.append(Description("INVALID_SCHEMA_SPECIFICATION", "ValueCount.max should not be less than min"))
        feature.value_count.max = feature.value_count.min
    out += _update_domain_self(feature, schema)
    return out


def _update_domain_self(feature, schema) -> list[Description]:
    """The domain half of Schema::UpdateFeatureSelf: a domain that fits the type and is well formed."""
    out: list[Description] = []
    domain_case = feature.WhichOneof("domain_info")
    allowed = _ALLOWED_TYPES.get(domain_case, {"INT", "FLOAT", "BYTES", "STRUCT"})
    if type_name(feature) not in allowed:
        out.append(Description("DOMAIN_INVALID_FOR_TYPE", "The domain does not match the type",
                               f'The domain "{domain_case}" does not match the type: {type_name(feature)}'))
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
            out.append(Description("INVALID_SCHEMA_SPECIFICATION",
                                   "distribution constraints not supported for bool domains."))
        bool_domain = feature.bool_domain
        if (bool_domain.HasField("true_value") and bool_domain.HasField("false_value")
                and bool_domain.true_value == bool_domain.false_value):
            bool_domain.ClearField("false_value")
            out.append(Description("UNKNOWN_TYPE", "Malformed BoolDomain",
                                   f"True and false value equal for BoolDomain:{bool_domain.true_value}. "
                                   "The suggested change is to clear the false_value, "
                                   "but a domain expert should review this change."))
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
                               "The values have a different nest level than expected. "
                               "Value counts will not be checked."))
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
                            f"The feature has fixed value length {actual} "
                            "but it's not compatible with the specified shape.")]
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
            deprecate(feature)
        return descriptions
    if feature.HasField("value_count") or feature.HasField("value_counts"):
        descriptions += _update_value_count(view, feature)
    if feature.HasField("shape"):
        descriptions += _update_shape(view, feature)
    if feature.HasField("presence"):
        descriptions += _update_presence(view, feature.presence)
    if view.feature_type != type_name(feature):
        deprecate(feature)
        descriptions.append(Description("UNEXPECTED_DATA_TYPE", "Unexpected data type",
                                        f"Expected data of type: {type_name(feature)} but got {view.type}"))
    descriptions += _update_domain(feature, view, schema)
    if feature.HasField("unique_constraints"):
        descriptions += _update_unique_constraints(view, feature)
    if feature.HasField("drift_comparator"):
        descriptions += update_drift(view, feature.drift_comparator, previous,
                                     drift_measurements if drift_measurements is not None else [])
    return descriptions


def _update_domain(feature, view: FeatureView, schema) -> list[Description]:
    """The domain rules of UpdateFeatureInternal; a domain that cannot fit the data is dropped."""
    out: list[Description] = []
    domain_case = feature.WhichOneof("domain_info")
    if view.type == "BYTES" and domain_case not in (None, "natural_language_domain", "image_domain", "url_domain"):
        from google.protobuf import text_format

        feature.ClearField("domain_info")
        domain_case = None
        out.append(Description("DOMAIN_INVALID_FOR_TYPE", "Invalid domain type",
                               "Data is marked as BYTES with incompatible domain_info: "
                               + text_format.MessageToString(feature)))
    if domain_case == "domain":
        string_domain = find_string_domain(schema, feature.domain)
        found, clear = update_string_domain(view, max_off_domain(feature), string_domain)
        out += found
        if clear:
            clear_string_domain(schema, feature.domain)
    elif domain_case == "string_domain":
        found, clear = update_string_domain(view, max_off_domain(feature), feature.string_domain)
        out += found
        if clear:
            feature.ClearField("domain_info")
    elif domain_case == "bool_domain":
        if view.type != "BYTES":
            out += update_bool_domain(view, feature)
    elif domain_case == "int_domain":
        found, clear = update_int_domain(view, feature.int_domain)
        out += found
        if clear:
            feature.ClearField("domain_info")
    elif domain_case == "float_domain":
        found, clear = update_float_domain(view, feature.float_domain)
        out += found
        if clear:
            feature.ClearField("domain_info")
    return out
