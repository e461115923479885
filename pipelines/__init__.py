"""Example pipelines (penguin, taxi), each a ``pipeline.py`` with its module files."""

import os

from sluice.schemas import HERE as SCHEMAS_DIR


def curated_schema(path: str) -> str:
    """A schema file as given, or one of the curated schemas shipped with Sluice.

    ``schemas/taxi.pbtxt`` (or ``taxi.pbtxt``) names the shipped one unless such a
    file exists relative to the current directory.
    """
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(SCHEMAS_DIR, os.path.basename(path))
