"""Transform: full-pass feature preprocessing, as TFX's Transform (tensorflow-transform) does it.

A user module defines ``preprocessing_fn(inputs) -> outputs``: ``inputs`` maps each raw
feature to a ``tf.SparseTensor`` of dense_shape ``[batch, 1]`` (a missing value is no entry),
``outputs`` maps transformed feature names to dense ``tf.Tensor`` of shape ``[batch]``.
Inside it, the analyzers below need statistics over the whole dataset (mean, vocabulary,
quantiles); everything else is plain TensorFlow::

    import tensorflow as tf
    from sluice.components import transform as tft

    def preprocessing_fn(inputs):
        fare = tft.fill_missing(inputs["fare"], 0.0)
        return {
            "fare_xf": tft.scale_to_z_score(fare),
            "company_xf": tft.compute_and_apply_vocabulary(
                tft.fill_missing(inputs["company"], ""), top_k=1000, num_oov_buckets=10),
            "tips_xf": tf.cast(tft.fill_missing(inputs["tips"], 0.0) > 0.2 * fare, tf.int64),
        }

How it runs (as TFT): ``preprocessing_fn`` is traced once in *analysis mode*, where each
analyzer registers its input tensor and returns a placeholder. The analyzer inputs are then
computed from raw Arrow batches by one traced ``tf.function`` and reduced by mergeable
combiners in one Beam pass (``AnalyzeDataset``). An analyzer whose input depends on another
analyzer's result runs in a later phase of the same pass. Finally ``preprocessing_fn`` is
traced once more with the results baked in as constants and saved as a SavedModel
(``<uri>/transform_fn/``), which also materializes the transformed examples
(``TransformDataset``), so training and serving apply the very same graph.

Trainer module files and serving code use ``TransformOutput(transform_graph_uri)``.

The analyzers keep tensorflow-transform's names and main arguments. Differences: analyzers
always reduce over all dimensions (no ``elementwise``/``reduce_instance_dims``),
``quantiles`` returns a 1-D tensor, and ``preprocessing_fn`` is traced without AutoGraph
(use ``tf.where``/``tf.cond`` rather than a Python ``if`` on tensors).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import json
import os
import pickle
import threading
import types
from typing import Any, Callable

from sluice.components.artifacts import Examples, Schema, TransformGraph
from sluice.components.sdk import (
    ComponentError, ExecutionContext, Input, ModuleFile, Output, component, load_module_file, user_code_line,
)

TRANSFORM_FN_DIR = "transform_fn"
TRANSFORMED_METADATA_DIR = "transformed_metadata"
ANALYSIS_FILE = "analysis.json"
SCHEMA_FILE = "schema.pbtxt"
# The tensorflow dtypes of raw and transformed features, by name.
DTYPES = ("int64", "float32", "string")
MAX_PHASES = 10
_QUANTILES_MAX_ELEMENTS = 1 << 32
# Rows per tf.function call: big enough to amortize the call, small enough for memory.
MAX_BATCH_ROWS = 65536


class PreprocessingFnError(ValueError):
    """The user's preprocessing_fn is broken; the message names the culprit."""


# --- the tracing context: what analyzers see while preprocessing_fn is traced ----------


@dataclasses.dataclass(frozen=True)
class AnalyzerSpec:
    """One analyzer call: ``key`` is its position in the call order plus its kind."""

    key: str
    kind: str  # mean_and_var | min_max | vocabulary | quantiles
    config: dict[str, Any]


class _TraceContext:
    """State of one trace of preprocessing_fn.

    ``mode="analyze"``: analyzers without a known value register their input and return
    placeholders. ``mode="transform"``: every analyzer must have a value.
    """

    def __init__(self, mode: str, values: dict[str, Any]):
        self.mode = mode
        self.values = values
        self.specs: list[AnalyzerSpec] = []
        self.inputs: dict[str, Any] = {}  # analyzer key -> its flattened input tensor
        self.pending_ops: dict[str, str] = {}  # placeholder op name -> analyzer key
        self.vocabularies: dict[Any, str] = {}  # ref of a tft.vocabulary result -> analyzer key
        self.vocabulary_names: dict[str, str] = {}  # analyzer key -> vocabulary file name
        self.tables: dict[tuple, Any] = {}  # lookup tables created while tracing (kept alive here)
        # ref of a categorical result -> {"min", "max", ["vocabulary"]}, for the output schema
        self.annotations: dict[Any, dict[str, Any]] = {}

    def start_trace(self) -> None:
        """Forgets the previous trace's calls (a function may be traced again); keeps tables."""
        self.specs, self.inputs, self.pending_ops = [], {}, {}
        self.vocabularies, self.vocabulary_names, self.annotations = {}, {}, {}

    def next_key(self, kind: str) -> str:
        return f"{len(self.specs):03d}_{kind}"


_state = threading.local()


@contextlib.contextmanager
def _tracing(context: _TraceContext):
    previous = getattr(_state, "context", None)
    context.start_trace()
    _state.context = context
    try:
        yield context
    finally:
        _state.context = previous


def _context() -> _TraceContext:
    context = getattr(_state, "context", None)
    if context is None:
        raise RuntimeError(
            "tft analyzers only work inside a preprocessing_fn that Transform traces "
            "(use TransformOutput to apply a saved transform graph)"
        )
    return context


def _tf():
    import tensorflow as tf

    return tf


def _analyze(kind: str, x: Any, **config: Any) -> Any:
    """Registers an analyzer call; returns its value, or None while it is not yet known."""
    tf = _tf()
    context = _context()
    key = context.next_key(kind)
    spec = AnalyzerSpec(key, kind, config)
    context.specs.append(spec)
    if key in context.values:
        return context.values[key]
    if context.mode != "analyze":
        raise PreprocessingFnError(
            f"analyzer {key} has no computed value: preprocessing_fn must call the same "
            "analyzers in the same order every time it is traced"
        )
    values = x.values if isinstance(x, tf.SparseTensor) else tf.reshape(x, [-1])
    context.inputs[key] = values
    return None


def _pending(tensor: Any, key: str) -> Any:
    """A placeholder standing for analyzer ``key``'s result until it is computed.

    Analyzers whose input is computed from a placeholder run in a later phase.
    """
    placeholder = _tf().identity(tensor, name="sluice_pending_analyzer")
    _context().pending_ops[placeholder.op.name] = key
    return placeholder


def _map_values(x: Any, fn: Callable[[Any], Any]) -> Any:
    """Applies ``fn`` to a dense tensor, or to the values of a SparseTensor."""
    tf = _tf()
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, fn(x.values), x.dense_shape)
    return fn(tf.convert_to_tensor(x))


def _annotate(tensor: Any, **annotation: Any) -> Any:
    context = getattr(_state, "context", None)
    if context is not None:
        target = tensor.values if isinstance(tensor, _tf().SparseTensor) else tensor
        context.annotations[target.ref()] = annotation
    return tensor


