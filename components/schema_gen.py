"""SchemaGen: infers a tensorflow_metadata Schema from statistics, as TFDV does.

The inference is ``tfdv.infer_schema``'s (TFDV 1.16), from the shared engine
``sluice.components.tfdv``. With several splits the schema is inferred from
the first and relaxed by the next ones (``update_schema``), as TFX's SchemaGen does.

Without a pipeline::

    from sluice.components.tfdv import infer_schema
    schema = infer_schema(stats_list)          # DatasetFeatureStatisticsList -> Schema
"""

from __future__ import annotations

import os

from sluice.components.artifacts import ExampleStatistics, Schema
from sluice.components.io.files import write_text
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component
from sluice.components.tfdv import (
    DEFAULT_MAX_STRING_DOMAIN_SIZE,
    infer_schema,
    load_statistics,
    schema_to_text,
    update_schema,
)

__all__ = ["SchemaGen", "generate_schema"]


def generate_schema(
    statistics: Input[ExampleStatistics],
    schema: Output[Schema],
    infer_feature_shape: bool = True,
    exclude_splits: list[str] = [],  # noqa: B006 - never mutated; the component's declared default
    max_string_domain_size: int = DEFAULT_MAX_STRING_DOMAIN_SIZE,
    ctx: ExecutionContext = None,
) -> None:
    """Infers ``schema.pbtxt`` from the statistics of every split not excluded."""
    ctx = ctx or ExecutionContext()
    if max_string_domain_size < 0:
        raise ComponentError(
            f"SchemaGen: parameter 'max_string_domain_size' must be >= 0, got {max_string_domain_size}")
    splits = [s for s in statistics.split_names if s not in exclude_splits]
    if not splits:
        raise ComponentError(
            f"SchemaGen: no split left to infer a schema from (split_names={statistics.split_names}, "
            f"exclude_splits={exclude_splits})")
    inferred = None
    for split in splits:
        stats_path = os.path.join(statistics.split_uri(split), "FeatureStats.pb")
        stats = load_statistics(stats_path, "SchemaGen")
        try:
            if inferred is None:
                inferred = infer_schema(stats, infer_feature_shape, max_string_domain_size)
            else:
                inferred = update_schema(inferred, stats, infer_feature_shape, max_string_domain_size)
        except ComponentError as exc:
            raise ComponentError(f"SchemaGen: {stats_path}: {exc}") from None
    write_text(schema.file, schema_to_text(inferred))
    ctx.log_metric("num_features", len(inferred.feature))
    ctx.log_metric("num_string_domains", len(inferred.string_domain))


SchemaGen = component(generate_schema, name="SchemaGen")
