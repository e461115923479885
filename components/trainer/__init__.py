"""Trainer: runs a user module's ``run_fn(fn_args)`` to train and export a model.

As in TFX, the module file defines ``run_fn(fn_args: FnArgs)``; it reads
``fn_args.train_files`` / ``fn_args.eval_files`` (Parquet files, see
:func:`parquet_dataset`), builds its model under ``fn_args.strategy`` and saves
a SavedModel with a ``serving_default`` signature (serialized ``tf.Example`` in,
input name ``examples``) into ``fn_args.serving_model_dir``
(``sluice.components.serving.export_serving_model`` does so for a Transform's model).

A minimal module file::

    import tensorflow as tf

    def run_fn(fn_args):
        train = fn_args.dataset(fn_args.train_files, batch_size=32, label_key="label")
        with fn_args.strategy.scope():
            model = ...  # a Keras model over the feature dict
        model.fit(train, steps_per_epoch=fn_args.train_steps, callbacks=fn_args.callbacks())
        tf.saved_model.save(model_with_signature, fn_args.serving_model_dir)

TensorBoard logs go to ``<model_run.uri>/logs``; with a tracking URI, params,
per-epoch metrics and the SavedModel are logged to the pipeline's MLflow run.

``component`` holds the executor ``run_trainer`` and ``Trainer``; what it shares with the
Tuner (the Parquet input pipeline, ``FnArgs``, callbacks, strategies) is in ``sluice.components.training``.
"""

from sluice.components.serving import export_serving_model
from sluice.components.trainer.component import Trainer, run_trainer
from sluice.components.training.data import parquet_dataset
from sluice.components.training.fn_args import DataAccessor, DatasetOptions, FnArgs

__all__ = [
    "DataAccessor",
    "DatasetOptions",
    "FnArgs",
    "Trainer",
    "export_serving_model",
    "parquet_dataset",
    "run_trainer",
]