def _float_dtype(dtype: Any) -> Any:
    tf = _tf()
    return dtype if dtype in (tf.float32, tf.float64) else tf.float32


# --- analyzers: full-pass statistics ---------------------------------------------------


def _mean_and_var(x: Any) -> tuple[Any, Any]:
    tf = _tf()
    value = _analyze("mean_and_var", x)
    if value is None:
        key = _context().specs[-1].key
        return _pending(tf.zeros([], tf.float32), key), _pending(tf.ones([], tf.float32), key)
    return tf.constant(value[0], tf.float32), tf.constant(value[1], tf.float32)


def mean(x: Any, name: str | None = None) -> Any:
    """The mean of all values of ``x`` (float32 scalar; missing and NaN values are ignored)."""
    return _mean_and_var(x)[0]


def var(x: Any, name: str | None = None) -> Any:
    """The population variance of all values of ``x`` (float32 scalar)."""
    return _mean_and_var(x)[1]


def _min_max(x: Any) -> tuple[Any, Any]:
    tf = _tf()
    dtype = x.dtype if x.dtype in (tf.float32, tf.float64) else tf.int64
    value = _analyze("min_max", x)
    if value is None:
        key = _context().specs[-1].key
        return _pending(tf.zeros([], dtype), key), _pending(tf.ones([], dtype), key)
    return tf.constant(value[0], dtype), tf.constant(value[1], dtype)


