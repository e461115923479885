"""The TFDV-format statistics/schema engine shared by the components.

``load_schema``/``load_statistics`` read the files components exchange.
"""

from __future__ import annotations

from sluice.components.tfdv.protos import default_dataset, load_schema, load_statistics, schema_to_text

__all__ = ["default_dataset", "load_schema", "load_statistics", "schema_to_text"]
