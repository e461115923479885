"""Digit-like images as fixed-length float lists (784 values), native Keras, as a TFX module file.

The raw ``image_floats`` column is a list of 784 floats per example; ``image_class`` its
digit. Transform rescales every pixel with one dataset-wide min and max; the Trainer fits a
small dense network over the [batch, 784] output.
"""

import tensorflow as tf
from tfx_bsl.public import tfxio

from sluice import tft, tfx

IMAGE_KEY = 'image_floats'
LABEL_KEY = 'image_class'
IMAGE_SIZE = 784
NUM_CLASSES = 10
BATCH_SIZE = 32


def transformed_name(key):
    return key + '_xf'


def preprocessing_fn(inputs):
    """[batch, 784] pixels -> [0, 1] over the whole dataset; the class id passes through."""
    image = inputs[IMAGE_KEY]
    if isinstance(image, tf.sparse.SparseTensor):
        image = tft.sparse_tensor_to_dense_with_shape(image, [None, IMAGE_SIZE])
    return {
        transformed_name(IMAGE_KEY): tft.scale_to_0_1(image),
        transformed_name(LABEL_KEY): inputs[LABEL_KEY],
    }


def input_fn(files, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=transformed_name(LABEL_KEY)),
        tf_transform_output.transformed_metadata.schema).repeat()


def build_keras_model():
    image = tf.keras.Input(shape=(IMAGE_SIZE,), name=transformed_name(IMAGE_KEY))
    x = tf.keras.layers.Dense(32, activation='relu')(image)
    x = tf.keras.layers.Dropout(0.1)(x)
    probabilities = tf.keras.layers.Dense(NUM_CLASSES, activation='softmax')(x)
    model = tf.keras.Model(inputs={transformed_name(IMAGE_KEY): image}, outputs=probabilities)
    model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=2e-3),
                  loss='sparse_categorical_crossentropy', metrics=['sparse_categorical_accuracy'])
    return model


def _serving_fn(model, tf_transform_output):
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL_KEY)
        transformed = model.tft_layer(tf.io.parse_example(serialized, spec))
        return {'probabilities': model({transformed_name(IMAGE_KEY): transformed[transformed_name(IMAGE_KEY)]})}

    return serve


def run_fn(fn_args: tfx.components.FnArgs):
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    model = build_keras_model()
    model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
              validation_steps=fn_args.eval_steps,
              callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)], verbose=0)
    tf.saved_model.save(model, fn_args.serving_model_dir,
                        signatures={'serving_default': _serving_fn(model, tf_transform_output)})