def min(x: Any, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The minimum of all values of ``x`` (its dtype; integers as int64; NaN ignored)."""
    return _min_max(x)[0]


def max(x: Any, name: str | None = None) -> Any:  # noqa: A001 - TFT's name
    """The maximum of all values of ``x`` (its dtype; integers as int64; NaN ignored)."""
    return _min_max(x)[1]


def scale_to_z_score(x: Any, elementwise: bool = False, name: str | None = None,
                     output_dtype: Any = None) -> Any:
    """``(x - mean) / std`` over the dataset; ``x - mean`` where the std is 0 (as TFT)."""
    tf = _tf()
    _reject_elementwise(elementwise)
    x_mean, x_var = _mean_and_var(x)

    def scale(values: Any) -> Any:
        dtype = output_dtype or _float_dtype(values.dtype)
        centered = tf.cast(values, dtype) - tf.cast(x_mean, dtype)
        x_std = tf.sqrt(tf.cast(x_var, dtype))
        return tf.where(x_std > 0, centered / tf.where(x_std > 0, x_std, 1), centered)

    return _map_values(x, scale)


def scale_by_min_max(x: Any, output_min: float = 0.0, output_max: float = 1.0,
                     elementwise: bool = False, name: str | None = None) -> Any:
    """Scales ``x`` linearly onto ``[output_min, output_max]`` using the dataset's min and max.

    Where min == max the result is the middle of the output range.
    """
    tf = _tf()
    _reject_elementwise(elementwise)
    x_min, x_max = _min_max(x)

    def scale(values: Any) -> Any:
        dtype = _float_dtype(values.dtype)
        low, high = tf.cast(x_min, dtype), tf.cast(x_max, dtype)
        span = tf.where(high > low, high - low, 1)
        unit = (tf.cast(values, dtype) - low) / span
        scaled = output_min + unit * (output_max - output_min)
        return tf.where(high > low, scaled, tf.fill(tf.shape(unit), tf.cast((output_min + output_max) / 2, dtype)))

    return _map_values(x, scale)


def scale_to_0_1(x: Any, elementwise: bool = False, name: str | None = None) -> Any:
    """``(x - min) / (max - min)`` over the dataset (0.5 where min == max)."""
    return scale_by_min_max(x, 0.0, 1.0, elementwise=elementwise, name=name)


def vocabulary(x: Any, top_k: int | None = None, frequency_threshold: int | None = None,
               vocab_filename: str | None = None, name: str | None = None) -> Any:
    """Computes the vocabulary of ``x`` (strings or integers); returns its file name.

    Ordered by frequency, most frequent first, ties by value descending (as TFT). Values
    seen fewer than ``frequency_threshold`` times are dropped, then the ``top_k`` most
    frequent are kept. The file is ``transform_fn/assets/<vocab_filename>``; pass the
    returned tensor to ``apply_vocabulary``.
    """
    tf = _tf()
    if x.dtype == tf.string:
        input_dtype = "string"
    elif x.dtype.is_integer:
        input_dtype = "int64"
    else:
        raise PreprocessingFnError(f"tft.vocabulary needs string or integer input, got {x.dtype.name}")
    context = _context()
    number = builtins.sum(1 for s in context.specs if s.kind == "vocabulary")
    filename = vocab_filename or f"vocabulary_{number}"
    if filename in context.vocabulary_names.values():
        raise PreprocessingFnError(f"two tft.vocabulary calls use the vocab_filename {filename!r}")
    if top_k is not None and top_k < 0:
        raise PreprocessingFnError(f"tft.vocabulary: top_k must be >= 0, got {top_k}")
    value = _analyze("vocabulary", tf.cast(x, tf.int64) if input_dtype == "int64" else x,
                     top_k=top_k, frequency_threshold=frequency_threshold,
                     vocab_filename=filename, input_dtype=input_dtype)
    key = context.specs[-1].key
    context.vocabulary_names[key] = filename
    result = tf.constant(filename) if value is not None else _pending(tf.constant(filename), key)
    context.vocabularies[result.ref()] = key
    return result


def apply_vocabulary(x: Any, deferred_vocab_filename_tensor: Any, default_value: int = -1,
                     num_oov_buckets: int = 0, lookup_fn: Any = None, file_format: str = "text",
                     name: str | None = None) -> Any:
    """Maps ``x`` to its index in a vocabulary computed by ``tft.vocabulary`` (int64).

    Out-of-vocabulary values map to ``default_value``, or with ``num_oov_buckets > 0`` to
    ``vocab_size + hash(x) % num_oov_buckets``.
    """
    tf = _tf()
    if lookup_fn is not None:
        raise PreprocessingFnError("tft.apply_vocabulary: lookup_fn is not supported")
    context = _context()
    key = context.vocabularies.get(getattr(deferred_vocab_filename_tensor, "ref", lambda: None)())
    if key is None:
        raise PreprocessingFnError(
            "tft.apply_vocabulary expects the tensor returned by tft.vocabulary in the same preprocessing_fn"
        )
    vocab = context.values.get(key)
    if vocab is None:
        return _map_values(x, lambda v: _pending(tf.zeros_like(v, tf.int64), key))
    size = len(vocab["tokens"])
    key_dtype = tf.string if vocab["input_dtype"] == "string" else tf.int64
    if size == 0:  # TF lookup tables cannot be empty: everything is out of vocabulary

        def lookup(values: Any) -> Any:
            if num_oov_buckets > 0:
                strings = values if values.dtype == tf.string else tf.strings.as_string(values)
                return tf.strings.to_hash_bucket_fast(strings, num_oov_buckets)
            return tf.fill(tf.shape(values), tf.constant(default_value, tf.int64))

    else:
        table = _lookup_table(context, key, vocab, num_oov_buckets, default_value)

        def lookup(values: Any) -> Any:
            return table.lookup(tf.cast(values, key_dtype))

    result = _map_values(x, lookup)
    if num_oov_buckets > 0:
        low, high = 0, size + num_oov_buckets - 1
    else:
        low, high = builtins.min(0, default_value), builtins.max(size - 1, default_value)
    return _annotate(result, min=low, max=high, vocabulary=context.vocabulary_names[key])


def _lookup_table(context: _TraceContext, key: str, vocab: dict, num_oov_buckets: int,
                  default_value: int) -> Any:
    tf = _tf()
    cache_key = (key, num_oov_buckets, default_value)
    if cache_key not in context.tables:
        # Created eagerly (outside the traced graph) so a SavedModel tracks it as a resource.
        with tf.init_scope():
            dtype = tf.string if vocab["input_dtype"] == "string" else tf.int64
            keys = tf.constant(vocab["tokens"], dtype=dtype, shape=[len(vocab["tokens"])])
            ids = tf.range(len(vocab["tokens"]), dtype=tf.int64)
            initializer = tf.lookup.KeyValueTensorInitializer(keys, ids)
            if num_oov_buckets > 0:
                table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets)
            else:
                table = tf.lookup.StaticHashTable(initializer, tf.constant(default_value, tf.int64))
        context.tables[cache_key] = table
    return context.tables[cache_key]


def compute_and_apply_vocabulary(x: Any, default_value: int = -1, top_k: int | None = None,
                                 frequency_threshold: int | None = None, num_oov_buckets: int = 0,
                                 vocab_filename: str | None = None, name: str | None = None) -> Any:
    """``apply_vocabulary(x, vocabulary(x, ...), ...)``: strings or ints -> int64 indices."""
    vocab = vocabulary(x, top_k=top_k, frequency_threshold=frequency_threshold,
                       vocab_filename=vocab_filename)
    return apply_vocabulary(x, vocab, default_value=default_value, num_oov_buckets=num_oov_buckets)


def quantiles(x: Any, num_buckets: int, epsilon: float, name: str | None = None) -> Any:
    """``num_buckets - 1`` quantile boundaries of ``x`` (1-D float32; approximate within epsilon).

    Computed with tfx_bsl's QuantilesSketch; empty when ``x`` had no values.
    """
    tf = _tf()
    if num_buckets < 1:
        raise PreprocessingFnError(f"tft.quantiles: num_buckets must be >= 1, got {num_buckets}")
    value = _analyze("quantiles", x, num_buckets=num_buckets, epsilon=epsilon)
    if value is None:
        return _pending(tf.zeros([num_buckets - 1], tf.float32), _context().specs[-1].key)
    return tf.constant(value, tf.float32, shape=[len(value)])


def apply_buckets(x: Any, bucket_boundaries: Any, name: str | None = None) -> Any:
    """The bucket index of each value: the number of boundaries <= the value (int64).

    >>> # boundaries [0, 5, 10]: -1 -> 0, 0 -> 1, 4 -> 1, 5 -> 2, 12 -> 3
    """
    tf = _tf()
    boundaries = tf.reshape(tf.convert_to_tensor(bucket_boundaries), [1, -1])

    def bucket(values: Any) -> Any:
        dtype = values.dtype if values.dtype in (tf.float32, tf.float64) else tf.float64
        flat = tf.reshape(tf.cast(values, dtype), [1, -1])
        found = tf.searchsorted(tf.cast(boundaries, dtype), flat, side="right", out_type=tf.int64)
        return tf.reshape(found, tf.shape(values))

    result = _map_values(x, bucket)
    static = boundaries.shape[1]
    if static is not None:
        _annotate(result, min=0, max=int(static))
    return result


def bucketize(x: Any, num_buckets: int, epsilon: float | None = None, weights: Any = None,
              elementwise: bool = False, name: str | None = None) -> Any:
    """Buckets ``x`` into ``num_buckets`` quantile buckets (int64 in ``[0, num_buckets)``)."""
    _reject_elementwise(elementwise)
    if weights is not None:
        raise PreprocessingFnError("tft.bucketize: weights are not supported")
    if epsilon is None:
        epsilon = builtins.min(1.0 / num_buckets, 0.01)
    boundaries = quantiles(x, num_buckets, epsilon)
    result = apply_buckets(x, boundaries)
    return _annotate(result, min=0, max=num_buckets - 1)


def hash_strings(strings: Any, hash_buckets: int, key: list[int] | None = None,
                 name: str | None = None) -> Any:
    """Hashes strings into ``[0, hash_buckets)`` (deterministic; keyed with ``key`` if given)."""
    tf = _tf()
    if key is None:
        result = _map_values(strings, lambda v: tf.strings.to_hash_bucket_fast(v, hash_buckets))
    else:
        result = _map_values(strings, lambda v: tf.strings.to_hash_bucket_strong(v, hash_buckets, key))
    return _annotate(result, min=0, max=hash_buckets - 1)


def fill_missing(x: Any, default: Any) -> Any:
    """A raw feature (SparseTensor ``[batch, 1]``) as a dense ``[batch]`` tensor, missing = ``default``.

    ``default`` may be a tensor, e.g. ``tft.mean(x)``. Dense tensors pass through unchanged.
    """
    tf = _tf()
    if not isinstance(x, tf.SparseTensor):
        return x
    reshaped = tf.SparseTensor(x.indices, x.values, tf.stack([x.dense_shape[0], tf.constant(1, tf.int64)]))
    default_value = tf.cast(default, x.dtype) if x.dtype != tf.string else tf.constant(default, tf.string)
    return tf.squeeze(tf.sparse.to_dense(reshaped, default_value=default_value), axis=1)


def _reject_elementwise(elementwise: bool) -> None:
    if elementwise:
        raise PreprocessingFnError("elementwise=True is not supported: analyzers reduce over all values")


# --- tracing preprocessing_fn -----------------------------------------------------------


def _tf_dtype(name: str) -> Any:
    tf = _tf()
    return {"int64": tf.int64, "float32": tf.float32, "string": tf.string}[name]


def raw_input_signature(raw_feature_types: dict[str, str]) -> dict[str, Any]:
    """``{name: tf.SparseTensorSpec([None, 1], dtype)}`` for the raw features."""
    tf = _tf()
    return {name: tf.SparseTensorSpec([None, 1], _tf_dtype(dtype)) for name, dtype in raw_feature_types.items()}


def _user_line(exc: BaseException, source: str) -> str:
    """``, line N`` of the deepest traceback frame inside the user's file, if any."""
    line = user_code_line(exc, source) if source else None
    return f", line {line}" if line else ""


def _call_user_fn(preprocessing_fn: Callable, inputs: dict[str, Any], source: str) -> Any:
    try:
        return preprocessing_fn(dict(inputs))
    except PreprocessingFnError as exc:
        raise PreprocessingFnError(f"preprocessing_fn in {source}{_user_line(exc, source)}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - user code: report it on one line
        message = (str(exc).strip().splitlines() or [""])[0]
        raise PreprocessingFnError(
            f"preprocessing_fn in {source}{_user_line(exc, source)} failed: {type(exc).__name__}: {message}"
        ) from exc


def _normalize_outputs(outputs: Any, source: str) -> dict[str, Any]:
    """Checks the outputs are dense per-example scalars; casts to int64/float32/string."""
    tf = _tf()
    if not isinstance(outputs, dict) or not outputs:
        raise PreprocessingFnError(
            f"preprocessing_fn in {source} must return a non-empty dict of tensors, got {type(outputs).__name__}"
        )
    normalized = {}
    for name, tensor in outputs.items():
        where = f"preprocessing_fn in {source}: output {name!r}"
        if not isinstance(name, str):
            raise PreprocessingFnError(f"{where}: output names must be strings")
        if isinstance(tensor, tf.SparseTensor):
            raise PreprocessingFnError(f"{where} is a SparseTensor; make it dense, e.g. with tft.fill_missing")
        if not isinstance(tensor, tf.Tensor):
            raise PreprocessingFnError(f"{where} is a {type(tensor).__name__}, not a tf.Tensor")
        shape = tensor.shape
        if shape.rank == 2 and shape[1] == 1:
            tensor = tf.squeeze(tensor, axis=1)
        elif shape.rank != 1:
            raise PreprocessingFnError(
                f"{where} has shape {shape}; Transform materializes one scalar per example (shape [batch])"
            )
        dtype = tensor.dtype
        if dtype.is_integer or dtype == tf.bool:
            tensor = tf.cast(tensor, tf.int64)
        elif dtype.is_floating:
            tensor = tf.cast(tensor, tf.float32)
        elif dtype != tf.string:
            raise PreprocessingFnError(f"{where} has dtype {dtype.name}; use an integer, float or string")
        normalized[name] = tensor
    return normalized


def _pending_ancestors(tensor: Any, pending_ops: dict[str, str]) -> set[str]:
    """The analyzers whose placeholders ``tensor`` is computed from."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [tensor.op]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.name in pending_ops:
            found.add(pending_ops[op.name])
            continue
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return found


def plan_analysis(preprocessing_fn: Callable, raw_feature_types: dict[str, str],
                  source: str = "preprocessing_fn") -> list[list[AnalyzerSpec]]:
    """Traces ``preprocessing_fn`` once and orders its analyzers into phases.

    An analyzer whose input depends on another analyzer's result runs one phase later.
    Also validates the outputs, so user errors surface before any data is read.
    """
    tf = _tf()
    context = _TraceContext("analyze", {})

    @tf.function(input_signature=[raw_input_signature(raw_feature_types)], autograph=False)
    def analysis_inputs(inputs):
        with _tracing(context):
            _normalize_outputs(_call_user_fn(preprocessing_fn, inputs, source), source)
        return dict(context.inputs)

    analysis_inputs.get_concrete_function()
    phase_of: dict[str, int] = {}
    for spec in context.specs:
        depends = _pending_ancestors(context.inputs[spec.key], context.pending_ops)
        phase_of[spec.key] = 1 + builtins.max([phase_of[d] for d in depends], default=0)
    count = builtins.max(phase_of.values(), default=0)
    if count > MAX_PHASES:
        raise PreprocessingFnError(
            f"preprocessing_fn in {source} chains {count} analyzers one on another; at most {MAX_PHASES} are supported"
        )
    return [[s for s in context.specs if phase_of[s.key] == phase] for phase in range(1, count + 1)]


class _AnalysisFunction:
    """The traced tf.function computing the inputs of ``keys`` from raw batches."""

    def __init__(self, preprocessing_fn: Callable, raw_feature_types: dict[str, str],
                 known_values: dict[str, Any], keys: list[str], source: str):
        tf = _tf()
        self.raw_feature_types = raw_feature_types
        self.context = _TraceContext("analyze", dict(known_values))
        context = self.context

        @tf.function(input_signature=[raw_input_signature(raw_feature_types)], autograph=False)
        def analysis_inputs(inputs):
            with _tracing(context):
                _call_user_fn(preprocessing_fn, inputs, source)
            missing = [k for k in keys if k not in context.inputs]
            if missing:
                raise PreprocessingFnError(
                    f"preprocessing_fn in {source} did not call analyzers {missing} again when traced once more"
                )
            return {k: context.inputs[k] for k in keys}

        self.function = analysis_inputs.get_concrete_function()

    def __call__(self, batch: Any) -> dict[str, Any]:
        outputs = self.function(arrow_to_raw_tensors(batch, self.raw_feature_types))
        return {key: tensor.numpy() for key, tensor in outputs.items()}


# --- combiners: mergeable accumulators per analyzer kind --------------------------------


def _new_accumulator(spec: AnalyzerSpec) -> Any:
    if spec.kind == "mean_and_var":
        return [0, 0.0, 0.0]  # count, mean, sum of squared deviations (Chan et al. merge)
    if spec.kind == "min_max":
        return [None, None]
    if spec.kind == "vocabulary":
        return {}
    if spec.kind == "quantiles":
        from tfx_bsl.sketches import QuantilesSketch

        return QuantilesSketch(spec.config["epsilon"], _QUANTILES_MAX_ELEMENTS, 1)
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _numeric(values: Any) -> Any:
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    return values


def _merge_mean_var(acc: list, count: int, batch_mean: float, batch_m2: float) -> list:
    if count == 0:
        return acc
    total = acc[0] + count
    delta = batch_mean - acc[1]
    return [total, acc[1] + delta * count / total, acc[2] + batch_m2 + delta * delta * acc[0] * count / total]


def _add_to_accumulator(spec: AnalyzerSpec, acc: Any, values: Any) -> Any:
    import numpy as np

    if spec.kind == "mean_and_var":
        values = _numeric(values).astype(np.float64)
        if not len(values):
            return acc
        batch_mean = float(values.mean())
        return _merge_mean_var(acc, len(values), batch_mean, float(((values - batch_mean) ** 2).sum()))
    if spec.kind == "min_max":
        values = _numeric(values)
        if not len(values):
            return acc
        low, high = values.min(), values.max()
        return [low if acc[0] is None else builtins.min(acc[0], low), high if acc[1] is None else builtins.max(acc[1], high)]
    if spec.kind == "vocabulary":
        if len(values):
            tokens, counts = np.unique(values, return_counts=True)
            for token, count in zip(tokens.tolist(), counts.tolist()):
                acc[token] = acc.get(token, 0) + count
        return acc
    if spec.kind == "quantiles":
        import pyarrow as pa

        values = _numeric(values).astype(np.float64)
        if len(values):
            acc.AddValues(pa.array(values))
        return acc
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _merge_two(spec: AnalyzerSpec, acc: Any, other: Any) -> Any:
    if spec.kind == "mean_and_var":
        if other[0] == 0:
            return acc
        return _merge_mean_var(acc, other[0], other[1], other[2])
    if spec.kind == "min_max":
        lows = [v for v in (acc[0], other[0]) if v is not None]
        highs = [v for v in (acc[1], other[1]) if v is not None]
        return [builtins.min(lows) if lows else None, builtins.max(highs) if highs else None]
    if spec.kind == "vocabulary":
        for token, count in other.items():
            acc[token] = acc.get(token, 0) + count
        return acc
    if spec.kind == "quantiles":
        acc.Merge(other)
        return acc
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _extract(spec: AnalyzerSpec, acc: Any) -> Any:
    if spec.kind == "mean_and_var":
        count, mean_value, m2 = acc
        return (float(mean_value), float(m2 / count) if count else 0.0)
    if spec.kind == "min_max":
        low, high = acc
        if low is None:  # no values at all
            return (0, 0)
        return (low.item(), high.item())
    if spec.kind == "vocabulary":
        threshold = spec.config.get("frequency_threshold") or 0
        ranked = sorted(((count, token) for token, count in acc.items() if count >= threshold), reverse=True)
        top_k = spec.config.get("top_k")
        if top_k is not None:
            ranked = ranked[:top_k]
        return {
            "tokens": [token for _, token in ranked],
            "counts": [count for count, _ in ranked],
            "input_dtype": spec.config["input_dtype"],
        }
    if spec.kind == "quantiles":
        result = acc.GetQuantiles(spec.config["num_buckets"]).flatten().to_pylist()
        return [float(v) for v in result[1:-1]]
    raise ValueError(f"unknown analyzer kind {spec.kind}")


# --- Arrow <-> tensors --------------------------------------------------------------------


def arrow_to_raw_tensors(batch: Any, raw_feature_types: dict[str, str]) -> dict[str, Any]:
    """A pyarrow Table/RecordBatch as ``{name: tf.SparseTensor [rows, 1]}`` (nulls = no entry).

    Vectorized: the null mask gives the indices. Columns the batch lacks are all-missing.
    """
    import numpy as np
    import pyarrow as pa

    tf = _tf()
    rows = batch.num_rows
    tensors = {}
    for name, dtype in raw_feature_types.items():
        if name in batch.column_names:
            column = batch.column(name)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            if column.null_count:
                present = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
                column = column.drop_null()
            else:
                present = np.arange(rows, dtype=np.int64)
            values = _arrow_values(column, dtype, name)
        else:
            present = np.zeros([0], np.int64)
            values = np.zeros([0], {"int64": np.int64, "float32": np.float32, "string": object}[dtype])
        indices = np.stack([present.astype(np.int64), np.zeros(len(present), np.int64)], axis=1)
        tensors[name] = tf.SparseTensor(indices, tf.constant(values, _tf_dtype(dtype)), [rows, 1])
    return tensors


def _arrow_values(column: Any, dtype: str, name: str) -> Any:
    import pyarrow as pa

    try:
        if dtype == "string":
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                    or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
                column = column.cast(pa.string())
            return column.to_numpy(zero_copy_only=False)
        target = pa.int64() if dtype == "int64" else pa.float32()
        if column.type != target:
            column = column.cast(target)
        return column.to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {name!r} of type {column.type} cannot be read as {dtype}: {exc}") from None


def _slices(batch: Any, rows: int = MAX_BATCH_ROWS) -> list[Any]:
    """A Table/RecordBatch cut into zero-copy slices of at most ``rows`` rows (none if empty)."""
    return [batch.slice(start, rows) for start in range(0, batch.num_rows, rows)]


def tensors_to_arrow(outputs: dict[str, Any], feature_types: dict[str, str]) -> Any:
    """Transformed tensors as a pyarrow Table with columns in ``feature_types`` order."""
    import pyarrow as pa

    arrays = []
    for name, dtype in feature_types.items():
        values = outputs[name].numpy()
        if dtype == "string":
            try:
                arrays.append(pa.array(values, pa.binary()).cast(pa.string()))
            except pa.ArrowInvalid:
                raise ValueError(f"transformed feature {name!r} holds strings that are not UTF-8") from None
        else:
            arrays.append(pa.array(values, pa.int64() if dtype == "int64" else pa.float32()))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(feature_types))


def arrow_schema(feature_types: dict[str, str]) -> Any:
    import pyarrow as pa

    types_ = {"int64": pa.int64(), "float32": pa.float32(), "string": pa.string()}
    return pa.schema([(name, types_[dtype]) for name, dtype in feature_types.items()])


def _dtype_name(dtype: Any) -> str:
    return {"int64": "int64", "float32": "float32", "string": "string"}[dtype.name]


# --- the transform graph: trace with constants, save, load ------------------------------


def save_transform_graph(preprocessing_fn: Callable, raw_feature_types: dict[str, str],
                         values: dict[str, Any], output_dir: str, source: str = "preprocessing_fn") -> dict[str, Any]:
    """Traces ``preprocessing_fn`` with the analyzed ``values`` and saves the transform graph.

    Writes ``<output_dir>/transform_fn/`` (SavedModel: ``transform_fn`` takes the raw
    SparseTensor dict; signature ``serving_default`` takes serialized tf.Examples),
    the vocabulary files under ``transform_fn/assets/``, ``analysis.json`` and
    ``transformed_metadata/schema.pbtxt``. Returns the analysis description.
    """
    tf = _tf()
    context = _TraceContext("transform", dict(values))
    annotations: dict[str, dict[str, Any]] = {}

    @tf.function(input_signature=[raw_input_signature(raw_feature_types)], autograph=False)
    def transform_fn(inputs):
        with _tracing(context):
            outputs = _call_user_fn(preprocessing_fn, inputs, source)
            normalized = _normalize_outputs(outputs, source)
        for name, tensor in outputs.items():
            found = context.annotations.get(tensor.ref()) if hasattr(tensor, "ref") else None
            if found:
                annotations[name] = found
        return normalized

    concrete = transform_fn.get_concrete_function()
    feature_types = {name: _dtype_name(spec.dtype) for name, spec in sorted(concrete.structured_outputs.items())}
    raw_spec = {name: tf.io.VarLenFeature(_tf_dtype(dtype)) for name, dtype in raw_feature_types.items()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def transform_examples(serialized):
        parsed = tf.io.parse_example(serialized, raw_spec)
        return concrete({name: _as_raw_sparse(value) for name, value in parsed.items()})

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


def _write_vocabularies(context: _TraceContext, values: dict[str, Any], annotations: dict, graph_dir: str) -> dict:
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


def _as_raw_sparse(value: Any) -> Any:
    """A SparseTensor or dense tensor as a raw-feature SparseTensor of dense_shape [batch, 1]."""
    tf = _tf()
    if isinstance(value, tf.SparseTensor):
        return tf.SparseTensor(value.indices, value.values,
                               tf.stack([value.dense_shape[0], tf.constant(1, tf.int64)]))
    dense = tf.reshape(tf.convert_to_tensor(value), [-1])
    rows = tf.shape(dense, out_type=tf.int64)[0]
    indices = tf.stack([tf.range(rows), tf.zeros([rows], tf.int64)], axis=1)
    return tf.SparseTensor(indices, dense, tf.stack([rows, tf.constant(1, tf.int64)]))


def _complete_raw_features(features: dict[str, Any], raw_feature_types: dict[str, str]) -> dict[str, Any]:
    """Raw features in the saved graph's form; absent ones (e.g. the label at serving) as empty."""
    tf = _tf()
    present = {name: _as_raw_sparse(value) for name, value in features.items() if name in raw_feature_types}
    if not present:
        raise ValueError(f"none of the raw features {sorted(raw_feature_types)} was given")
    rows = next(iter(present.values())).dense_shape[0]
    complete = {}
    for name, dtype in raw_feature_types.items():
        tensor = present.get(name)
        if tensor is None:
            tensor = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], _tf_dtype(dtype)),
                                     tf.stack([rows, tf.constant(1, tf.int64)]))
        elif tensor.dtype != _tf_dtype(dtype):
            tensor = tf.SparseTensor(tensor.indices, tf.cast(tensor.values, _tf_dtype(dtype)), tensor.dense_shape)
        complete[name] = tensor
    return complete


