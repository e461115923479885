"""Palmer penguins Trainer module: a small Keras DNN predicting the species.

Used as the Trainer's ``module_file`` after Transform with ``pipelines/penguin/preprocessing.py``.
Inputs: the 4 z-scored measurements plus one-hot island and sex vocabulary ids; the label
``species_xf`` is the species' index in the ``species`` vocabulary.

Signatures of the exported SavedModel:

- ``serving_default``: serialized raw ``tf.Example`` (input ``examples``) ->
  ``{"probabilities": [batch, species]}`` in the order of the ``species`` vocabulary.
  Evaluator: ``prediction_key="probabilities"``, ``problem="multiclass"``, ``label_key="species_xf"``.
- ``transform_features``: serialized raw ``tf.Example`` -> the transformed features.

and the function ``evaluate_raw_features`` (raw SparseTensors -> both), which the Evaluator
uses; all three come from ``sluice.components.serving.export_serving_model``.

``tuner_fn`` (for the Tuner, with ``create_pipeline(tune=True)``) searches the learning rate
and the first layer's width with keras-tuner; ``run_fn`` trains with the values it found, as
TFX's Trainer hands them over (a keras-tuner config), or with a plain dict of them.
"""

import tensorflow as tf

from sluice import tft
from sluice.components.serving import export_serving_model
from sluice.pipelines.penguin import preprocessing as features

LABEL_KEY = features.transformed_name(features.LABEL_KEY)
PREDICTION_KEY = "probabilities"
BATCH_SIZE = 20
HIDDEN_UNITS = [16, 8]
LEARNING_RATE = 0.01


def build_keras_model(tf_transform_output: tft.TransformOutput, hidden_units=HIDDEN_UNITS,
                      learning_rate: float = LEARNING_RATE) -> tf.keras.Model:
    inputs = {}
    parts = []
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
    for units in hidden_units:
        x = tf.keras.layers.Dense(units, activation="relu")(x)
    classes = tf_transform_output.vocabulary_size_by_name(features.LABEL_VOCABULARY)
    outputs = tf.keras.layers.Dense(classes, activation="softmax")(x)
    model = tf.keras.Model(inputs, outputs)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy",
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def hyperparameter_values(fn_args) -> dict:
    """The values to train with: a Tuner's best (a keras-tuner config) or a plain dict."""
    given = fn_args.hyperparameters or {}
    values = given["values"] if "space" in given and "values" in given else given
    if "units" in values and "hidden_units" not in values:
        values = {**values, "hidden_units": [values["units"], HIDDEN_UNITS[-1]]}
    return values


def tuner_fn(fn_args):
    """A random search over the learning rate and the first layer's width (``custom_config``'s
    ``max_trials``, 4 by default), each trial ``fn_args.train_steps`` steps."""
    import keras_tuner

    from sluice import tfx

    tf_transform_output = tft.TransformOutput(fn_args.transform_output)
    space = keras_tuner.HyperParameters()
    space.Choice("learning_rate", [0.03, 0.01, 0.003], default=LEARNING_RATE)
    space.Int("units", 8, 32, step=8, default=HIDDEN_UNITS[0])

    def build(hp):
        return build_keras_model(tf_transform_output, hidden_units=[hp.get("units"), HIDDEN_UNITS[-1]],
                                 learning_rate=hp.get("learning_rate"))

    tuner = keras_tuner.RandomSearch(
        build, hyperparameters=space, allow_new_entries=False, seed=0,
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=(fn_args.custom_config or {}).get("max_trials", 4),
        directory=fn_args.working_dir, project_name="penguin")
    batch_size = (fn_args.custom_config or {}).get("batch_size", BATCH_SIZE)
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={
        "x": fn_args.dataset(fn_args.train_files, batch_size, label_key=LABEL_KEY),
        "validation_data": fn_args.dataset(fn_args.eval_files, batch_size, label_key=LABEL_KEY),
        "steps_per_epoch": fn_args.train_steps, "validation_steps": fn_args.eval_steps})


def run_fn(fn_args):
    tf_transform_output = tft.TransformOutput(fn_args.transform_output)
    batch_size = (fn_args.custom_config or {}).get("batch_size", BATCH_SIZE)
    train = fn_args.dataset(fn_args.train_files, batch_size, label_key=LABEL_KEY)
    evaluation = fn_args.dataset(fn_args.eval_files, batch_size, label_key=LABEL_KEY)
    values = hyperparameter_values(fn_args)
    with fn_args.strategy.scope():
        model = build_keras_model(tf_transform_output, hidden_units=values.get("hidden_units", HIDDEN_UNITS),
                                  learning_rate=values.get("learning_rate", LEARNING_RATE))
        fn_args.warm_start(model)  # from fn_args.base_model, when the Trainer has one
    epochs = (fn_args.custom_config or {}).get("epochs", 2)
    model.fit(train, steps_per_epoch=max(1, fn_args.train_steps // epochs), epochs=epochs,
              validation_data=evaluation, validation_steps=fn_args.eval_steps,
              callbacks=fn_args.callbacks(), verbose=0)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir,
                         raw_label_key=features.LABEL_KEY, prediction_key=PREDICTION_KEY)
