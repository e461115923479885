"""Tracing ``preprocessing_fn``: what analyzers see while it is traced, and the analysis plan.

``preprocessing_fn`` is traced once in *analysis mode*, where each analyzer registers its
input tensor and returns a placeholder (``analyze``/``pending``). ``plan_analysis`` orders
the analyzers into phases: one whose input depends on another analyzer's result runs in a
later phase. ``AnalysisFunction`` is the traced ``tf.function`` computing a phase's analyzer
inputs from raw Arrow batches. ``preprocessing_fn`` is traced on ``packed.pack``'s tensors,
unpacked into its inputs in the same graph: one function per batch, no wrapper to trace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from sluice.components.sdk import user_code_line
from sluice.components.tft.packed import packed_signature, unpack
from sluice.components.tft.tensors import import_tf

MAX_PHASES = 10


class PreprocessingFnError(ValueError):
    """The user's preprocessing_fn is broken; the message names the culprit."""


@dataclasses.dataclass(frozen=True)
class AnalyzerSpec:
    """One analyzer call: ``key`` is its position in the call order plus its kind."""

    key: str
    kind: str  # mean_and_var | min_max | vocabulary | quantiles
    config: dict[str, Any]


class TraceContext:
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
        self.asset_annotations: dict[str, str] = {}  # tft.annotate_asset key -> vocabulary file name

    def start_trace(self) -> None:
        """Forgets the previous trace's calls (a function may be traced again); keeps tables."""
        self.specs, self.inputs, self.pending_ops = [], {}, {}
        self.vocabularies, self.vocabulary_names, self.annotations = {}, {}, {}
        self.asset_annotations = {}

    def next_key(self, kind: str) -> str:
        return f"{len(self.specs):03d}_{kind}"


_state = threading.local()


@contextlib.contextmanager
def tracing(context: TraceContext):
    """Makes ``context`` the one analyzers see while ``preprocessing_fn`` is traced."""
    previous = getattr(_state, "context", None)
    context.start_trace()
    _state.context = context
    try:
        yield context
    finally:
        _state.context = previous


def current_context() -> TraceContext:
    context = getattr(_state, "context", None)
    if context is None:
        raise RuntimeError(
            "tft analyzers only work inside a preprocessing_fn that Transform traces "
            "(use TransformOutput to apply a saved transform graph)"
        )
    return context


def analyze(kind: str, x: Any, elementwise: bool = False, **config: Any) -> Any:
    """Registers an analyzer call; returns its value, or None while it is not yet known.

    The analyzer's input is every value of ``x`` as one vector, or with ``elementwise`` a
    ``[values, d]`` matrix whose columns are reduced separately (``x`` dense, of static shape
    ``[batch, ...]``; ``config["elementwise_shape"]`` records the per-example shape).
    """
    tf = import_tf()
    context = current_context()
    key = context.next_key(kind)
    if elementwise:
        config["elementwise_shape"] = _elementwise_shape(x, kind)
    spec = AnalyzerSpec(key, kind, config)
    context.specs.append(spec)
    if key in context.values:
        return context.values[key]
    if context.mode != "analyze":
        raise PreprocessingFnError(
            f"analyzer {key} has no computed value: preprocessing_fn must call the same "
            "analyzers in the same order every time it is traced"
        )
    if elementwise:
        values = tf.reshape(x, [-1, _prod(config["elementwise_shape"])])
    else:
        values = x.values if isinstance(x, tf.SparseTensor) else tf.reshape(x, [-1])
    values = _reduced_in_graph(kind, values, config)
    context.inputs[key] = values
    return None


def _reduced_in_graph(kind: str, values: Any, config: dict[str, Any]) -> Any:
    """An analyzer's input as its batch partial where one is cheaper to hand over than every value:
    moments for ``mean_and_var``, unique values and their counts for unweighted counting (counted
    on dictionary codes where the strings come from a dictionary)."""
    from sluice.components.tft.accumulators import batch_counts, batch_moments  # it imports this module
    from sluice.components.tft.dictionary import dictionary_counts

    if kind == "mean_and_var":
        return {"moments": batch_moments(values, _prod(config.get("elementwise_shape") or []))}
    if kind in ("vocabulary", "count_per_value") and not config.get("weighted"):
        return dictionary_counts(values) or batch_counts(values)
    return values


