"""Schema inference, as ``tfdv.infer_schema`` (TFDV 1.16).

Per feature: the type (INT / FLOAT / BYTES), presence (``min_count: 1``, plus
``min_fraction: 1.0`` when never missing), the shape (``shape { dim { size: n } }``
for required features with n > 0 values in every example: 1 for a scalar column, 784
for a list column of 784 floats; else ``value_count``, none when some list is empty), and a domain:
``bool_domain`` for ints in {0, 1} or strings like true/false, ``int_domain``
for strings that are all integers, and a named ``string_domain`` listing the
values of string features with at most ``max_string_domain_size`` distinct
values. ``update_schema`` relaxes a schema to fit further statistics, as
``tfdv.update_schema``.
"""

from __future__ import annotations

from sluice.components.sdk import ComponentError
from sluice.components.tfdv.domains import update_string_domain
from sluice.components.tfdv.features import find_feature, is_existence_required
from sluice.components.tfdv.protos import default_dataset
from sluice.components.tfdv.rules import init_value_count, update_feature
from sluice.components.tfdv.views import DatasetView, FeatureView

DEFAULT_MAX_STRING_DOMAIN_SIZE = 100

_TRUE_VALUES = {"TRUE", "true", "SET", "set", "1", ""}
_FALSE_VALUES = {"FALSE", "false", "CLEAR", "clear", "0"}


def _init_presence_and_shape(view: FeatureView, infer_feature_shape: bool, feature) -> None:
    feature.presence.min_count = 0 if view.num_present < 1.0 else 1
    if view.num_present <= 0:
        return
    if view.num_missing == 0.0:
        feature.presence.min_fraction = 1.0
    if infer_feature_shape and view.feature_type != "STRUCT":
        shape = []
        for missing, (lowest, highest) in zip(view.num_missing_nested, view.min_max_num_values):
            if missing != 0 or lowest != highest or lowest <= 0:
                shape = None
                break
            shape.append(lowest)
        if shape:
            for size in shape:
                feature.shape.dim.add().size = size
    if not feature.HasField("shape"):
        init_value_count(view, feature)


def _is_bool_candidate(view: FeatureView) -> bool:
    if view.type == "INT":
        return view.num_stats.min >= 0.0 and view.num_stats.max == 1.0
    if view.type != "STRING":
        return False
    tokens = view.string_values
    if not tokens or len(tokens) > 2:
        return False
    true_seen = false_seen = False
    for token in tokens:
        if not true_seen and token in _TRUE_VALUES:
            true_seen = True
        elif not false_seen and token in _FALSE_VALUES:
            false_seen = True
        else:
            return False
    return True


def _is_int_string_candidate(view: FeatureView) -> bool:
    if view.type != "STRING" or view.has_invalid_utf8:
        return False
    values = view.string_values
    if not values:
        return False
    for text in values:
        try:
            value = int(text.strip())
        except ValueError:
            return False
        if not -(2 ** 63) <= value < 2 ** 63:
            return False
    return True


def _new_string_domain(schema, candidate: str):
    names = {d.name for d in schema.string_domain}
    name, index = candidate, 1
    while name in names:
        index += 1
        name = f"{candidate}{index}"
    domain = schema.string_domain.add()
    domain.name = name
    return domain


def create_feature(view: FeatureView, schema, infer_feature_shape: bool = True,
                   max_string_domain_size: int = DEFAULT_MAX_STRING_DOMAIN_SIZE):
    """Adds the feature these statistics describe to ``schema`` (TFDV's CreateColumn)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    if len(view.steps) > 1:
        parent = find_feature(schema, view.steps[:-1])
        if parent is None:
            raise ComponentError(f"SchemaGen: statistics of '{view.key}' come without their parent feature")
        feature = parent.struct_domain.feature.add()
    else:
        feature = schema.feature.add()
    feature.name = view.steps[-1]
    feature.type = schema_pb2.FeatureType.Value(view.feature_type)
    _init_presence_and_shape(view, infer_feature_shape, feature)
    if view.has_invalid_utf8 or view.type == "BYTES":
        return feature  # raw bytes: no domain
    if _is_bool_candidate(view):
        feature.bool_domain.SetInParent()
        if view.type == "STRING":
            values = view.string_values
            true_value = next((v for v in values if v in _TRUE_VALUES), None)
            false_value = next((v for v in values if v in _FALSE_VALUES), None)
            if true_value is not None:
                feature.bool_domain.true_value = true_value
            if false_value is not None:
                feature.bool_domain.false_value = false_value
    elif _is_int_string_candidate(view):
        feature.int_domain.SetInParent()
    elif view.string_values and len(view.string_values) <= max_string_domain_size:
        domain = _new_string_domain(schema, view.key)
        update_string_domain(view, 0.0, domain)
        feature.domain = domain.name
    return feature


def infer_schema(statistics, infer_feature_shape: bool = True,
                 max_string_domain_size: int = DEFAULT_MAX_STRING_DOMAIN_SIZE):
    """A Schema inferred from a ``DatasetFeatureStatisticsList``, as ``tfdv.infer_schema``."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    dataset = default_dataset(statistics)
    schema = schema_pb2.Schema()
    view = DatasetView(dataset)
    for feature_view in view.features:
        # Composite features (sparse/weighted) have no common stats and cannot be inferred.
        if feature_view.stats.WhichOneof("stats") is None:
            continue
        if find_feature(schema, feature_view.steps) is None:
            create_feature(feature_view, schema, infer_feature_shape, max_string_domain_size)
    return schema


def update_schema(schema, statistics, infer_feature_shape: bool = True,
                  max_string_domain_size: int = DEFAULT_MAX_STRING_DOMAIN_SIZE):
    """A copy of ``schema`` relaxed so that ``statistics`` conform (``tfdv.update_schema``).

    As in TFDV 1.16, features first seen here get a ``value_count``, never a
    shape, whatever ``infer_feature_shape`` says (kept for the same signature).
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    view = DatasetView(default_dataset(statistics))
    for feature_view in view.features:
        feature = find_feature(result, feature_view.steps)
        if feature is None:
            create_feature(feature_view, result, False, max_string_domain_size)
        else:
            update_feature(feature, feature_view, result)
    # Required features these statistics lack are deprecated, as TFDV does.
    present = {v.key for v in view.features}
    for feature in result.feature:
        if is_existence_required(feature) and feature.name not in present:
            feature.lifecycle_stage = schema_pb2.DEPRECATED
    return result
