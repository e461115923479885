"""Two Keras 3 bugs with TensorFlow distribution strategies, worked around.

1. Keras builds the model from ``reduce("MEAN")`` of the first batch: that fails for dict
   inputs under MultiWorkerMirroredStrategy and for string features under any strategy.
   Only shapes and dtypes matter there, so one replica's local batch is used instead.
2. Under MultiWorkerMirroredStrategy it averages the step's (scalar) metrics with
   ``reduce("MEAN", v, axis=0)``, which fails on scalars; ``axis=None`` is meant.

Without a strategy Keras never reaches the first; with one replica both take the same batch,
and the second only differs with several workers.
Runners call ``apply()`` before a node whose ``warm_imports`` include TensorFlow, once it is
imported; other Keras versions or layouts are left alone.
"""

from __future__ import annotations


def apply() -> None:
    """Patches Keras 3's TensorFlow trainer (idempotent; does nothing for other Keras versions)."""
    try:
        import keras
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as keras_tf_trainer
    except ImportError:  # another Keras layout: leave it alone
        return
    if not keras.__version__.startswith("3."):
        return
    trainer_class = keras_tf_trainer.TensorFlowTrainer
    if getattr(trainer_class, "_sluice_patched", False):
        return
    import tensorflow as tf

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original_reduce = keras_tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    trainer_class._maybe_symbolic_build = _maybe_symbolic_build
    keras_tf_trainer.reduce_per_replica = reduce_per_replica
    trainer_class._sluice_patched = True