_loaded_graphs: dict[tuple, Any] = {}
_loaded_graphs_lock = threading.Lock()


def _load_transform_fn(transform_fn_dir: str) -> Any:
    """The saved ``transform_fn``, loaded once per process (DoFns of all splits share it)."""
    stamp = os.stat(os.path.join(transform_fn_dir, "saved_model.pb")).st_mtime_ns
    key = (os.path.abspath(transform_fn_dir), stamp)
    with _loaded_graphs_lock:
        if key not in _loaded_graphs:
            if len(_loaded_graphs) >= 4:  # a long-lived worker should not hoard graphs
                _loaded_graphs.clear()
            _loaded_graphs[key] = _tf().saved_model.load(transform_fn_dir)
        return _loaded_graphs[key].transform_fn


@functools.cache
def _layer_class() -> type:
    tf = _tf()

    class TransformFeaturesLayer(tf.Module):
        """Applies a saved transform graph: raw feature dict -> transformed dense tensors.

        A trackable ``tf.Module``: assign it to a model/module attribute and it is saved
        with it (e.g. inside the serving SavedModel).
        """

        def __init__(self, transform_fn_dir: str, raw_feature_types: dict[str, str]):
            super().__init__(name="transform_features_layer")
            self._transform = tf.saved_model.load(transform_fn_dir)
            self._raw_types = tuple(raw_feature_types.items())

        def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
            raw = _complete_raw_features(features, dict(self._raw_types))
            return self._transform.transform_fn(raw)

    return TransformFeaturesLayer


