"""``TFTransformOutput``: a Transform's saved graph, as Trainer module files and serving code use it."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from sluice.components.tft.feature_spec import FeatureSpec, as_feature_specs, dtype_names
from sluice.components.tft.graph import (
    ANALYSIS_FILE,
    RAW_METADATA_DIR,
    SCHEMA_FILE,
    TRANSFORM_FN_DIR,
    TRANSFORMED_METADATA_DIR,
    takes_packed_input,
)


@dataclasses.dataclass
class DatasetMetadata:
    """tf.Transform's ``DatasetMetadata``: ``schema`` is a tensorflow_metadata Schema proto."""

    schema: Any


class TransformedFeatures(dict):
    """The transformed features; ``pop`` of an absent one gives None (as tf.Transform's dict)."""

    def pop(self, key, default=None):
        return super().pop(key, default)


class TransformOutput:
    """A Transform's output graph with tf.Transform's ``TFTransformOutput`` API.

    >>> out = TFTransformOutput(transform_graph.uri)                       # doctest: +SKIP
    >>> parsed = tf.io.parse_example(serialized, out.raw_feature_spec())   # doctest: +SKIP
    >>> transformed = out.transform_raw_features(parsed)                   # doctest: +SKIP
    """

    TRANSFORM_FN_DIR = TRANSFORM_FN_DIR
    TRANSFORMED_METADATA_DIR = TRANSFORMED_METADATA_DIR
    RAW_METADATA_DIR = RAW_METADATA_DIR

    def __init__(self, transform_output_dir: Any):
        self.uri = str(getattr(transform_output_dir, "uri", transform_output_dir))
        path = os.path.join(self.uri, ANALYSIS_FILE)
        try:
            with open(path) as fh:
                self.analysis = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a Transform output ({exc})") from None
        self._layer = None
        self._metadata: dict[str, DatasetMetadata] = {}

    @property
    def transform_savedmodel_dir(self) -> str:
        return os.path.join(self.uri, TRANSFORM_FN_DIR)

    @property
    def transformed_schema_path(self) -> str:
        return os.path.join(self.uri, TRANSFORMED_METADATA_DIR, SCHEMA_FILE)

    def _read_metadata(self, folder: str) -> DatasetMetadata:
        if folder not in self._metadata:
            from google.protobuf import text_format
            from tensorflow_metadata.proto.v0 import schema_pb2

            path = os.path.join(self.uri, folder, SCHEMA_FILE)
            try:
                with open(path) as fh:
                    schema = text_format.Parse(fh.read(), schema_pb2.Schema())
            except (OSError, text_format.ParseError) as exc:
                raise ValueError(f"{path}: cannot read the schema ({exc})") from None
            self._metadata[folder] = DatasetMetadata(schema)
        return self._metadata[folder]

    @property
    def transformed_metadata(self) -> DatasetMetadata:
        """The post-transform schema (``.schema``)."""
        return self._read_metadata(TRANSFORMED_METADATA_DIR)

    @property
    def raw_metadata(self) -> DatasetMetadata:
        """The raw data's schema (``.schema``)."""
        return self._read_metadata(RAW_METADATA_DIR)

    @property
    def raw_features(self) -> dict[str, FeatureSpec]:
        """``{name: FeatureSpec}`` of the raw features (dtype; shape, None for variable length)."""
        return as_feature_specs(self.analysis["raw_features"])

    @property
    def transformed_features(self) -> dict[str, FeatureSpec]:
        return as_feature_specs(self.analysis["transformed_features"])

    @property
    def raw_feature_types(self) -> dict[str, str]:
        """``{name: dtype}`` of the raw features."""
        return dtype_names(self.raw_features)

    @property
    def transformed_feature_types(self) -> dict[str, str]:
        return dtype_names(self.transformed_features)

    def raw_feature_spec(self) -> dict[str, Any]:
        """``tf.io.FixedLenFeature(shape)`` for fixed-length raw features, else ``VarLenFeature``."""
        return {name: spec.parse_spec() for name, spec in self.raw_features.items()}

    def transformed_feature_spec(self) -> dict[str, Any]:
        """``FixedLenFeature(shape)`` of each dense transformed feature, ``VarLenFeature`` of sparse ones,
        ``RaggedFeature`` of ragged ones."""
        return {name: spec.parse_spec(name=name) for name, spec in self.transformed_features.items()}

    def transform_features_layer(self) -> Any:
        """The trackable module applying the graph (loaded once per TFTransformOutput)."""
        if self._layer is None:
            from sluice.components.tft.layer import TransformFeaturesLayer

            self._layer = TransformFeaturesLayer(self.transform_savedmodel_dir, self.analysis["raw_features"],
                                                 self.analysis.get("depends_on"), takes_packed_input(self.analysis))
        return self._layer

    def transform_raw_features(self, raw_features: dict[str, Any],
                               drop_unused_features: bool = True) -> dict[str, Any]:
        """Raw tensors (as parsed with ``raw_feature_spec()``) -> transformed tensors.

        Transformed features computed from a raw feature that is not given are dropped
        (tf.Transform's TF2 behaviour, whatever ``drop_unused_features`` says).
        """
        return TransformedFeatures(self.transform_features_layer()(raw_features))

    def _vocabulary(self, name: str) -> dict[str, Any]:
        vocabularies = self.analysis["vocabularies"]
        name = self.analysis.get("asset_annotations", {}).get(name, name)  # tft.annotate_asset keys
        if name in vocabularies:
            return vocabularies[name]
        for found in vocabularies.values():  # also accept a transformed feature's name
            if name in found["used_by"]:
                return found
        raise ValueError(f"no vocabulary named {name!r} (vocabularies: {', '.join(vocabularies) or 'none'})")

    def vocabulary_file_by_name(self, vocab_filename: str) -> str:
        """The vocabulary file (one token per line) by vocab_filename or transformed feature name."""
        return os.path.join(self.uri, self._vocabulary(vocab_filename)["file"])

    def vocabulary_size_by_name(self, vocab_filename: str) -> int:
        return int(self._vocabulary(vocab_filename)["size"])

    def vocabulary_by_name(self, vocab_filename: str) -> list[bytes]:
        with open(self.vocabulary_file_by_name(vocab_filename), "rb") as fh:
            return fh.read().splitlines()

    def num_buckets_for_transformed_feature(self, name: str) -> int:
        """Categories of a vocabulary/bucketize/hash output (int_domain max + 1)."""
        found = self.analysis["annotations"].get(name)
        if not found:
            raise ValueError(f"Column {name} did not have a domain provided.")
        if int(found["min"]) != 0:
            raise ValueError(f"Column {name} has min value {found['min']}, should be 0")
        return int(found["max"]) + 1


TFTransformOutput = TransformOutput
