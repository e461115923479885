"""Chicago taxi "big tipper" classifier, native Keras, written as a TFX module file.

Transform calls ``preprocessing_fn``; the Trainer calls ``run_fn``. Our own code in the
style of TFX's taxi example: z-scores, vocabularies with OOV buckets, quantile buckets and
integer categoricals into a wide-and-deep model, exported behind a tf.Example signature.
"""

import tensorflow as tf
from tfx_bsl.public import tfxio

from sluice import tft, tfx

NUMERIC_KEYS = ['trip_miles', 'fare', 'trip_seconds']
VOCAB_KEYS = {'payment_type': 20, 'company': 200}  # feature -> top_k
OOV_BUCKETS = 5
QUANTILE_KEYS = ['pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude']
NUM_QUANTILES = 8
CATEGORY_KEYS = {'trip_start_hour': 24, 'trip_start_day': 8, 'trip_start_month': 13,
                 'pickup_community_area': 80, 'dropoff_community_area': 80}  # feature -> hash bins
LABEL = 'tips'
BATCH_SIZE = 32


def xf(name):
    return name + '_xf'


def _dense(x):
    """A raw feature as a rank-1 tensor: missing values of an optional feature become '' or 0."""
    if isinstance(x, tf.sparse.SparseTensor):
        default = '' if x.dtype == tf.string else tf.zeros([], x.dtype)
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    """Raw taxi trips -> model features, each a rank-1 tensor."""
    features = {}
    for name in NUMERIC_KEYS:
        features[xf(name)] = tft.scale_to_z_score(_dense(inputs[name]))
    for name, top_k in VOCAB_KEYS.items():
        features[xf(name)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[name]), top_k=top_k, num_oov_buckets=OOV_BUCKETS, vocab_filename=name)
    for name in QUANTILE_KEYS:
        features[xf(name)] = tft.bucketize(_dense(inputs[name]), NUM_QUANTILES)
    for name in CATEGORY_KEYS:
        features[xf(name)] = _dense(inputs[name])
    fare = _dense(inputs['fare'])
    tip = _dense(inputs[LABEL])
    features[xf(LABEL)] = tf.cast(tip > 0.2 * fare, tf.int64)
    return features


def _input_fn(files, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=xf(LABEL)),
        tf_transform_output.transformed_metadata.schema).repeat()


def _column(x):
    return tf.keras.layers.Reshape((1,))(x)


def _wide_and_deep(tf_transform_output, hidden_units):
    inputs = {xf(name): tf.keras.Input(shape=(), name=xf(name), dtype=tf.float32) for name in NUMERIC_KEYS}
    deep = tf.keras.layers.Concatenate()([_column(inputs[xf(name)]) for name in NUMERIC_KEYS])
    for units in hidden_units:
        deep = tf.keras.layers.Dense(units, activation='relu')(deep)
    wide = []
    for name in VOCAB_KEYS:
        inputs[xf(name)] = tf.keras.Input(shape=(), name=xf(name), dtype=tf.int64)
        size = tf_transform_output.vocabulary_size_by_name(name) + OOV_BUCKETS
        wide.append(tf.keras.layers.CategoryEncoding(num_tokens=size, output_mode='one_hot')(_column(inputs[xf(name)])))
    for name in QUANTILE_KEYS:
        inputs[xf(name)] = tf.keras.Input(shape=(), name=xf(name), dtype=tf.int64)
        wide.append(tf.keras.layers.CategoryEncoding(num_tokens=NUM_QUANTILES + 1,
                                                     output_mode='one_hot')(_column(inputs[xf(name)])))
    for name, bins in CATEGORY_KEYS.items():
        inputs[xf(name)] = tf.keras.Input(shape=(), name=xf(name), dtype=tf.int64)
        wide.append(tf.keras.layers.Hashing(num_bins=bins, output_mode='one_hot')(_column(inputs[xf(name)])))
    both = tf.keras.layers.Concatenate()([deep] + wide)
    output = tf.keras.layers.Dense(1, activation='sigmoid')(both)
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.02), loss='binary_crossentropy',
                  metrics=[tf.keras.metrics.BinaryAccuracy()])
    return model


def _signatures(model, tf_transform_output):
    """serving_default on raw tf.Examples without the label; transform_features with it."""
    model.transform_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        transformed = model.transform_layer(tf.io.parse_example(serialized, spec))
        transformed.pop(xf(LABEL), None)
        return {'outputs': model(transformed)}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
    def transform_features(serialized):
        raw = tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec())
        return model.transform_layer(raw)

    return {'serving_default': serve, 'transform_features': transform_features}


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains the wide-and-deep model and saves it with its serving signatures."""
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    evaluation = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE)
    model = _wide_and_deep(tf_transform_output, hidden_units=[32, 16])
    tensorboard = tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch')
    model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
              validation_steps=fn_args.eval_steps, callbacks=[tensorboard], verbose=0)
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=_signatures(model, tf_transform_output))
