"""Example pipelines (penguin, taxi), each a ``pipeline.py`` with its module files."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def curated_schema(path: str) -> str:
    """A schema file as given, or relative to the repository, where ``schemas/`` lives."""
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(REPO, path)
