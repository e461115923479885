"""Chicago taxi Trainer module: TFX's wide-and-deep "big tipper" classifier (Keras 3).

Used as the Trainer's ``module_file`` after Transform with ``pipelines/taxi/preprocessing.py``.
Inputs are the transformed features (``*_xf``); the label is ``tips_xf`` (tip > 20% of fare).

- wide part: linear in the one-hot vocabulary ids of payment_type and company (incl. OOV
  buckets), the 4 bucketized pickup/dropoff latitudes/longitudes, and the integer
  categoricals (hour, day, month, community areas up to their max values; census tracts
  hashed), as TFX's taxi_utils_native_keras.py, computed as a weight lookup per feature;
- deep part: dense layers [100, 70, 50, 25] over the 3 z-scored numerics;
- trains ``train_steps`` (1000 in the example pipeline) at batch 40, validates ``eval_steps`` (150).

The exported SavedModel's signatures:

- ``serving_default``: serialized raw ``tf.Example`` (input ``examples``; parsed with the raw
  feature spec minus the label) -> ``{"outputs": probability of a big tip, shape [batch]}``.
  The Evaluator's ``prediction_key`` is ``"outputs"``.
- ``transform_features``: serialized raw ``tf.Example`` -> all transformed features (incl.
  ``tips_xf``), so the Evaluator can take ``label_key="tips_xf"`` from raw eval data.

and the function ``evaluate_raw_features`` (raw SparseTensors -> both), which the Evaluator
uses; all three come from ``sluice.components.serving.export_serving_model``.
"""

import tensorflow as tf

from sluice import tft
from sluice.components.serving import export_serving_model
from sluice.pipelines.taxi import preprocessing as features

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


def build_keras_model(tf_transform_output: tft.TransformOutput, hidden_units=HIDDEN_UNITS,
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

    # The output unit is linear over [deep outputs, one-hot wide features], as in TFX's model.
    # Its wide half is computed as a lookup of one weight per feature (each feature's ids
    # offset into one table) instead of a product with a [batch, 6,265] one-hot tensor: the
    # same function and the same initial weights (Glorot over the full fan-in), without the
    # ~53 KB per predicted row that tensor cost.
    wide_ids, offset = [], 0
    for key, width in _wide_widths().items():
        if key in HASHED_CATEGORICAL_BUCKETS:
            ids = tf.keras.layers.Hashing(num_bins=width, name=f"{key}_hash")(inputs[_name(key)])
        else:
            ids = inputs[_name(key)]
        # Out-of-range ids land in the feature's last slot rather than failing.
        wide_ids.append(tf.keras.layers.Lambda(
            lambda x, top=width - 1, start=offset: tf.reshape(tf.clip_by_value(x, 0, top) + start, [-1, 1]),
            name=f"{key}_slot")(ids))
        offset += width
    limit = (6.0 / (hidden_units[-1] + offset + 1)) ** 0.5
    initializer = tf.keras.initializers.RandomUniform(-limit, limit)
    wide_weights = tf.keras.layers.Embedding(offset, 1, embeddings_initializer=initializer, name="wide_weights")(
        tf.keras.layers.Concatenate()(wide_ids))
    wide = tf.keras.layers.Lambda(lambda w: tf.reduce_sum(w, axis=1), name="wide_sum")(wide_weights)
    logit = tf.keras.layers.Add()([tf.keras.layers.Dense(1, kernel_initializer=initializer)(deep), wide])
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


def _wide_widths() -> dict[str, int]:
    """Each wide feature's number of ids (its one-hot width)."""
    widths = {key: features.VOCAB_SIZE + features.OOV_SIZE for key in features.VOCAB_FEATURE_KEYS}
    widths.update({key: features.FEATURE_BUCKET_COUNT + 1 for key in features.BUCKET_FEATURE_KEYS})
    widths.update(CATEGORICAL_WIDTH)
    widths.update(HASHED_CATEGORICAL_BUCKETS)
    return widths


def run_fn(fn_args):
    """Trains on the transformed examples and exports the serving model."""
    tf_transform_output = tft.TransformOutput(fn_args.transform_output)
    batch_size = (fn_args.custom_config or {}).get("batch_size", BATCH_SIZE)
    train = fn_args.dataset(fn_args.train_files, batch_size, label_key=LABEL_KEY)
    evaluation = fn_args.dataset(fn_args.eval_files, batch_size, label_key=LABEL_KEY)
    with fn_args.strategy.scope():
        model = build_keras_model(tf_transform_output,
                                  hidden_units=(fn_args.hyperparameters or {}).get("hidden_units", HIDDEN_UNITS),
                                  learning_rate=(fn_args.hyperparameters or {}).get("learning_rate", LEARNING_RATE))
        fn_args.warm_start(model)  # from fn_args.base_model, when the Trainer has one
    # TFX trains train_steps and validates eval_steps once; more epochs would repeat the validation.
    epochs = (fn_args.custom_config or {}).get("epochs", 1)
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
