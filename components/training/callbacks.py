"""The Keras callbacks ``FnArgs.callbacks()`` gives ``model.fit``.

Imports TensorFlow: only ``FnArgs.callbacks()`` imports this module, inside the run.
"""

from __future__ import annotations

import os
import time
from typing import Any

import tensorflow as tf


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def tensorboard_callback(log_dir: str) -> tf.keras.callbacks.Callback:
    """Keras' TensorBoard callback, or without the tensorboard package a callback writing the
    per-epoch scalars as TensorBoard event files with TF's own summary ops."""
    try:
        import tensorboard  # noqa: F401  (Keras' callback needs it)

        return tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")
    except ImportError:
        pass
    return EpochScalars(log_dir)


class EpochScalars(tf.keras.callbacks.Callback):
    """Writes ``train/<metric>`` and ``validation/<metric>`` scalars per epoch under ``log_dir``."""

    def __init__(self, log_dir: str):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        self.log_dir = log_dir
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def on_train_begin(self, logs=None):
        self._writers = {name: tf.summary.create_file_writer(os.path.join(self.log_dir, name))
                         for name in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if not _is_number(value):
                continue
            writer, tag = (("validation", key[4:]) if key.startswith("val_") else ("train", key))
            with self._writers[writer].as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=self._metadata)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()


class FinalMetrics(tf.keras.callbacks.Callback):
    """Keeps the last epoch's numeric Keras logs in ``into`` (the Trainer records them as metrics)."""

    def __init__(self, into: dict):
        super().__init__()
        self.into = into

    def on_epoch_end(self, epoch, logs=None):
        self.into.clear()
        self.into.update({k: float(v) for k, v in (logs or {}).items() if _is_number(v)})


class MlflowEpochMetrics(tf.keras.callbacks.Callback):
    """Logs each epoch's Keras metrics to an existing MLflow run."""

    def __init__(self, tracking_uri: str, run_id: str):
        super().__init__()
        self.tracking_uri = tracking_uri
        self.run_id = run_id

    def on_epoch_end(self, epoch, logs=None):
        import mlflow.entities
        from mlflow.tracking import MlflowClient

        now_ms = int(time.time() * 1000)
        metrics = [mlflow.entities.Metric(key, float(value), now_ms, epoch)
                   for key, value in (logs or {}).items() if _is_number(value)]
        if metrics:
            MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=metrics)