def _prod(shape: list[int]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def _elementwise_shape(x: Any, kind: str) -> list[int]:
    """The static per-example shape of an elementwise analyzer's dense input."""
    tf = import_tf()
    if isinstance(x, (tf.SparseTensor, tf.RaggedTensor)):
        raise PreprocessingFnError(f"{kind} with elementwise=True needs a dense input; densify it first "
                                   "(tft.sparse_tensor_to_dense_with_shape)")
    shape = tf.convert_to_tensor(x).shape
    if shape.rank is None or shape.rank < 1 or not shape[1:].is_fully_defined():
        raise PreprocessingFnError(f"{kind} with elementwise=True needs a static shape [batch, ...], got {shape}")
    return [int(d) for d in shape[1:]]


def pending(tensor: Any, key: str) -> Any:
    """A placeholder standing for analyzer ``key``'s result until it is computed.

    Analyzers whose input is computed from a placeholder run in a later phase.
    """
    placeholder = import_tf().identity(tensor, name="sluice_pending_analyzer")
    current_context().pending_ops[placeholder.op.name] = key
    return placeholder


def map_values(x: Any, fn: Callable[[Any], Any]) -> Any:
    """Applies ``fn`` to a dense tensor, or to the values of a SparseTensor."""
    tf = import_tf()
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, fn(x.values), x.dense_shape)
    return fn(tf.convert_to_tensor(x))


def annotate(tensor: Any, **annotation: Any) -> Any:
    """Records a categorical result's range (and vocabulary) for the output schema."""
    context = getattr(_state, "context", None)
    if context is not None:
        target = tensor.values if isinstance(tensor, import_tf().SparseTensor) else tensor
        context.annotations[target.ref()] = annotation
    return tensor


# --- calling the user's function ----------------------------------------------------------


def _user_line(exc: BaseException, source: str) -> str:
    """``, line N`` of the deepest traceback frame inside the user's file, if any."""
    line = user_code_line(exc, source) if source else None
    return f", line {line}" if line else ""


