"""``tft.experimental``: the parts of tf.Transform's experimental API that TFX module files use."""

from __future__ import annotations

from sluice.components.tft.vocabulary import get_vocabulary_size_by_name

__all__ = ["get_vocabulary_size_by_name"]

_NOT_SUPPORTED = frozenset({
    "approximate_vocabulary", "compute_and_apply_approximate_vocabulary", "document_frequency", "idf",
    "annotate_sparse_output_shape", "annotate_true_sparse_output", "ptransform_analyzer",
    "CacheablePTransformAnalyzer", "PTransformAnalyzerCacheCoder", "SimpleJsonPTransformAnalyzerCacheCoder",
})


def __getattr__(name: str):
    if name in _NOT_SUPPORTED:
        raise AttributeError(f"tft.experimental.{name} is not supported by Sluice's tf.Transform")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
