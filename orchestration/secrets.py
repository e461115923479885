"""Credentials never leave the process: one place that masks them in URIs and text."""

from __future__ import annotations

import re


def mask_uri(uri: str | None) -> str | None:
    """Hides credentials in a URI (``user:secret@host`` -> ``user:***@host``)."""
    if not uri:
        return uri
    return re.sub(r"(?<=://)([^/@:]+):([^/@]*)@", r"\1:***@", uri)


def mask_text(text: str) -> str:
    """``text`` with the credentials of every URI in it masked."""
    return re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", lambda m: mask_uri(m.group(0)), text)
