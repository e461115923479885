"""The TFDV-format statistics/schema engine shared by the components.

It reads and writes what TFDV reads and writes (tensorflow_metadata
``DatasetFeatureStatisticsList``, ``Schema`` and ``Anomalies`` protos) and
follows TFDV 1.16's rules, so that schemas and anomalies match ``tfdv``'s::

    from sluice.components.tfdv import infer_schema, validate_statistics, format_anomalies
    schema = infer_schema(stats_list)                    # DatasetFeatureStatisticsList -> Schema
    anomalies = validate_statistics(stats_list, schema)  # protos in, Anomalies out
    print(format_anomalies({"eval": anomalies}))

Modules: ``protos`` (files), ``views`` (statistics access), ``features``
(shared vocabulary), ``rules`` and ``domains`` (TFDV's Schema::UpdateFeature),
``drift`` (distances between spans), ``validation``, ``inference``.
Importing this package imports no TensorFlow, Beam or Arrow.
"""

from __future__ import annotations

from sluice.components.tfdv.drift import (
    add_drift_comparators,
    histogram_jsd,
    jensen_shannon_divergence,
    linfty_distance,
)
from sluice.components.tfdv.features import Description, find_feature, is_deprecated, is_existence_required, six_digits
from sluice.components.tfdv.inference import DEFAULT_MAX_STRING_DOMAIN_SIZE, create_feature, infer_schema, update_schema
from sluice.components.tfdv.protos import default_dataset, load_schema, load_statistics, schema_to_text
from sluice.components.tfdv.rules import update_feature
from sluice.components.tfdv.validation import count_errors, format_anomalies, severity_name, validate_statistics
from sluice.components.tfdv.views import DatasetView, FeatureView, serialize_path

__all__ = [
    "DEFAULT_MAX_STRING_DOMAIN_SIZE",
    "DatasetView",
    "Description",
    "FeatureView",
    "add_drift_comparators",
    "count_errors",
    "create_feature",
    "default_dataset",
    "find_feature",
    "format_anomalies",
    "histogram_jsd",
    "infer_schema",
    "is_deprecated",
    "is_existence_required",
    "jensen_shannon_divergence",
    "linfty_distance",
    "load_schema",
    "load_statistics",
    "schema_to_text",
    "serialize_path",
    "severity_name",
    "six_digits",
    "update_feature",
    "update_schema",
    "validate_statistics",
]
