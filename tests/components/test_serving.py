"""Tests of the serving contract's calls into a loaded SavedModel."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def test_a_loaded_models_raw_function_is_looked_up_once(tmp_path, monkeypatch):
    import tensorflow as tf

    from sluice.components import serving
    from sluice.components.tft import raw_input_signature

    @tf.function(input_signature=[raw_input_signature({"x": "float32"})])
    def evaluate_raw_features(raw):
        return {"outputs": {"doubled": tf.sparse.to_dense(raw["x"])[:, 0] * 2.0}}

    export = tf.Module()
    export.evaluate_raw_features = evaluate_raw_features
    tf.saved_model.save(export, str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))

    looked_up = []
    real = serving.raw_feature_types
    monkeypatch.setattr(serving, "raw_feature_types", lambda function: looked_up.append(1) or real(function))
    first = serving.predict_batch(loaded, pa.table({"x": pa.array([1.0, 2.5], pa.float32())}))
    second = serving.predict_batch(loaded, pa.table({"x": pa.array([4.0], pa.float32())}))
    assert serving.raw_function(loaded) is not None
    np.testing.assert_allclose(first["doubled"], [2.0, 5.0])
    np.testing.assert_allclose(second["doubled"], [8.0])
    assert len(looked_up) == 1
