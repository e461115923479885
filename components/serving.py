"""The serving-model contract between the Trainer and what calls its model (Evaluator, BulkInferrer).

A model file's ``run_fn`` exports its model with :func:`export_serving_model`; the
Evaluator loads any SavedModel with :func:`load_serving_model` and calls it either
through the raw-feature function such an export carries (:func:`raw_function`, fed
Arrow columns as SparseTensors) or, for any other SavedModel, through its
``serving_default`` signature on serialized ``tf.Example``s (:func:`serialize_examples`).

Nothing here imports TensorFlow until called.
"""

from __future__ import annotations

import contextlib
import os

from sluice.components.sdk import ComponentError

__all__ = [
    "RAW_BATCH_ROWS",
    "RAW_FUNCTION",
    "SERIALIZED_BATCH_ROWS",
    "SERVING_SIGNATURE",
    "TRANSFORM_SIGNATURE",
    "batch_rows",
    "export_serving_model",
    "load_serving_model",
    "predict_batch",
    "raw_feature_types",
    "raw_function",
    "serialize_examples",
]

# Serialized tf.Example (input "examples") -> the model's outputs.
SERVING_SIGNATURE = "serving_default"
# Serialized tf.Example -> every transformed feature (a transformed label, for the Evaluator).
TRANSFORM_SIGNATURE = "transform_features"
# A function of the SavedModel (not a signature: it takes SparseTensors): raw features ->
# {"outputs": ..., "transformed": ...}.
RAW_FUNCTION = "evaluate_raw_features"

# Rows per call of a serving model. A raw-feature function binds every input tensor in Python,
# so bigger batches pay off (for a little more peak memory); serialized tf.Examples are built per batch.
RAW_BATCH_ROWS = 32768
SERIALIZED_BATCH_ROWS = 4096


def batch_rows(serialized: bool) -> int:
    """Rows per call: ``serialized`` when some call goes through serialized tf.Examples
    (``serving_default``, ``transform_features``), else every call is a raw-feature function's."""
    return SERIALIZED_BATCH_ROWS if serialized else RAW_BATCH_ROWS


def export_serving_model(model, tf_transform_output, export_dir: str, raw_label_key: str | None,
                         prediction_key: str = "outputs") -> None:
    """Saves a Keras ``model`` over transformed features behind signatures on raw tf.Examples.

    ``serving_default``: serialized ``tf.Example`` (input ``examples``), parsed with the raw
    feature spec minus ``raw_label_key``, transformed by ``tf_transform_output`` (a
    ``TransformOutput``) -> ``{prediction_key: model(...)}``.
    ``transform_features``: serialized ``tf.Example`` -> every transformed feature (the
    Evaluator computes a transformed label with it).
    ``evaluate_raw_features`` (a function of the SavedModel, not a signature: it takes
    SparseTensors): the raw features as ``arrow_to_raw_tensors`` builds them from Arrow ->
    ``{"outputs": {prediction_key: ...}, "transformed": {...}}``. The same transform and model
    as ``serving_default``, without the tf.Example round trip: the Evaluator uses it.

    >>> export_serving_model(model, TransformOutput(fn_args.transform_output),   # doctest: +SKIP
    ...                      fn_args.serving_model_dir, raw_label_key="tips")
    """
    import tensorflow as tf

    from sluice.components.tft import raw_input_signature

    # Training and validation graphs are not exported: dropping them first lowers the
    # Trainer's memory peak. Keras rebuilds them if fit again.
    model.train_function = model.test_function = model.predict_function = None
    transform_layer = tf_transform_output.transform_features_layer()
    model_inputs = list(model.input.keys()) if isinstance(model.input, dict) else list(model.input_names)
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {name: spec for name, spec in raw_spec.items() if name != raw_label_key}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(examples):
        transformed = transform_layer(tf.io.parse_example(examples, serving_spec))
        return {prediction_key: model({name: transformed[name] for name in model_inputs})}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return transform_layer(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[raw_input_signature(tf_transform_output.raw_feature_types)])
    def evaluate_raw_features(raw_features):
        transformed = transform_layer(raw_features)
        return {"outputs": {prediction_key: model({name: transformed[name] for name in model_inputs})},
                "transformed": transformed}

    export = tf.Module()
    export.model = model
    export.transform_layer = transform_layer
    export.serve_tf_examples = serve_tf_examples
    export.transform_features = transform_features
    export.evaluate_raw_features = evaluate_raw_features
    tf.saved_model.save(export, export_dir, signatures={SERVING_SIGNATURE: serve_tf_examples,
                                                        TRANSFORM_SIGNATURE: transform_features})


