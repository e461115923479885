"""``tfx.utils``: what module files use of it."""

from __future__ import annotations

from typing import Any


def parse_pbtxt_file(file_name: str, message: Any) -> Any:
    """Parses a text-format protocol buffer file into ``message`` and returns it (TFX's helper)."""
    from google.protobuf import text_format

    from sluice.components.tfx_compat import fileio

    with fileio.open(file_name, "r") as fh:
        return text_format.Parse(fh.read(), message)


__all__ = ["parse_pbtxt_file"]
