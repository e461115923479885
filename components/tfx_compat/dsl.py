"""``tfx.dsl``: ``tfx.dsl.io.fileio``, TFX's file I/O."""

from __future__ import annotations

import types

from sluice.components.tfx_compat import fileio

io = types.SimpleNamespace(fileio=fileio)

__all__ = ["io"]