class TransformOutput:
    """A Transform's output graph, as TFT's ``TFTransformOutput``, for Trainer module files and serving.

    >>> out = TransformOutput(transform_graph.uri)                         # doctest: +SKIP
    >>> parsed = tf.io.parse_example(serialized, out.raw_feature_spec())   # doctest: +SKIP
    >>> transformed = out.transform_raw_features(parsed)                   # doctest: +SKIP
    """

    def __init__(self, transform_graph_uri: Any):
        self.uri = str(getattr(transform_graph_uri, "uri", transform_graph_uri))
        path = os.path.join(self.uri, ANALYSIS_FILE)
        try:
            with open(path) as fh:
                self.analysis = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a Transform output ({exc})") from None
        self._layer = None

    @property
    def transform_savedmodel_dir(self) -> str:
        return os.path.join(self.uri, TRANSFORM_FN_DIR)

    @property
    def transformed_schema_path(self) -> str:
        return os.path.join(self.uri, TRANSFORMED_METADATA_DIR, SCHEMA_FILE)

    @property
    def raw_feature_types(self) -> dict[str, str]:
        return dict(self.analysis["raw_features"])

    @property
    def transformed_feature_types(self) -> dict[str, str]:
        return dict(self.analysis["transformed_features"])

    def raw_feature_spec(self) -> dict[str, Any]:
        """``{name: tf.io.VarLenFeature(dtype)}`` for parsing raw serialized tf.Examples."""
        tf = _tf()
        return {n: tf.io.VarLenFeature(_tf_dtype(d)) for n, d in self.raw_feature_types.items()}

    def transformed_feature_spec(self) -> dict[str, Any]:
        """``{name: tf.io.FixedLenFeature([], dtype)}`` of the transformed features."""
        tf = _tf()
        return {n: tf.io.FixedLenFeature([], _tf_dtype(d)) for n, d in self.transformed_feature_types.items()}

    def transform_features_layer(self) -> Any:
        """The trackable module applying the graph (loaded once per TransformOutput)."""
        if self._layer is None:
            self._layer = _layer_class()(self.transform_savedmodel_dir, self.raw_feature_types)
        return self._layer

    def transform_raw_features(self, raw_features: dict[str, Any]) -> dict[str, Any]:
        """Raw SparseTensors (or dense tensors) -> transformed dense tensors."""
        return self.transform_features_layer()(raw_features)

    def _vocabulary(self, name: str) -> dict[str, Any]:
        vocabularies = self.analysis["vocabularies"]
        if name in vocabularies:
            return vocabularies[name]
        for found in vocabularies.values():  # also accept a transformed feature's name
            if name in found["used_by"]:
                return found
        raise ValueError(f"no vocabulary named {name!r} (vocabularies: {', '.join(vocabularies) or 'none'})")

    def vocabulary_file_by_name(self, name: str) -> str:
        """The vocabulary file (one token per line) by vocab_filename or transformed feature name."""
        return os.path.join(self.uri, self._vocabulary(name)["file"])

    def vocabulary_size_by_name(self, name: str) -> int:
        return int(self._vocabulary(name)["size"])

    def vocabulary_by_name(self, name: str) -> list[bytes]:
        with open(self.vocabulary_file_by_name(name), "rb") as fh:
            return fh.read().splitlines()

    def num_buckets_for_transformed_feature(self, name: str) -> int:
        """Categories of a vocabulary/bucketize/hash output (int_domain max + 1)."""
        found = self.analysis["annotations"].get(name)
        if not found:
            raise ValueError(f"transformed feature {name!r} is not categorical")
        return int(found["max"]) + 1