# --- loading and calling a serving model ----------------------------------------


def load_serving_model(serving_dir: str, role: str, owner: str):
    """The loaded SavedModel at ``serving_dir``; an error unless it has a ``serving_default``.
    On an object store, loaded from a local copy (TensorFlow cannot read every store)."""
    import tensorflow as tf

    from sluice.components.io.files import exists, local_copy

    if not exists(os.path.join(serving_dir, "saved_model.pb")):
        raise ComponentError(f"{owner}: {role} has no SavedModel at {serving_dir}")
    loaded = tf.saved_model.load(local_copy(serving_dir))
    if SERVING_SIGNATURE not in loaded.signatures:
        raise ComponentError(f"{owner}: {role} at {serving_dir} has no '{SERVING_SIGNATURE}' signature")
    return loaded


def raw_function(loaded):
    """A model's ``evaluate_raw_features`` (see :func:`export_serving_model`), or None.

    None also when a function of that name takes something else than raw SparseTensors:
    the model is then called through its serving signatures.
    """
    found = _raw_call(loaded)
    return found[0] if found is not None else None


_RAW_CALL = "_sluice_raw_call"  # where _raw_call keeps what it found, on the loaded model itself
_UNSET = object()


def _raw_call(loaded):
    """``(raw_function(loaded), its raw_feature_types)`` or None; looked up once per loaded model."""
    found = getattr(loaded, "__dict__", {}).get(_RAW_CALL, _UNSET)
    if found is _UNSET:
        found = _find_raw_call(loaded)
        with contextlib.suppress(AttributeError, TypeError):  # an object that takes no attribute: not kept
            # Past the Trackable's own __setattr__: kept as a plain attribute, never tracked as part of the model.
            object.__setattr__(loaded, _RAW_CALL, found)
    return found


def _find_raw_call(loaded):
    function = getattr(loaded, RAW_FUNCTION, None)
    if function is None or not getattr(function, "concrete_functions", None):
        return None
    try:
        return function, raw_feature_types(function)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def raw_feature_types(function) -> dict[str, str]:
    """``{name: "int64"|"float32"|"string"}`` from an ``evaluate_raw_features``' input signature."""
    import tensorflow as tf

    names = {tf.int64: "int64", tf.float32: "float32", tf.string: "string"}
    (specs,), _ = function.concrete_functions[0].structured_input_signature
    if not all(isinstance(spec, tf.SparseTensorSpec) for spec in specs.values()):
        raise TypeError("evaluate_raw_features takes other than raw SparseTensors")
    return {name: names[spec.dtype] for name, spec in sorted(specs.items())}


def _as_list_array(column):
    """A nullable scalar column as a list column (null -> empty list) in a type tf.Example holds."""
    import numpy as np
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        column = column.cast(pa.float32())
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        column = column.cast(pa.int64())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = column.cast(pa.large_binary())
    elif not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return None  # nested or other types are not raw scalar features
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), column.drop_null())


def serialize_examples(table) -> list[bytes]:
    """Arrow rows -> serialized tf.Example (nulls are absent features), column-wise and in C++."""
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    arrays, names = [], []
    for name in table.column_names:
        array = _as_list_array(table.column(name).combine_chunks())
        if array is not None:
            arrays.append(array)
            names.append(name)
    return RecordBatchToExamplesEncoder().encode(pa.RecordBatch.from_arrays(arrays, names))


def predict_batch(loaded, table) -> dict:
    """The serving outputs ``{name: numpy array}`` of ``loaded`` (``load_serving_model``) on a table's rows:
    through its raw-feature function when it has one, else ``serving_default`` on serialized tf.Examples.
    Columns the model does not read are ignored; raw features the table lacks are missing."""
    import tensorflow as tf

    from sluice.components.tft import arrow_to_raw_tensors

    raw = _raw_call(loaded)
    if raw is not None:
        function, types = raw
        outputs = function(arrow_to_raw_tensors(table, types))["outputs"]
    else:
        outputs = loaded.signatures[SERVING_SIGNATURE](examples=tf.constant(serialize_examples(table), tf.string))
    return {name: value.numpy() for name, value in outputs.items()}
