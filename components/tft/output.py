"""``TransformOutput``: a Transform's saved graph, as Trainer module files and serving code use it."""

from __future__ import annotations

import json
import os
from typing import Any

from sluice.components.tft.graph import ANALYSIS_FILE, SCHEMA_FILE, TRANSFORM_FN_DIR, TRANSFORMED_METADATA_DIR
from sluice.components.tft.tensors import import_tf, tf_dtype


class TransformOutput:
    """A Transform's output graph, as TFT's ``TFTransformOutput``, for Trainer module files and serving.

    >>> out = TransformOutput(transform_graph.uri)                         # doctest: +SKIP
    >>> parsed = tf.io.parse_example(serialized, out.raw_feature_spec())   # doctest: +SKIP
    >>> transformed = out.transform_raw_features(parsed)                   # doctest: +SKIP
    """

    def __init__(self, transform_graph_uri: Any):
        self.uri = str(getattr(transform_graph_uri, "uri", transform_graph_uri))
        path = os.path.join(self.uri, ANALYSIS_FILE)
        try:
            with open(path) as fh:
                self.analysis = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a Transform output ({exc})") from None
        self._layer = None

    @property
    def transform_savedmodel_dir(self) -> str:
        return os.path.join(self.uri, TRANSFORM_FN_DIR)

    @property
    def transformed_schema_path(self) -> str:
        return os.path.join(self.uri, TRANSFORMED_METADATA_DIR, SCHEMA_FILE)

    @property
    def raw_feature_types(self) -> dict[str, str]:
        return dict(self.analysis["raw_features"])

    @property
    def transformed_feature_types(self) -> dict[str, str]:
        return dict(self.analysis["transformed_features"])

    def raw_feature_spec(self) -> dict[str, Any]:
        """``{name: tf.io.VarLenFeature(dtype)}`` for parsing raw serialized tf.Examples."""
        tf = import_tf()
        return {n: tf.io.VarLenFeature(tf_dtype(d)) for n, d in self.raw_feature_types.items()}

    def transformed_feature_spec(self) -> dict[str, Any]:
        """``{name: tf.io.FixedLenFeature([], dtype)}`` of the transformed features."""
        tf = import_tf()
        return {n: tf.io.FixedLenFeature([], tf_dtype(d)) for n, d in self.transformed_feature_types.items()}

    def transform_features_layer(self) -> Any:
        """The trackable module applying the graph (loaded once per TransformOutput)."""
        if self._layer is None:
            from sluice.components.tft.layer import TransformFeaturesLayer

            self._layer = TransformFeaturesLayer(self.transform_savedmodel_dir, self.raw_feature_types)
        return self._layer

    def transform_raw_features(self, raw_features: dict[str, Any]) -> dict[str, Any]:
        """Raw SparseTensors (or dense tensors) -> transformed dense tensors."""
        return self.transform_features_layer()(raw_features)

    def _vocabulary(self, name: str) -> dict[str, Any]:
        vocabularies = self.analysis["vocabularies"]
        if name in vocabularies:
            return vocabularies[name]
        for found in vocabularies.values():  # also accept a transformed feature's name
            if name in found["used_by"]:
                return found
        raise ValueError(f"no vocabulary named {name!r} (vocabularies: {', '.join(vocabularies) or 'none'})")

    def vocabulary_file_by_name(self, name: str) -> str:
        """The vocabulary file (one token per line) by vocab_filename or transformed feature name."""
        return os.path.join(self.uri, self._vocabulary(name)["file"])

    def vocabulary_size_by_name(self, name: str) -> int:
        return int(self._vocabulary(name)["size"])

    def vocabulary_by_name(self, name: str) -> list[bytes]:
        with open(self.vocabulary_file_by_name(name), "rb") as fh:
            return fh.read().splitlines()

    def num_buckets_for_transformed_feature(self, name: str) -> int:
        """Categories of a vocabulary/bucketize/hash output (int_domain max + 1)."""
        found = self.analysis["annotations"].get(name)
        if not found:
            raise ValueError(f"transformed feature {name!r} is not categorical")
        return int(found["max"]) + 1
