"""What the penguin module files share: feature names, preprocessing, input and serving functions.

Kept beside ``penguin_keras.py``, which imports it by its plain name, as TFX users keep
helpers beside their module file.
"""

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

NUMERIC_KEYS = ['bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g']
ISLAND_KEY = 'island'
ISLAND_OOV = 1
ISLAND_DEPTH = 3 + ISLAND_OOV  # three islands, one OOV bucket: a fixed one-hot width
LABEL_KEY = 'species'
NUM_CLASSES = 3
TRAIN_BATCH_SIZE = 16
EVAL_BATCH_SIZE = 16


def transformed_name(key):
    return key + '_xf'


def preprocessing_fn(inputs):
    """Dense [batch, 1] measurements -> z-scores; island -> one-hot [batch, 4]; species -> class id."""
    outputs = {}
    for key in NUMERIC_KEYS:
        outputs[transformed_name(key)] = tft.scale_to_z_score(tf.cast(inputs[key], tf.float32))
    island = tft.compute_and_apply_vocabulary(inputs[ISLAND_KEY], num_oov_buckets=ISLAND_OOV,
                                              vocab_filename=ISLAND_KEY)
    outputs[transformed_name(ISLAND_KEY)] = tf.one_hot(tf.reshape(island, [-1]), ISLAND_DEPTH)
    outputs[transformed_name(LABEL_KEY)] = tft.compute_and_apply_vocabulary(inputs[LABEL_KEY],
                                                                            vocab_filename=LABEL_KEY)
    return outputs


def input_fn(file_pattern, data_accessor, tf_transform_output, batch_size):
    """Batches of (transformed features, class id), repeated."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=transformed_name(LABEL_KEY)),
        tf_transform_output.transformed_metadata.schema).repeat()


def make_serving_signatures(model, tf_transform_output):
    """serving_default: serialized raw tf.Examples (no species) -> class probabilities."""
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function
    def serve_tf_examples_fn(serialized_tf_examples):
        feature_spec = tf_transform_output.raw_feature_spec()
        feature_spec.pop(LABEL_KEY)
        parsed = tf.io.parse_example(serialized_tf_examples, feature_spec)
        transformed = model.tft_layer(parsed)
        transformed.pop(transformed_name(LABEL_KEY), None)
        return {'probabilities': model(transformed)}

    return {
        'serving_default': serve_tf_examples_fn.get_concrete_function(
            tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')),
    }
