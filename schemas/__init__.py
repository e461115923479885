"""Curated schemas kept under version control, shipped in the wheel: ``<pipeline>.pbtxt``."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def schema_path(name: str) -> str:
    """The path of the curated schema ``name`` (``"taxi"`` or ``"taxi.pbtxt"``)."""
    return os.path.join(HERE, name if name.endswith(".pbtxt") else f"{name}.pbtxt")
