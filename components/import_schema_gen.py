"""ImportSchemaGen: brings a curated schema file into the pipeline.

Users keep hand-edited schemas as text protos, e.g. ``schemas/<pipeline>.pbtxt``
in the repository. The file must parse as a tensorflow_metadata ``Schema``;
it is then copied unchanged (comments included) to ``<uri>/schema.pbtxt``.
Its content is part of the cache key, so editing it re-runs the component.

In a pipeline::

    schema_gen = ImportSchemaGen(schema_file="schemas/taxi.pbtxt")
    ExampleValidator(statistics=..., schema=schema_gen.outputs["schema"])
"""

from __future__ import annotations

import os

from sluice.components.artifacts import Schema
from sluice.components.io.files import exists, is_remote, read_bytes, write_bytes
from sluice.components.sdk import ComponentError, ExecutionContext, ExternalData, Output, component
from sluice.components.tfdv import load_schema

__all__ = ["ImportSchemaGen", "import_schema"]


def import_schema(
    schema_file: ExternalData,
    schema: Output[Schema],
    ctx: ExecutionContext = None,
) -> None:
    """Checks that ``schema_file`` is a valid text-format Schema and copies it."""
    ctx = ctx or ExecutionContext()
    if not is_remote(schema_file) and os.path.isdir(schema_file):
        raise ComponentError(f"ImportSchemaGen: schema_file {schema_file} is a folder, expected a .pbtxt file")
    if not exists(schema_file):
        raise ComponentError(f"ImportSchemaGen: schema_file {schema_file} does not exist")
    parsed = load_schema(schema_file, "ImportSchemaGen")
    if not parsed.feature and not parsed.sparse_feature and not parsed.weighted_feature:
        raise ComponentError(f"ImportSchemaGen: schema_file {schema_file} defines no features")
    write_bytes(schema.file, read_bytes(schema_file))
    ctx.log_metric("num_features", len(parsed.feature))


ImportSchemaGen = component(import_schema, name="ImportSchemaGen")
