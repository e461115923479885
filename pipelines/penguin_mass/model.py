"""Trainer module of the penguin body-mass pipeline: a small Keras regression in grams.

Inputs: the 3 z-scored measurements and one-hot species, island and sex; the label
``body_mass_g_xf`` is the mass in grams. The network predicts a standardized mass that its
last layer turns back into grams (``MASS_MEAN``, ``MASS_SCALE``), so training starts near
the answer and the served prediction, ``mass``, is in grams like the raw ``body_mass_g``.

The SavedModel comes from ``sluice.components.serving.export_serving_model``:
``serving_default`` takes serialized raw ``tf.Example``s and returns ``{"mass": [batch, 1]}``.
Evaluator: ``label_key="body_mass_g"``, ``prediction_key="mass"``, ``problem="regression"``.
"""

import tensorflow as tf

from sluice import tft
from sluice.components.serving import export_serving_model
from sluice.pipelines.penguin_mass import preprocessing as features

LABEL_KEY = features.transformed_name(features.LABEL_KEY)
PREDICTION_KEY = "mass"
BATCH_SIZE = 20
HIDDEN_UNITS = [16, 8]
LEARNING_RATE = 0.01
MASS_MEAN, MASS_SCALE = 4200.0, 800.0  # grams: the rough centre and spread of penguin masses


def build_keras_model(tf_transform_output: tft.TransformOutput) -> tf.keras.Model:
    inputs, parts = {}, []
    for key in features.NUMERIC_FEATURE_KEYS:
        name = features.transformed_name(key)
        inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
        parts.append(tf.keras.layers.Reshape((1,))(inputs[name]))
    for key in features.CATEGORICAL_FEATURE_KEYS:
        name = features.transformed_name(key)
        inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.int64)
        width = tf_transform_output.vocabulary_size_by_name(key) + 1  # one OOV bucket
        parts.append(tf.keras.layers.CategoryEncoding(num_tokens=width, output_mode="one_hot")(inputs[name]))
    x = tf.keras.layers.Concatenate()(parts)
    for units in HIDDEN_UNITS:
        x = tf.keras.layers.Dense(units, activation="relu")(x)
    standardized = tf.keras.layers.Dense(1)(x)
    grams = tf.keras.layers.Rescaling(MASS_SCALE, offset=MASS_MEAN)(standardized)
    model = tf.keras.Model(inputs, grams)
    model.compile(optimizer=tf.keras.optimizers.Adam(LEARNING_RATE), loss="mse",
                  metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")])
    return model


def run_fn(fn_args):
    tf_transform_output = tft.TransformOutput(fn_args.transform_output)
    batch_size = (fn_args.custom_config or {}).get("batch_size", BATCH_SIZE)
    train = fn_args.dataset(fn_args.train_files, batch_size, label_key=LABEL_KEY)
    evaluation = fn_args.dataset(fn_args.eval_files, batch_size, label_key=LABEL_KEY)
    with fn_args.strategy.scope():
        model = build_keras_model(tf_transform_output)
    epochs = (fn_args.custom_config or {}).get("epochs", 2)
    model.fit(train, steps_per_epoch=max(1, fn_args.train_steps // epochs), epochs=epochs,
              validation_data=evaluation, validation_steps=fn_args.eval_steps,
              callbacks=fn_args.callbacks(), verbose=0)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir,
                         raw_label_key=features.LABEL_KEY, prediction_key=PREDICTION_KEY)
