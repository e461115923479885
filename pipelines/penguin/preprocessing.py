"""Palmer penguins preprocessing (raw columns of ``palmerpenguins.load_penguins()``).

Numeric measurements are z-scored, missing ones then set to 0 (the mean); island and sex
get vocabularies (a missing sex is its own '' entry); the label is the species' index in
the ``species`` vocabulary.
"""

import tensorflow as tf

from sluice import tft

NUMERIC_FEATURE_KEYS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURE_KEYS = ["island", "sex"]
LABEL_KEY = "species"
LABEL_VOCABULARY = "species"


def transformed_name(key: str) -> str:
    return key + "_xf"


def preprocessing_fn(inputs):
    outputs = {}
    for key in NUMERIC_FEATURE_KEYS:
        # z-score over the present values; missing ones become 0, i.e. the mean.
        scaled = tft.scale_to_z_score(tf.cast(inputs[key], tf.float32))
        outputs[transformed_name(key)] = tft.fill_missing(scaled, 0.0)
    for key in CATEGORICAL_FEATURE_KEYS:
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            tft.fill_missing(inputs[key], ""), num_oov_buckets=1, vocab_filename=key
        )
    outputs[transformed_name(LABEL_KEY)] = tft.compute_and_apply_vocabulary(
        tft.fill_missing(inputs[LABEL_KEY], ""), vocab_filename=LABEL_VOCABULARY
    )
    return outputs
