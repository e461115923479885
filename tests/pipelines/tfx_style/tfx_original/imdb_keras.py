"""Review sentiment from token lists, native Keras, as a TFX module file.

Transform splits each ``review`` into words, maps them through a top-k vocabulary (0 kept
for padding and unknown words) and pads or cuts them to ``MAX_LEN`` ids: a fixed-length
[batch, MAX_LEN] output. The Trainer averages word embeddings into a sentiment probability.
"""

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

REVIEW_KEY = 'review'
LABEL_KEY = 'sentiment'
TOKENS_KEY = 'review_ids'
VOCAB_TOP_K = 500
MAX_LEN = 24
EMBEDDING_DIM = 8
BATCH_SIZE = 32


def _token_ids(review):
    """Words -> vocabulary index + 1 (0: padding or a word outside the top-k), padded to MAX_LEN."""
    words = tf.strings.split(tf.reshape(review, [-1])).to_sparse()
    ids = tft.compute_and_apply_vocabulary(words, top_k=VOCAB_TOP_K, default_value=-1, vocab_filename='words')
    dense = tf.sparse.to_dense(ids, default_value=-1)
    padded = tf.pad(dense, [[0, 0], [0, MAX_LEN]], constant_values=-1)
    return tf.slice(padded, [0, 0], [-1, MAX_LEN]) + 1


def preprocessing_fn(inputs):
    return {TOKENS_KEY: _token_ids(inputs[REVIEW_KEY]), LABEL_KEY: inputs[LABEL_KEY]}


def _input_fn(files, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL_KEY),
        tf_transform_output.transformed_metadata.schema).repeat()


def _build_keras_model():
    ids = tf.keras.Input(shape=(MAX_LEN,), dtype=tf.int64, name=TOKENS_KEY)
    x = tf.keras.layers.Embedding(VOCAB_TOP_K + 1, EMBEDDING_DIM, mask_zero=True)(ids)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    x = tf.keras.layers.Dense(8, activation='relu')(x)
    probability = tf.keras.layers.Dense(1, activation='sigmoid')(x)
    model = tf.keras.Model(inputs={TOKENS_KEY: ids}, outputs=probability)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss='binary_crossentropy',
                  metrics=[tf.keras.metrics.AUC(name='auc')])
    return model


def _serve_tf_examples_fn(model, tf_transform_output):
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL_KEY)
        transformed = model.tft_layer(tf.io.parse_example(serialized, spec))
        transformed.pop(LABEL_KEY, None)
        return {'outputs': model(transformed)}

    return serve


def run_fn(fn_args: tfx.components.FnArgs):
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    evaluation = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    model = _build_keras_model()
    model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
              validation_steps=fn_args.eval_steps,
              callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)], verbose=0)
    signatures = {'serving_default': _serve_tf_examples_fn(model, tf_transform_output).get_concrete_function(
        tf.TensorSpec(shape=[None], dtype=tf.string, name='examples'))}
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures)
