"""Preprocessing of the penguin body-mass pipeline (raw columns of ``penguins.csv``).

The three other measurements are z-scored (missing ones then 0, the mean); species, island
and sex get vocabularies. The label, ``body_mass_g``, stays in grams; a missing one is
filled with the mean (the Evaluator, reading the raw column, leaves those rows out).
"""

import tensorflow as tf

from sluice import tft

NUMERIC_FEATURE_KEYS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
CATEGORICAL_FEATURE_KEYS = ["species", "island", "sex"]
LABEL_KEY = "body_mass_g"


def transformed_name(key: str) -> str:
    return key + "_xf"


def preprocessing_fn(inputs):
    outputs = {}
    for key in NUMERIC_FEATURE_KEYS:
        scaled = tft.scale_to_z_score(tf.cast(inputs[key], tf.float32))
        outputs[transformed_name(key)] = tft.fill_missing(scaled, 0.0)
    for key in CATEGORICAL_FEATURE_KEYS:
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            tft.fill_missing(inputs[key], ""), num_oov_buckets=1, vocab_filename=key)
    mass = tf.cast(inputs[LABEL_KEY], tf.float32)
    outputs[transformed_name(LABEL_KEY)] = tft.fill_missing(mass, tft.mean(mass))
    return outputs
