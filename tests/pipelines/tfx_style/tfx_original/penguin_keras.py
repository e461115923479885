"""Penguin species classifier in Keras, with a KerasTuner ``tuner_fn``, as a TFX module file.

Transform takes ``preprocessing_fn`` (from ``penguin_base``, kept beside this file), the
Tuner ``tuner_fn`` and the Trainer ``run_fn``. keras_tuner is imported before TensorFlow,
as many users' files do.
"""

import keras_tuner
import penguin_base as base
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

preprocessing_fn = base.preprocessing_fn

MAX_TRIALS = 2


def _search_space():
    hp = keras_tuner.HyperParameters()
    hp.Choice('learning_rate', [3e-2, 1e-2], default=3e-2)
    hp.Int('hidden_layers', 1, 2, default=1)
    hp.Int('units', 8, 16, step=8, default=16)
    return hp


def _build_model(hp):
    inputs = {base.transformed_name(key): tf.keras.Input(shape=(1,), name=base.transformed_name(key))
              for key in base.NUMERIC_KEYS}
    island = base.transformed_name(base.ISLAND_KEY)
    inputs[island] = tf.keras.Input(shape=(base.ISLAND_DEPTH,), name=island)
    x = tf.keras.layers.Concatenate()(list(inputs.values()))
    for _ in range(hp.get('hidden_layers')):
        x = tf.keras.layers.Dense(hp.get('units'), activation='relu')(x)
    outputs = tf.keras.layers.Dense(base.NUM_CLASSES, activation='softmax')(x)
    model = tf.keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=tf.keras.optimizers.Adam(hp.get('learning_rate')),
                  loss='sparse_categorical_crossentropy',
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """A random search over the layer count, width and learning rate."""
    tuner = keras_tuner.RandomSearch(
        _build_model,
        max_trials=MAX_TRIALS,
        hyperparameters=_search_space(),
        allow_new_entries=False,
        objective=keras_tuner.Objective('val_sparse_categorical_accuracy', 'max'),
        directory=fn_args.working_dir,
        project_name='penguin_search')
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            'x': base.input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                               base.TRAIN_BATCH_SIZE),
            'validation_data': base.input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                                             base.EVAL_BATCH_SIZE),
            'steps_per_epoch': fn_args.train_steps,
            'validation_steps': fn_args.eval_steps,
        })


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains with the tuned hyperparameters (or the defaults) and saves the serving model."""
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = base.input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, base.TRAIN_BATCH_SIZE)
    evaluation = base.input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                               base.EVAL_BATCH_SIZE)
    if fn_args.hyperparameters:
        hp = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    else:
        hp = _search_space()
    model = _build_model(hp)
    tensorboard = tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='batch')
    model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
              validation_steps=fn_args.eval_steps, callbacks=[tensorboard], verbose=0)
    tf.saved_model.save(model, fn_args.serving_model_dir,
                        signatures=base.make_serving_signatures(model, tf_transform_output))