def call_user_fn(preprocessing_fn: Callable, inputs: dict[str, Any], source: str) -> Any:
    """Calls ``preprocessing_fn``; its failures become one-line ``PreprocessingFnError``."""
    try:
        return preprocessing_fn(dict(inputs))
    except PreprocessingFnError as exc:
        raise PreprocessingFnError(f"preprocessing_fn in {source}{_user_line(exc, source)}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - user code: report it on one line
        message = (str(exc).strip().splitlines() or [""])[0]
        raise PreprocessingFnError(
            f"preprocessing_fn in {source}{_user_line(exc, source)} failed: {type(exc).__name__}: {message}"
        ) from exc


def normalize_outputs(outputs: Any, source: str) -> dict[str, Any]:
    """Checks and normalizes the outputs; casts their values to int64/float32/string.

    A dense output ``[batch]`` is one scalar per example, ``[batch, d, ...]`` with static dims
    fixed-length (``[batch, 1]`` keeps its shape, as in tf.Transform); a 2-D SparseTensor or
    RaggedTensor is variable-length.
    """
    tf = import_tf()
    if not isinstance(outputs, dict) or not outputs:
        raise PreprocessingFnError(
            f"preprocessing_fn in {source} must return a non-empty dict of tensors, got {type(outputs).__name__}"
        )
    normalized = {}
    for name, tensor in outputs.items():
        where = f"preprocessing_fn in {source}: output {name!r}"
        if not isinstance(name, str):
            raise PreprocessingFnError(f"{where}: output names must be strings")
        if isinstance(tensor, tf.RaggedTensor):
            if tensor.shape.rank != 2:
                raise PreprocessingFnError(f"{where} is a RaggedTensor of shape {tensor.shape}; only [batch, None] "
                                           "ragged outputs are materialized")
            normalized[name] = tensor.with_values(_cast_output(tensor.values, where))
            continue
        if isinstance(tensor, tf.SparseTensor):
            if tensor.shape.rank != 2:
                raise PreprocessingFnError(f"{where} is a SparseTensor of shape {tensor.shape}; only 2-D "
                                           "[batch, None] sparse outputs are materialized")
            normalized[name] = tf.SparseTensor(tensor.indices, _cast_output(tensor.values, where), tensor.dense_shape)
            continue
        if not isinstance(tensor, tf.Tensor):
            raise PreprocessingFnError(f"{where} is a {type(tensor).__name__}, not a tf.Tensor")
        normalized[name] = _cast_output(_dense_output(tensor, where), where)
    return normalized


def _dense_output(tensor: Any, where: str) -> Any:
    shape = tensor.shape
    if shape.rank is None or shape.rank < 1 or not shape[1:].is_fully_defined():
        raise PreprocessingFnError(
            f"{where} has shape {shape}; a dense output needs a static shape [batch, ...] "
            "(return a SparseTensor or RaggedTensor for variable-length values)"
        )
    return tensor


def _cast_output(tensor: Any, where: str) -> Any:
    tf = import_tf()
    dtype = tensor.dtype
    if dtype.is_integer or dtype == tf.bool:
        return tf.cast(tensor, tf.int64)
    if dtype.is_floating:
        return tf.cast(tensor, tf.float32)
    if dtype != tf.string:
        raise PreprocessingFnError(f"{where} has dtype {dtype.name}; use an integer, float or string")
    return tensor


# --- planning the analysis ----------------------------------------------------------------


def _pending_ancestors(tensor: Any, pending_ops: dict[str, str]) -> set[str]:
    """The analyzers whose placeholders ``tensor`` (or a dict of tensors) is computed from."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [part.op for part in import_tf().nest.flatten(tensor)]
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


@dataclasses.dataclass
class AnalysisPlan:
    """The analyzers in phases, and the traced function of phase 1's inputs when the plan's own
    trace computes exactly those (one phase), so it need not be traced again in this process."""

    phases: list[list[AnalyzerSpec]]
    first_phase: AnalysisFunction | None


def plan_analysis(preprocessing_fn: Callable, raw_features: dict[str, Any],
                  source: str = "preprocessing_fn") -> list[list[AnalyzerSpec]]:
    """Traces ``preprocessing_fn`` once and orders its analyzers into phases.

    An analyzer whose input depends on another analyzer's result runs one phase later.
    Also validates the outputs, so user errors surface before any data is read.
    """
    return trace_analysis(preprocessing_fn, raw_features, source).phases


def trace_analysis(preprocessing_fn: Callable, raw_features: dict[str, Any],
                   source: str = "preprocessing_fn") -> AnalysisPlan:
    """``plan_analysis``, keeping the traced function for phase 1 when there is one phase."""
    tf = import_tf()
    context = TraceContext("analyze", {})

    @tf.function(input_signature=[packed_signature(raw_features)], autograph=False)
    def analysis_inputs(packed):
        with tracing(context):
            normalize_outputs(call_user_fn(preprocessing_fn, unpack(packed, raw_features), source), source)
        return dict(context.inputs)

    concrete = analysis_inputs.get_concrete_function()
    phase_of: dict[str, int] = {}
    for spec in context.specs:
        depends = _pending_ancestors(context.inputs[spec.key], context.pending_ops)
        phase_of[spec.key] = 1 + max([phase_of[d] for d in depends], default=0)
    count = max(phase_of.values(), default=0)
    if count > MAX_PHASES:
        raise PreprocessingFnError(
            f"preprocessing_fn in {source} chains {count} analyzers one on another; at most {MAX_PHASES} are supported"
        )
    phases = [[s for s in context.specs if phase_of[s.key] == phase] for phase in range(1, count + 1)]
    first = AnalysisFunction.from_traced(concrete, raw_features, context) if count == 1 else None
    return AnalysisPlan(phases, first)


class AnalysisFunction:
    """The traced tf.function computing the inputs of ``keys`` from raw batches."""

    def __init__(self, preprocessing_fn: Callable, raw_features: dict[str, Any],
                 known_values: dict[str, Any], keys: list[str], source: str):
        tf = import_tf()
        self.raw_features = raw_features
        self.context = TraceContext("analyze", dict(known_values))
        context = self.context

        @tf.function(input_signature=[packed_signature(raw_features)], autograph=False)
        def analysis_inputs(packed):
            with tracing(context):
                call_user_fn(preprocessing_fn, unpack(packed, raw_features), source)
            missing = [k for k in keys if k not in context.inputs]
            if missing:
                raise PreprocessingFnError(
                    f"preprocessing_fn in {source} did not call analyzers {missing} again when traced once more"
                )
            return {k: context.inputs[k] for k in keys}

        self.function = analysis_inputs.get_concrete_function()
        self._packed = None
        self._consumed: set[str] | None = None

    @classmethod
    def from_traced(cls, function: Any, raw_features: dict[str, Any], context: TraceContext) -> AnalysisFunction:
        """One around a concrete function already traced (the plan's)."""
        made = cls.__new__(cls)
        made.raw_features, made.context, made.function = raw_features, context, function
        made._packed = None
        made._consumed = None
        return made

    def consumed_features(self) -> set[str]:
        """The raw features this phase's analyzer inputs depend on (the rows' other columns go unread)."""
        from sluice.components.tft.packed import consumed_features

        if self._consumed is None:  # the reader and the packing both ask: the graph is walked once
            self._consumed = consumed_features(self.function, self.raw_features)
        return self._consumed

    def warm(self, schema: Any) -> None:
        """Sets up the function for batches of ``schema`` before the first comes (``PackedFunction.warm``)."""
        self._packed_function().warm(schema)

    def _packed_function(self) -> Any:
        from sluice.components.tft.packed import PackedFunction

        if self._packed is None:  # made on first use: a Beam DoFn builds this object on a worker
            # Without grappler: an analysis graph runs as fast without it, and is prepared in half the time.
            self._packed = PackedFunction(self.function, self.raw_features, self.consumed_features(), packed_input=True,
                                          optimize=False)
        return self._packed

    def __call__(self, batch: Any) -> dict[str, Any]:
        import numpy as np

        outputs = self._packed_function()(batch)
        # np.asarray views the tensor's memory; .numpy() would copy it.
        return import_tf().nest.map_structure(np.asarray, outputs)
