"""The transform graph on disk: traced with the analyzed values as constants, saved, loaded.

``<uri>/transform_fn/`` is a SavedModel (``transform_fn`` takes the raw features as
``packed.pack`` gives them, ``packed.pack_in_graph`` makes them from the raw tensor dict, dense
for fixed-length features and SparseTensor for variable-length ones; signature
``serving_default`` takes serialized tf.Examples) with the vocabulary files under
``transform_fn/assets/``; ``<uri>/analysis.json`` describes the analyzers, features (dtype
and shape, ``null`` for variable length) and vocabularies;
``<uri>/transformed_metadata/schema.pbtxt`` is the post-transform schema.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from sluice.components.tft.feature_spec import FeatureSpec, add_to_schema, as_feature_specs, describe
from sluice.components.tft.packed import pack_in_graph, packed_signature, placeholder_features, unpack
from sluice.components.tft.tensors import complete_raw_features, dtype_name, import_tf
from sluice.components.tft.tracing import TraceContext, call_user_fn, normalize_outputs, tracing

TRANSFORM_FN_DIR = "transform_fn"
TRANSFORMED_METADATA_DIR = "transformed_metadata"
RAW_METADATA_DIR = "metadata"
ANALYSIS_FILE = "analysis.json"
# 3: the SavedModel's transform_fn takes packed.pack's tensors; 2 took the raw tensor dict, and
# features are {"dtype", "shape"} (shape null: variable length); 1 had bare dtype names.
FORMAT_VERSION = 3
PACKED_INPUT_SINCE = 3
SCHEMA_FILE = "schema.pbtxt"


@dataclasses.dataclass
class TracedGraph:
    """``preprocessing_fn`` traced with its analyzed values: ``transform_fn`` is the concrete function
    of ``packed.pack``'s tensors (what a batch is given), usable in this process before and after it
    is saved."""

    raw_features: dict[str, FeatureSpec]
    transform_fn: Any
    context: TraceContext
    annotations: dict[str, dict[str, Any]]
    features: dict[str, FeatureSpec]
    resources: list[Any]


def save_transform_graph(preprocessing_fn: Callable, raw_features: dict[str, Any],
                         values: dict[str, Any], output_dir: str, source: str = "preprocessing_fn") -> dict[str, Any]:
    """Traces ``preprocessing_fn`` with the analyzed ``values`` and saves the transform graph.

    ``raw_features``: ``{name: FeatureSpec}``. Writes ``<output_dir>/transform_fn/``
    (SavedModel: ``transform_fn`` takes ``packed.pack``'s tensors; signature ``serving_default``
    takes serialized tf.Examples, parsed with the raw feature spec, a fixed-length feature
    that is absent, such as the label, as zeros),
    the vocabulary files under ``transform_fn/assets/``, ``analysis.json`` and
    ``transformed_metadata/schema.pbtxt``. Returns the analysis description.
    """
    traced = trace_transform_graph(preprocessing_fn, raw_features, values, source)
    return write_transform_graph(traced, values, output_dir)


def trace_transform_graph(preprocessing_fn: Callable, raw_features: dict[str, Any],
                          values: dict[str, Any], source: str = "preprocessing_fn") -> TracedGraph:
    """``preprocessing_fn`` traced once with every analyzer's value as a constant."""
    tf = import_tf()
    raw_features = as_feature_specs(raw_features)
    context = TraceContext("transform", dict(values))
    annotations: dict[str, dict[str, Any]] = {}

    @tf.function(input_signature=[packed_signature(raw_features)], autograph=False)
    def transform_fn(packed):
        with tracing(context):
            outputs = call_user_fn(preprocessing_fn, unpack(packed, raw_features), source)
            normalized = normalize_outputs(outputs, source)
        for name, tensor in outputs.items():
            target = tensor.values if isinstance(tensor, (tf.SparseTensor, tf.RaggedTensor)) else tensor
            found = context.annotations.get(target.ref()) if hasattr(target, "ref") else None
            if found:
                annotations[name] = found
        return normalized

    # Tables the user's own code creates (e.g. a tf.lookup.StaticHashTable) are collected so the
    # SavedModel tracks them, as tf.Transform does (saved_transform_io_v2).
    from tensorflow.python.trackable import resource as tf_resource

    tracker = tf_resource.ResourceTracker()
    with tf_resource.resource_tracker_scope(tracker):
        concrete = transform_fn.get_concrete_function()
    features = {name: output_spec(tensor) for name, tensor in sorted(concrete.structured_outputs.items())}
    return TracedGraph(raw_features, concrete, context, annotations, features, list(tracker.resources))


