"""The transform graph on disk: traced with the analyzed values as constants, saved, loaded.

``<uri>/transform_fn/`` is a SavedModel (``transform_fn`` takes the raw SparseTensor dict;
signature ``serving_default`` takes serialized tf.Examples) with the vocabulary files under
``transform_fn/assets/``; ``<uri>/analysis.json`` describes the analyzers, features and
vocabularies; ``<uri>/transformed_metadata/schema.pbtxt`` is the post-transform schema.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

from sluice.components.tft.tensors import as_raw_sparse, dtype_name, import_tf, raw_input_signature, tf_dtype
from sluice.components.tft.tracing import TraceContext, call_user_fn, normalize_outputs, tracing

TRANSFORM_FN_DIR = "transform_fn"
TRANSFORMED_METADATA_DIR = "transformed_metadata"
ANALYSIS_FILE = "analysis.json"
SCHEMA_FILE = "schema.pbtxt"


def save_transform_graph(preprocessing_fn: Callable, raw_feature_types: dict[str, str],
                         values: dict[str, Any], output_dir: str, source: str = "preprocessing_fn") -> dict[str, Any]:
    """Traces ``preprocessing_fn`` with the analyzed ``values`` and saves the transform graph.

    Writes ``<output_dir>/transform_fn/`` (SavedModel: ``transform_fn`` takes the raw
    SparseTensor dict; signature ``serving_default`` takes serialized tf.Examples),
    the vocabulary files under ``transform_fn/assets/``, ``analysis.json`` and
    ``transformed_metadata/schema.pbtxt``. Returns the analysis description.
    """
    tf = import_tf()
    context = TraceContext("transform", dict(values))
    annotations: dict[str, dict[str, Any]] = {}

    @tf.function(input_signature=[raw_input_signature(raw_feature_types)], autograph=False)
    def transform_fn(inputs):
        with tracing(context):
            outputs = call_user_fn(preprocessing_fn, inputs, source)
            normalized = normalize_outputs(outputs, source)
        for name, tensor in outputs.items():
            found = context.annotations.get(tensor.ref()) if hasattr(tensor, "ref") else None
            if found:
                annotations[name] = found
        return normalized

    concrete = transform_fn.get_concrete_function()
    feature_types = {name: dtype_name(spec.dtype) for name, spec in sorted(concrete.structured_outputs.items())}
    raw_spec = {name: tf.io.VarLenFeature(tf_dtype(dtype)) for name, dtype in raw_feature_types.items()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def transform_examples(serialized):
        parsed = tf.io.parse_example(serialized, raw_spec)
        return concrete({name: as_raw_sparse(value) for name, value in parsed.items()})

    module = tf.Module()
    module.tables = list(context.tables.values())
    module.transform_fn = transform_fn
    graph_dir = os.path.join(output_dir, TRANSFORM_FN_DIR)
    tf.saved_model.save(module, graph_dir, signatures={"serving_default": transform_examples.get_concrete_function()})

    vocabularies = _write_vocabularies(context, values, annotations, graph_dir)
    analysis = {
        "format_version": 1,
        "raw_features": dict(raw_feature_types),
        "transformed_features": feature_types,
        "annotations": annotations,
        "vocabularies": vocabularies,
        "analyzers": [
            {"key": spec.key, "kind": spec.kind, "config": spec.config, "value": _jsonable(values.get(spec.key))}
            for spec in context.specs
        ],
    }
    with open(os.path.join(output_dir, ANALYSIS_FILE), "w") as fh:
        json.dump(analysis, fh, indent=1)
    schema_dir = os.path.join(output_dir, TRANSFORMED_METADATA_DIR)
    os.makedirs(schema_dir, exist_ok=True)
    with open(os.path.join(schema_dir, SCHEMA_FILE), "w") as fh:
        fh.write(transformed_schema_text(feature_types, annotations))
    return analysis


def _write_vocabularies(context: TraceContext, values: dict[str, Any], annotations: dict, graph_dir: str) -> dict:
    assets = os.path.join(graph_dir, "assets")
    os.makedirs(assets, exist_ok=True)
    described = {}
    for key, filename in context.vocabulary_names.items():
        tokens = values[key]["tokens"]
        with open(os.path.join(assets, filename), "wb") as fh:
            for token in tokens:
                fh.write((token if isinstance(token, bytes) else str(token).encode()) + b"\n")
        described[filename] = {
            "file": f"{TRANSFORM_FN_DIR}/assets/{filename}",
            "size": len(tokens),
            "analyzer": key,
            "used_by": sorted(n for n, a in annotations.items() if a.get("vocabulary") == filename),
        }
    return described


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def transformed_schema_text(feature_types: dict[str, str], annotations: dict[str, dict]) -> str:
    """The post-transform tensorflow_metadata Schema (text): one dense scalar per feature."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    kinds = {"int64": schema_pb2.INT, "float32": schema_pb2.FLOAT, "string": schema_pb2.BYTES}
    for name, dtype in feature_types.items():
        feature = schema.feature.add(name=name, type=kinds[dtype])
        feature.presence.min_fraction = 1.0
        feature.shape.SetInParent()
        found = annotations.get(name)
        if found and dtype == "int64":
            feature.int_domain.min = int(found["min"])
            feature.int_domain.max = int(found["max"])
            feature.int_domain.is_categorical = True
    return text_format.MessageToString(schema)


_loaded_graphs: dict[tuple, Any] = {}
_loaded_graphs_lock = threading.Lock()


def load_transform_fn(transform_fn_dir: str) -> Any:
    """The saved ``transform_fn``, loaded once per process (DoFns of all splits share it)."""
    stamp = os.stat(os.path.join(transform_fn_dir, "saved_model.pb")).st_mtime_ns
    key = (os.path.abspath(transform_fn_dir), stamp)
    with _loaded_graphs_lock:
        if key not in _loaded_graphs:
            if len(_loaded_graphs) >= 4:  # a long-lived worker should not hoard graphs
                _loaded_graphs.clear()
            _loaded_graphs[key] = import_tf().saved_model.load(transform_fn_dir)
        return _loaded_graphs[key].transform_fn
