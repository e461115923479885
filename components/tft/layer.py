"""The trackable module applying a saved transform graph (imports TensorFlow: import it lazily)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from sluice.components.tft.tensors import complete_raw_features


class TransformFeaturesLayer(tf.Module):
    """Applies a saved transform graph: raw feature dict -> transformed dense tensors.

    A trackable ``tf.Module``: assign it to a model/module attribute and it is saved
    with it (e.g. inside the serving SavedModel).
    """

    def __init__(self, transform_fn_dir: str, raw_feature_types: dict[str, str]):
        super().__init__(name="transform_features_layer")
        self._transform = tf.saved_model.load(transform_fn_dir)
        self._raw_types = tuple(raw_feature_types.items())

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        raw = complete_raw_features(features, dict(self._raw_types))
        return self._transform.transform_fn(raw)