def write_transform_graph(traced: TracedGraph, values: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """Saves a traced graph as ``save_transform_graph`` describes; returns the analysis description."""
    tf = import_tf()
    raw_features, concrete, context = traced.raw_features, traced.transform_fn, traced.context
    parse_spec = {name: spec.parse_spec(with_default=True) for name, spec in raw_features.items()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def transform_examples(serialized):
        parsed = tf.io.parse_example(serialized, parse_spec)
        return signature_outputs(concrete(pack_in_graph(complete_raw_features(parsed, raw_features), raw_features)))

    module = tf.Module()
    module.tables = list(context.tables.values())
    module.resources = list(traced.resources)
    # Their initializers hold the key/value tensors the restored graph captures.
    module.initializers = [r._initializer for r in traced.resources if hasattr(r, "_initializer")]  # noqa: SLF001
    module.transform_fn = concrete  # the traced function itself: tracing again would make new tables
    graph_dir = os.path.join(output_dir, TRANSFORM_FN_DIR)
    # TF1-style save and restore ops (the saver) only restore state: without any, they are cost only.
    options = tf.saved_model.SaveOptions(experimental_skip_saver=not _has_state(module, concrete))
    tf.saved_model.save(module, graph_dir, signatures={"serving_default": transform_examples.get_concrete_function()},
                        options=options)

    annotations, features = traced.annotations, traced.features
    vocabularies = _write_vocabularies(context, values, annotations, graph_dir)
    analysis = {
        "format_version": FORMAT_VERSION,
        "raw_features": describe(raw_features),
        "transformed_features": describe(features),
        "depends_on": raw_dependencies(concrete, raw_features),
        "annotations": annotations,
        "vocabularies": vocabularies,
        # tft.annotate_asset: {asset key: vocabulary file name}
        "asset_annotations": dict(context.asset_annotations),
        "analyzers": [
            {"key": spec.key, "kind": spec.kind, "config": spec.config, "value": _jsonable(values.get(spec.key))}
            for spec in context.specs
        ],
    }
    with open(os.path.join(output_dir, ANALYSIS_FILE), "w") as fh:
        json.dump(analysis, fh, indent=1)
    for folder, text in ((TRANSFORMED_METADATA_DIR, transformed_schema_text(features, annotations)),
                         (RAW_METADATA_DIR, transformed_schema_text(raw_features, {}))):
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
        with open(os.path.join(output_dir, folder, SCHEMA_FILE), "w") as fh:
            fh.write(text)
    return analysis


def _has_state(module: Any, concrete: Any) -> bool:
    """Whether a SavedModel of ``module`` holds state a checkpoint restores: variables, or a resource
    that saves tensors (a ``MutableHashTable``; not the static tables vocabularies use, which their
    initializers fill on load). Without any, TensorFlow's loaders (Python, TF1 and C++) restore
    nothing and need no saver."""
    from tensorflow.python.trackable.base import Trackable

    if concrete.variables or module.variables:
        return True
    resources = [*module.tables, *module.resources]
    return any(type(r)._serialize_to_tensors is not Trackable._serialize_to_tensors for r in resources)


def raw_dependencies(concrete: Any, raw_features: dict[str, FeatureSpec]) -> dict[str, list[str]]:
    """``{output: [raw features it is computed from]}`` (walks the graph of ``concrete``, a function
    of ``packed.pack``'s tensors, back to its inputs); every raw feature when its inputs cannot be
    matched to them."""
    tf = import_tf()
    placeholder_of = placeholder_features(concrete)
    if placeholder_of is None:
        return {name: sorted(raw_features) for name in sorted(concrete.structured_outputs)}
    found_for: dict[str, set[str]] = {}

    def walk(op: Any) -> set[str]:
        stack, seen, found = [op], set(), set()
        while stack:
            current = stack.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            if current.name in placeholder_of:
                found.add(placeholder_of[current.name])
            # Data edges only: tf.function adds control edges from every output to every stateful op.
            stack.extend(t.op for t in current.inputs)
        return found

    for name, tensor in concrete.structured_outputs.items():
        parts = tf.nest.flatten(tensor, expand_composites=True)
        found_for[name] = set().union(*(walk(part.op) for part in parts))
    return {name: sorted(found) for name, found in sorted(found_for.items())}


def output_spec(tensor: Any) -> FeatureSpec:
    """A transformed feature's spec from a traced output: dense -> its shape, sparse/ragged -> var-len."""
    tf = import_tf()
    if isinstance(tensor, tf.RaggedTensor):
        return FeatureSpec(dtype_name(tensor.dtype), None, ragged=True)
    if isinstance(tensor, tf.SparseTensor):
        return FeatureSpec(dtype_name(tensor.dtype), None)
    return FeatureSpec(dtype_name(tensor.dtype), tuple(int(d) for d in tensor.shape[1:]))


def signature_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs a signature can return: a SparseTensor ``x`` as ``x/indices``, ``x/values``, ``x/dense_shape``;
    a RaggedTensor as ``x/values``, ``x/row_splits``."""
    tf = import_tf()
    flat = {}
    for name, tensor in outputs.items():
        if isinstance(tensor, tf.RaggedTensor):
            flat.update({f"{name}/values": tensor.values, f"{name}/row_splits": tensor.row_splits})
        elif isinstance(tensor, tf.SparseTensor):
            flat.update({f"{name}/indices": tensor.indices, f"{name}/values": tensor.values,
                         f"{name}/dense_shape": tensor.dense_shape})
        else:
            flat[name] = tensor
    return flat


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


def transformed_schema_text(features: dict[str, Any], annotations: dict[str, dict]) -> str:
    """The post-transform tensorflow_metadata Schema (text), as tf.Transform writes it.

    A fixed-length feature has ``shape`` (no dims for a scalar) and ``presence.min_fraction: 1``;
    a variable-length one neither. Categorical int features get an ``int_domain``.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    for name, spec in as_feature_specs(features).items():
        feature = add_to_schema(schema, name, spec)
        found = annotations.get(name)
        if found and spec.dtype == "int64":
            feature.int_domain.min = int(found["min"])
            feature.int_domain.max = int(found["max"])
            feature.int_domain.is_categorical = True
    return text_format.MessageToString(schema)


_loaded_graphs: dict[tuple, Any] = {}
_loaded_graphs_lock = threading.Lock()


def takes_packed_input(analysis: dict[str, Any]) -> bool:
    """Whether the saved ``transform_fn`` described by ``analysis`` takes ``packed.pack``'s tensors
    (else, from an older Sluice, the raw tensor dict)."""
    return analysis.get("format_version", 1) >= PACKED_INPUT_SINCE


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
