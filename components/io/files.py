"""Whole small files (schemas, statistics, reports): local paths directly, other URIs through Beam."""

from __future__ import annotations

import os


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI of a Beam filesystem (``gs://...``) rather than a local path."""
    return "://" in path


def read_bytes(path: str) -> bytes:
    """Reads a whole file."""
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file, making its local folder first."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def exists(path: str) -> bool:
    """Whether ``path`` names an existing file."""
    if not is_remote(path):
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)
