"""``tft.experimental``: the parts of tf.Transform's experimental API that TFX module files use."""

from __future__ import annotations

from sluice.components.tft.vocabulary import get_vocabulary_size_by_name

__all__ = ["get_vocabulary_size_by_name"]
