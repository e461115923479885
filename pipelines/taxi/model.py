"""Chicago taxi Trainer module: TFX's wide-and-deep "big tipper" classifier (Keras 3).

Used as the Trainer's ``module_file`` after Transform with ``pipelines/taxi/preprocessing.py``.
Inputs are the transformed features (``*_xf``); the label is ``tips_xf`` (tip > 20% of fare).

- wide part: one-hot vocabulary ids of payment_type and company (incl. OOV buckets), the 4
  bucketized pickup/dropoff latitudes/longitudes, and the integer categoricals (hour, day,
  month, community areas one-hot up to their max values; census tracts hashed), as TFX's
  taxi_utils_native_keras.py;
- deep part: dense layers [100, 70, 50, 25] over the 3 z-scored numerics;
- trains ``train_steps`` (1000 in the example pipeline) at batch 40, validates ``eval_steps`` (150).

The exported SavedModel's signatures:

- ``serving_default``: serialized raw ``tf.Example`` (input ``examples``; parsed with the raw
  feature spec minus the label) -> ``{"outputs": probability of a big tip, shape [batch]}``.
  The Evaluator's ``prediction_key`` is ``"outputs"``.
- ``transform_features``: serialized raw ``tf.Example`` -> all transformed features (incl.
  ``tips_xf``), so the Evaluator can take ``label_key="tips_xf"`` from raw eval data.
"""

import tensorflow as tf

from components.trainer import export_serving_model
from components.transform import TransformOutput
from pipelines.taxi import preprocessing as features

LABEL_KEY = features.transformed_name(features.LABEL_KEY)
PREDICTION_KEY = "outputs"
BATCH_SIZE = 40
HIDDEN_UNITS = [100, 70, 50, 25]
LEARNING_RATE = 0.01
STEPS_PER_EXECUTION = 50
# Integer categoricals: one-hot width (values are clipped into it) or, for census tracts
# (11-digit ids), hash buckets.
CATEGORICAL_WIDTH = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}
HASHED_CATEGORICAL_BUCKETS = {"pickup_census_tract": 2000, "dropoff_census_tract": 2000}


def _name(key: str) -> str:
    return features.transformed_name(key)


def build_keras_model(tf_transform_output: TransformOutput, hidden_units=HIDDEN_UNITS,
                      learning_rate: float = LEARNING_RATE) -> tf.keras.Model:
    """The wide-and-deep model over the transformed feature dict; outputs a probability [batch]."""
    inputs = {}
    for key in features.DENSE_FLOAT_FEATURE_KEYS:
        inputs[_name(key)] = tf.keras.Input(shape=(), name=_name(key), dtype=tf.float32)
    for key in features.VOCAB_FEATURE_KEYS + features.BUCKET_FEATURE_KEYS + features.CATEGORICAL_FEATURE_KEYS:
        inputs[_name(key)] = tf.keras.Input(shape=(), name=_name(key), dtype=tf.int64)

    deep = tf.keras.layers.Concatenate()(
        [tf.keras.layers.Reshape((1,))(inputs[_name(key)]) for key in features.DENSE_FLOAT_FEATURE_KEYS])
    for units in hidden_units:
        deep = tf.keras.layers.Dense(units, activation="relu")(deep)

    wide = []
    for key in features.VOCAB_FEATURE_KEYS:
        width = features.VOCAB_SIZE + features.OOV_SIZE
        wide.append(_one_hot(inputs[_name(key)], width, f"{key}_onehot"))
    for key in features.BUCKET_FEATURE_KEYS:
        wide.append(_one_hot(inputs[_name(key)], features.FEATURE_BUCKET_COUNT + 1, f"{key}_onehot"))
    for key, width in CATEGORICAL_WIDTH.items():
        wide.append(_one_hot(inputs[_name(key)], width, f"{key}_onehot"))
    for key, buckets in HASHED_CATEGORICAL_BUCKETS.items():
        hashed = tf.keras.layers.Hashing(num_bins=buckets, name=f"{key}_hash")(inputs[_name(key)])
        wide.append(tf.keras.layers.CategoryEncoding(num_tokens=buckets, output_mode="one_hot",
                                                     name=f"{key}_onehot")(hashed))
    wide = tf.keras.layers.Concatenate()(wide)

    logit = tf.keras.layers.Dense(1)(tf.keras.layers.Concatenate()([deep, wide]))
    probability = tf.keras.layers.Reshape(())(tf.keras.layers.Activation("sigmoid")(logit))
    model = tf.keras.Model(inputs, probability)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=[tf.keras.metrics.BinaryAccuracy(name="binary_accuracy"), tf.keras.metrics.AUC(name="auc")],
        # Many small steps per tf.function call: the per-step Python overhead dominates otherwise.
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def _one_hot(ids, width: int, name: str):
    """One-hot of integer ids; out-of-range ids land in the last slot rather than failing."""
    clipped = tf.keras.layers.Lambda(lambda x: tf.clip_by_value(x, 0, width - 1), name=f"{name}_clip")(ids)
    return tf.keras.layers.CategoryEncoding(num_tokens=width, output_mode="one_hot", name=name)(clipped)


def run_fn(fn_args):
    """Trains on the transformed examples and exports the serving model."""
    tf_transform_output = TransformOutput(fn_args.transform_output)
    batch_size = fn_args.custom_config.get("batch_size", BATCH_SIZE)
    train = fn_args.dataset(fn_args.train_files, batch_size, label_key=LABEL_KEY)
    evaluation = fn_args.dataset(fn_args.eval_files, batch_size, label_key=LABEL_KEY)
    with fn_args.strategy.scope():
        model = build_keras_model(tf_transform_output,
                                  hidden_units=fn_args.hyperparameters.get("hidden_units", HIDDEN_UNITS),
                                  learning_rate=fn_args.hyperparameters.get("learning_rate", LEARNING_RATE))
        fn_args.warm_start(model)  # from fn_args.base_model, when the Trainer has one
    # TFX trains train_steps and validates eval_steps once; more epochs would repeat the validation.
    epochs = fn_args.custom_config.get("epochs", 1)
    model.fit(
        train,
        steps_per_epoch=max(1, fn_args.train_steps // epochs),
        epochs=epochs,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        callbacks=fn_args.callbacks(),
        verbose=0,
    )
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir,
                         raw_label_key=features.LABEL_KEY, prediction_key=PREDICTION_KEY)
