"""Chicago taxi preprocessing, like for like with TFX's taxi example module (taxi_utils.py).

Used as Transform's module file (``module_file=".../pipelines/taxi/preprocessing.py"``) or by
dotted name (``preprocessing_fn="sluice.pipelines.taxi.preprocessing.preprocessing_fn"``).
"""

import tensorflow as tf

from sluice import tft

# Features with z-score normalization.
DENSE_FLOAT_FEATURE_KEYS = ["trip_miles", "fare", "trip_seconds"]
# Features with a vocabulary, their top-k size and number of out-of-vocabulary buckets.
VOCAB_FEATURE_KEYS = ["payment_type", "company"]
VOCAB_SIZE = 1000
OOV_SIZE = 10
# Features bucketized into quantile buckets.
BUCKET_FEATURE_KEYS = ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"]
FEATURE_BUCKET_COUNT = 10
# Integer categorical features, passed through with missing values filled.
CATEGORICAL_FEATURE_KEYS = [
    "trip_start_hour", "trip_start_day", "trip_start_month",
    "pickup_census_tract", "dropoff_census_tract",
    "pickup_community_area", "dropoff_community_area",
]
# Ranges of the integer categoricals (as TFX's taxi example: hour, day, month, tract, area).
CATEGORICAL_FEATURE_MAX_VALUES = [24, 31, 12, 2000, 2000, 80, 80]
LABEL_KEY = "tips"
FARE_KEY = "fare"


def transformed_name(key: str) -> str:
    return key + "_xf"


def _fill_in_missing(x):
    """A raw feature as a dense [batch] tensor: '' for missing strings, 0 otherwise.

    Optional features arrive as SparseTensor [batch, 1]; a feature the schema says is always
    present with shape [1] arrives dense [batch, 1] (as in tf.Transform) and is squeezed, so
    that every feature has the same rank whatever the schema says.
    """
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.reshape(x, [-1])
    default_value = "" if x.dtype == tf.string else 0
    return tf.squeeze(
        tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value),
        axis=1,
    )


def preprocessing_fn(inputs):
    """Raw taxi features -> transformed features (names suffixed ``_xf``) and the label."""
    outputs = {}
    for key in DENSE_FLOAT_FEATURE_KEYS:
        # If sparse make it dense, setting missing values to 0, and apply z-score.
        outputs[transformed_name(key)] = tft.scale_to_z_score(_fill_in_missing(inputs[key]))

    for key in VOCAB_FEATURE_KEYS:
        # Build a vocabulary for this feature.
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[key]), top_k=VOCAB_SIZE, num_oov_buckets=OOV_SIZE
        )

    for key in BUCKET_FEATURE_KEYS:
        outputs[transformed_name(key)] = tft.bucketize(_fill_in_missing(inputs[key]), FEATURE_BUCKET_COUNT)

    for key in CATEGORICAL_FEATURE_KEYS:
        outputs[transformed_name(key)] = _fill_in_missing(inputs[key])

    # Was this passenger a big tipper?
    taxi_fare = _fill_in_missing(inputs[FARE_KEY])
    tips = _fill_in_missing(inputs[LABEL_KEY])
    outputs[transformed_name(LABEL_KEY)] = tf.where(
        tf.math.is_nan(taxi_fare),
        tf.cast(tf.zeros_like(taxi_fare), tf.int64),
        # Test if the tip was > 20% of the fare.
        tf.cast(tf.greater(tips, tf.multiply(taxi_fare, tf.constant(0.2))), tf.int64),
    )
    return outputs