# --- Beam: AnalyzeDataset and TransformDataset (defined lazily: no Beam import at load) ---


def __getattr__(name: str) -> Any:
    if name in ("AnalyzeDataset", "TransformDataset", "ReadRawBatches"):
        return getattr(_beam_transforms(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _beam_transforms() -> types.SimpleNamespace:
    import apache_beam as beam

    class _AnalyzerInputsDoFn(beam.DoFn):
        """Raw Arrow batch -> {analyzer key: numpy values}; traces its tf.function once."""

        def __init__(self, preprocessing_fn, raw_feature_types, keys, source):
            self._args = (preprocessing_fn, raw_feature_types, keys, source)
            self._function = None

        def process(self, batch, known_values=None):
            if self._function is None:  # side inputs are first seen here, not in setup()
                fn, types_, keys, source = self._args
                self._function = _AnalysisFunction(fn, types_, known_values or {}, keys, source)
            for part in _slices(batch):
                yield self._function(part)

    class _AnalyzersCombineFn(beam.CombineFn):
        """One mergeable accumulator per analyzer of a phase."""

        def __init__(self, specs):
            self._specs = list(specs)

        def create_accumulator(self):
            return {spec.key: _new_accumulator(spec) for spec in self._specs}

        def add_input(self, accumulator, batch_values):
            for spec in self._specs:
                accumulator[spec.key] = _add_to_accumulator(spec, accumulator[spec.key], batch_values[spec.key])
            return accumulator

        def merge_accumulators(self, accumulators):
            accumulators = iter(accumulators)
            merged = next(accumulators)
            for other in accumulators:
                for spec in self._specs:
                    merged[spec.key] = _merge_two(spec, merged[spec.key], other[spec.key])
            return merged

        def extract_output(self, accumulator):
            return {spec.key: _extract(spec, accumulator[spec.key]) for spec in self._specs}

    class AnalyzeDataset(beam.PTransform):
        """Raw Arrow batches -> one dict ``{analyzer key: value}`` with every analyzer's result.

        Plans the phases by tracing ``preprocessing_fn`` at construction time; each phase
        reads the batches once and combines its analyzers together.
        """

        def __init__(self, preprocessing_fn, raw_feature_types, source="preprocessing_fn"):
            super().__init__()
            self._fn = preprocessing_fn
            self._types = dict(raw_feature_types)
            self._source = source
            self.phases = plan_analysis(preprocessing_fn, self._types, source)

        def expand(self, batches):
            values = None
            if not self.phases:
                return batches.pipeline | "NoAnalyzers" >> beam.Create([{}])
            for number, specs in enumerate(self.phases, 1):
                keys = [spec.key for spec in specs]
                side = [] if values is None else [beam.pvalue.AsSingleton(values)]
                found = (
                    batches
                    | f"AnalyzerInputs[{number}]" >> beam.ParDo(
                        _AnalyzerInputsDoFn(self._fn, self._types, keys, self._source), *side)
                    | f"Combine[{number}]" >> beam.CombineGlobally(_AnalyzersCombineFn(specs))
                )
                if values is None:
                    values = found
                else:
                    values = found | f"Merge[{number}]" >> beam.Map(
                        lambda new, old: {**old, **new}, beam.pvalue.AsSingleton(values))
            return values

    class _TransformBatchDoFn(beam.DoFn):
        def __init__(self, transform_graph_dir):
            self._dir = transform_graph_dir

        def setup(self):
            self._output = TransformOutput(self._dir)
            self._types = self._output.raw_feature_types
            self._features = self._output.transformed_feature_types
            self._function = _load_transform_fn(self._output.transform_savedmodel_dir)

        def process(self, batch):
            for part in _slices(batch):
                outputs = self._function(arrow_to_raw_tensors(part, self._types))
                yield tensors_to_arrow(outputs, self._features)

    class TransformDataset(beam.PTransform):
        """Raw Arrow batches -> transformed pyarrow Tables, with a saved transform graph."""

        def __init__(self, transform_graph_dir):
            super().__init__()
            self._dir = transform_graph_dir

        def expand(self, batches):
            return batches | "Transform" >> beam.ParDo(_TransformBatchDoFn(self._dir))

    class ReadRawBatches(beam.PTransform):
        """Parquet files (glob patterns) -> pyarrow Tables (one per row group)."""

        def __init__(self, patterns):
            super().__init__()
            self._patterns = list(patterns)

        def expand(self, pipeline):
            reads = [
                pipeline | f"Read[{i}]" >> beam.io.ReadFromParquetBatched(pattern)
                for i, pattern in enumerate(self._patterns)
            ]
            return reads[0] if len(reads) == 1 else reads | "Flatten" >> beam.Flatten()

    return types.SimpleNamespace(
        AnalyzeDataset=AnalyzeDataset, TransformDataset=TransformDataset, ReadRawBatches=ReadRawBatches
    )


# --- the component --------------------------------------------------------------------


def load_preprocessing_fn(module_file: str | None, preprocessing_fn: str | None) -> tuple[Callable, str]:
    """The user's function and where it came from (a file path or dotted name)."""
    if (module_file is None) == (preprocessing_fn is None):
        raise ComponentError("Transform: set exactly one of module_file or preprocessing_fn")
    if preprocessing_fn is not None:
        module_name, _, attr = preprocessing_fn.rpartition(".")
        if not module_name:
            raise ComponentError(f"Transform: preprocessing_fn {preprocessing_fn!r} must be 'module.function'")
        import importlib

        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - user code
            raise ComponentError(
                f"Transform: preprocessing_fn {preprocessing_fn!r}: cannot import {module_name}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ComponentError(f"Transform: preprocessing_fn {preprocessing_fn!r}: {module_name} has no function {attr}")
        return fn, getattr(module, "__file__", None) or preprocessing_fn

    path = os.path.abspath(module_file)
    module = load_module_file(path, "Transform")
    try:  # ship the module by value so workers in other processes need not import it
        from apache_beam.internal.cloudpickle import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except Exception:  # noqa: BLE001 - in-process runners unpickle by reference anyway
        pass
    fn = getattr(module, "preprocessing_fn", None)
    if not callable(fn):
        raise ComponentError(f"Transform: module file {path} defines no preprocessing_fn(inputs) function")
    return fn, path


def raw_feature_types_from_schema(schema_file: str) -> dict[str, str]:
    """``{feature: "int64"|"float32"|"string"}`` from a tensorflow_metadata Schema text file."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        with open(schema_file) as fh:
            schema = text_format.Parse(fh.read(), schema_pb2.Schema())
    except (OSError, text_format.ParseError) as exc:
        raise ComponentError(f"Transform: schema {schema_file}: cannot read it: {exc}") from None
    kinds = {schema_pb2.INT: "int64", schema_pb2.FLOAT: "float32", schema_pb2.BYTES: "string"}
    types_ = {}
    for feature in schema.feature:
        if feature.type not in kinds:
            raise ComponentError(
                f"Transform: schema {schema_file}: feature {feature.name!r} has type "
                f"{schema_pb2.FeatureType.Name(feature.type)}; expected INT, FLOAT or BYTES"
            )
        types_[feature.name] = kinds[feature.type]
    if not types_:
        raise ComponentError(f"Transform: schema {schema_file} has no features")
    return types_


def _split_files(examples: Examples, split: str) -> str:
    import glob

    pattern = examples.parquet_pattern(split)
    if not glob.glob(pattern):
        raise ComponentError(f"Transform: examples split {split!r} has no Parquet files in {examples.split_uri(split)}")
    return pattern


def _check_column_types(pattern: str, raw_types: dict[str, str]) -> None:
    """Fails early, on one line, when a Parquet column cannot become its schema dtype."""
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    readable = {
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
        or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_dictionary(t),
        "int64": lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t),
        "float32": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
    }
    for path in sorted(glob.glob(pattern)):
        try:
            arrow = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ComponentError(f"Transform: {path}: not a readable Parquet file ({exc})") from None
        for name, dtype in raw_types.items():
            index = arrow.get_field_index(name)
            if index >= 0 and not readable[dtype](arrow.field(index).type):
                raise ComponentError(
                    f"Transform: {path}: column {name!r} has type {arrow.field(index).type}, "
                    f"but the schema says {dtype}"
                )


def run_transform(
    examples: Input[Examples],
    schema: Input[Schema],
    transform_graph: Output[TransformGraph],
    transformed_examples: Output[Examples],
    post_transform_schema: Output[Schema],
    module_file: ModuleFile | None = None,
    preprocessing_fn: str | None = None,
    analyze_splits: list[str] = ["train"],  # noqa: B006 - validated, never mutated
    transform_splits: list[str] = ["train", "eval"],  # noqa: B006
    ctx: ExecutionContext = None,
) -> None:
    """Analyzes ``analyze_splits``, saves the transform graph, transforms ``transform_splits``.

    Exactly one of ``module_file`` (a .py defining ``preprocessing_fn``) or
    ``preprocessing_fn`` (a dotted ``"package.module.function"``) is required.
    """
    ctx = ctx or ExecutionContext()
    fn, source = load_preprocessing_fn(module_file, preprocessing_fn)
    if examples.file_format != "parquet":
        raise ComponentError(f"Transform: examples must be Parquet, got file_format={examples.file_format!r}")
    for param, splits in (("analyze_splits", analyze_splits), ("transform_splits", transform_splits)):
        if not splits:
            raise ComponentError(f"Transform: parameter {param} is empty")
        unknown = [s for s in splits if s not in examples.split_names]
        if unknown:
            raise ComponentError(
                f"Transform: parameter {param}: unknown split(s) {unknown} (examples have {examples.split_names})"
            )
    raw_types = raw_feature_types_from_schema(schema.file)
    patterns = {split: _split_files(examples, split) for split in {*analyze_splits, *transform_splits}}
    for pattern in patterns.values():
        _check_column_types(pattern, raw_types)

    import apache_beam as beam

    beam_api = _beam_transforms()
    scratch = os.path.join(transform_graph.uri, ".analysis")
    os.makedirs(scratch, exist_ok=True)
    values_file = os.path.join(scratch, "values.pickle")
    try:
        try:
            analyze = beam_api.AnalyzeDataset(fn, raw_types, source)
            with ctx.beam_pipeline() as pipeline:
                _ = (
                    pipeline
                    | "ReadAnalyzeSplits" >> beam_api.ReadRawBatches([patterns[s] for s in analyze_splits])
                    | "Analyze" >> analyze
                    | "WriteValues" >> beam.Map(_write_pickle, values_file)
                )
            with open(values_file, "rb") as fh:
                values = pickle.load(fh)
            analysis = save_transform_graph(fn, raw_types, values, transform_graph.uri, source)
        finally:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)

        graph_dir = transform_graph.uri
        with ctx.beam_pipeline() as pipeline:
            for split in transform_splits:
                out_dir = transformed_examples.split_uri(split)
                os.makedirs(out_dir, exist_ok=True)
                _ = (
                    pipeline
                    | f"Read[{split}]" >> beam_api.ReadRawBatches([patterns[split]])
                    | f"Transform[{split}]" >> beam_api.TransformDataset(graph_dir)
                    | f"Write[{split}]" >> beam.io.WriteToParquetBatched(
                        os.path.join(out_dir, "part"), schema=arrow_schema(analysis["transformed_features"]),
                        file_name_suffix=".parquet", shard_name_template="-SSSSS-of-NNNNN")
                )
    except PreprocessingFnError as exc:
        raise ComponentError(f"Transform: {exc}") from None
    except ComponentError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failure while Beam ran the user's graph
        raise ComponentError(f"Transform: running preprocessing_fn from {source} on {examples.uri} "
                             f"failed: {_summarize_failure(exc, source)}") from exc

    with open(post_transform_schema.file, "w") as fh, \
            open(os.path.join(transform_graph.uri, TRANSFORMED_METADATA_DIR, SCHEMA_FILE)) as src:
        fh.write(src.read())
    transformed_examples.split_names = list(transform_splits)
    transformed_examples.span = examples.span
    transformed_examples.version = examples.version
    transformed_examples.file_format = "parquet"
    ctx.log_metric("num_analyzers", len(analysis["analyzers"]))
    ctx.log_metric("num_transformed_features", len(analysis["transformed_features"]))


def _summarize_failure(exc: BaseException, source: str) -> str:
    """One line from an error Beam re-raised with its worker traceback folded into the message."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.startswith("File ")]
    where = ""
    for i in frames:
        match = re.match(r'File "(.+)", line (\d+)', lines[i])
        if match and os.path.abspath(match.group(1)) == os.path.abspath(source):
            where = f"line {match.group(2)}: "
    message = lines[frames[-1] + 1] if frames and frames[-1] + 1 < len(lines) else (lines[0] if lines else "")
    message = re.sub(r"\s*\[while running .*\]$", "", message)
    if len(message) > 300:
        message = message[:300] + "..."
    return f"{where}{message or type(exc).__name__}"


def _write_pickle(value: Any, path: str) -> None:
    with open(path, "wb") as fh:
        pickle.dump(value, fh)


Transform = component(run_transform, name="Transform", warm_imports=("tensorflow",))
