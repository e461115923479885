"""The component SDK: a component is a plain typed Python function.

Its signature declares everything: ``Input[T]`` parameters are input
artifacts, ``Output[T]`` parameters are output artifacts, any other typed
parameter is a parameter, validated when the pipeline is defined. A parameter
typed ``ExecutionContext`` receives the run's context (Beam options, metrics).
``Input[T] | V`` (e.g. the Trainer's ``hyperparameters: Input[HyperParameters] | dict``)
takes either a channel of ``T`` or a value of type ``V``; the executor gets the artifact
or the value.

A custom component, and how it is tested without any orchestrator::

    from sluice.components.artifacts import Examples
    from sluice.components.sdk import Input, Output, component

    def count_rows(examples: Input[Examples], counted: Output[Examples],
                   min_rows: int = 1) -> None:
        '''Copies examples and checks there are at least ``min_rows``.'''
        ...

    CountRows = component(count_rows)      # or use @component on the def

    # Unit test: call the plain function with artifacts.
    count_rows(examples=Examples(uri=src), counted=Examples(uri=dst), min_rows=5)

    # In a pipeline: wire channels, set parameters (validated now).
    node = CountRows(examples=example_gen.outputs["examples"], min_rows=5)
    node.outputs["counted"]        # a Channel for downstream components

This module imports nothing heavy: no TensorFlow, Beam or MLflow at import time.
It is the SDK's public face; beside it, ``errors`` (the two one-line errors),
``module_files`` (users' module files) and ``nodes`` (nodes and channels).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Union

from sluice.components.artifacts import Artifact
from sluice.components.errors import ComponentError, DefinitionError
from sluice.components.module_files import (
    load_module_file,
    module_directory_importable,
    module_function,
    user_code_line,
    user_function,
)
from sluice.components.nodes import Channel, Node, validate_id

__all__ = [
    "ArtifactSpec", "Channel", "Component", "ComponentError", "DefinitionError", "ExecutionContext", "ExternalData",
    "Input", "ModuleFile", "ModuleFunction", "Node", "Output", "ParameterSpec", "component", "load_module_file",
    "module_directory_importable", "module_function", "user_code_line", "user_function", "validate_id",
]


# --- signature markers -------------------------------------------------------


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


_INPUT = _Marker("Input")
_OUTPUT = _Marker("Output")
_MODULE_FILE = _Marker("ModuleFile")
_EXTERNAL_DATA = _Marker("ExternalData")
_MODULE_FUNCTION = _Marker("ModuleFunction")


class Input:
    """``Input[Examples]``: an input artifact of that type."""

    def __class_getitem__(cls, artifact_type: type[Artifact]):
        return Annotated[artifact_type, _INPUT]


class Output:
    """``Output[Model]``: an output artifact of that type, written by the function."""

    def __class_getitem__(cls, artifact_type: type[Artifact]):
        return Annotated[artifact_type, _OUTPUT]


# A parameter holding the path of a user module file. Its contents are part of
# the cache key, so editing the file invalidates the cache.
ModuleFile = Annotated[str, _MODULE_FILE]

# A parameter naming data outside the pipeline (a file, folder or pattern).
# The content of what it names is part of the cache key.
ExternalData = Annotated[str, _EXTERNAL_DATA]

# A parameter naming a user's function as ``"package.module.function"`` (TFX's ``run_fn=``).
# The code of its top-level package (unless installed in site-packages) is part of the cache key.
ModuleFunction = Annotated[str, _MODULE_FUNCTION]


# --- the execution context ---------------------------------------------------


# Runner names that mean Beam's in-process FnApiRunner here (the DirectRunner's batch engine).
IN_PROCESS_RUNNERS = ("DirectRunner", "direct", "FnApiRunner")


@dataclasses.dataclass
class ExecutionContext:
    """What a running component may know about its run.

    A component asks for it by declaring a parameter typed ``ExecutionContext``.
    Unit tests can pass ``ExecutionContext()``.
    """

    pipeline_name: str = "test"
    component_id: str = "test"
    execution_id: str = "test"
    beam_pipeline_args: list[str] = dataclasses.field(default_factory=list)
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    pipeline_root: str = ""
    # Where this execution's MLflow artifacts go, under the pipeline root; set by the runner.
    artifact_uri: str | None = None
    # Queries the metadata store, e.g. for the latest blessed model; set by the runner.
    lookup: Any = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    blocked: str = ""  # set by ``block``: why the components downstream do not run
    _step: int = 0

    def block(self, reason: str) -> None:
        """Publishes this execution's outputs but stops every component downstream of it: the run
        ends failed with ``reason`` (its first line a summary; a short block of lines may follow).
        A gate (anomalies, say) uses it so that its report exists exactly when it blocks."""
        self.blocked = reason

    def log_metric(self, name: str, value: float) -> None:
        """Records a metric of this execution (stored on its metadata record)."""
        self.metrics[name] = float(value)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.log_metric(name, value)

    def log_artifacts(self, local_dir: str, artifact_path: str) -> str:
        """Copies ``local_dir`` into this execution's MLflow artifacts, under ``artifact_path``.

        Returns the copy's URI. A local ``artifact_uri`` (the runner's choice, inside the
        pipeline root) is written directly; otherwise MLflow's location for the run is used.
        """
        from mlflow.tracking import MlflowClient

        if self.artifact_uri and self.artifact_uri.startswith("file:"):
            from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

            LocalArtifactRepository(self.artifact_uri).log_artifacts(local_dir, artifact_path)
            base = self.artifact_uri
        else:
            client = MlflowClient(self.tracking_uri)
            client.log_artifacts(self.mlflow_run_id, local_dir, artifact_path)
            base = self.artifact_uri or client.get_run(self.mlflow_run_id).info.artifact_uri
        return base.rstrip("/") + "/" + artifact_path

    def process_command(self, entry: str, warm_imports: tuple[str, ...] = ()) -> list[str]:
        """A command line running ``entry`` (``"package.module:function"``, called with the
        arguments appended to the command; it returns the exit status) in a new process.

        Runners prepare that process as their own (heap, the workarounds ``warm_imports``
        need); without a runner it is a plain interpreter.
        """
        module, function = entry.split(":")
        code = f"import sys; from {module} import {function}; sys.exit({function}(sys.argv[1:]))"
        return [sys.executable, "-c", code]

    def run_workers(self, entry: str, request: dict[str, Any], count: int,
                    warm_imports: tuple[str, ...] = ()) -> list:
        """Runs ``entry`` in ``count`` workers forming one TensorFlow cluster (TF_CONFIG in each
        worker's environment), each called with ``[REQUEST.json, RESULT.json]``; returns their
        ``WorkerResult``s in index order. Local processes on loopback, unless the runner launches
        workers its own way (Kubeflow: a TFJob); see ``worker_processes``."""
        from sluice.components import worker_processes

        return worker_processes.launch(self, entry, request, count, tuple(warm_imports))

    @property
    def beam_default_runner(self) -> bool:
        """True when the pipeline gives no Beam option but the in-process runner.

        A component may then do small work in this process without a Beam pipeline (the
        same code its Beam transforms run); any other option (a runner, workers, bundle
        replays) asks for a real pipeline.
        """
        return all(arg in {f"--runner={name}" for name in IN_PROCESS_RUNNERS} for arg in self.beam_pipeline_args)

    def beam_pipeline(self):
        """A Beam pipeline built from the pipeline's ``beam_pipeline_args``.

        Without ``--runner`` (or with ``--runner=DirectRunner``) it runs
        in-process on the FnApiRunner, which is what DirectRunner uses for batch
        work. The plain DirectRunner would first try Prism, which downloads a
        binary at run time. Every other option passes through unchanged.
        """
        from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

        options = PipelineOptions(self.beam_pipeline_args)
        runner_name = options.view_as(StandardOptions).runner
        pipeline_class = _one_line_pipeline_class()
        if runner_name is None or runner_name in IN_PROCESS_RUNNERS:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            return pipeline_class(runner=FnApiRunner(), options=options)
        return pipeline_class(options=options)


def worker_error_line(exc: BaseException) -> str | None:
    """The one line of a ComponentError raised in a Beam worker process: runners hand it back as
    text (a traceback inside a RuntimeError). None when ``exc`` holds none."""
    import re

    found = re.search(r"(?m)^[\w.]*ComponentError: (.+)$", str(exc))
    return found.group(1).strip() if found else None


@functools.cache
def _one_line_pipeline_class():
    import apache_beam as beam

    class OneLineErrorsPipeline(beam.Pipeline):
        """A Beam pipeline whose ``with`` block raises a worker's ComponentError as its one line,
        whichever runner and process it came from."""

        def __exit__(self, exc_type, exc_val, exc_tb):
            try:
                return super().__exit__(exc_type, exc_val, exc_tb)
            except ComponentError:
                raise
            except Exception as exc:
                line = worker_error_line(exc)
                if line is None:
                    raise
                raise ComponentError(line) from None

    return OneLineErrorsPipeline


# --- component specs ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ArtifactSpec:
    name: str
    type: type[Artifact]
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty
    kind: str = "value"  # "value", "module_file", "module_function" or "external_data"

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def validate(self, value: Any, owner: str) -> Any:
        """Checks ``value`` against the annotation; returns it in canonical form."""
        import pydantic

        if value is None and not self.required and self.default is None:
            return None
        try:
            adapter = pydantic.TypeAdapter(self.annotation)
            return adapter.validate_python(value, strict=True)
        except pydantic.ValidationError as exc:
            problem = exc.errors()[0]
            where = "".join(f"[{p!r}]" for p in problem.get("loc", ()))
            raise DefinitionError(
                f"{owner}: parameter '{self.name}'{where} expects "
                f"{type_label(self.annotation)}, got {type(value).__name__} {value!r}: "
                f"{problem['msg']}"
            ) from None
        except pydantic.PydanticSchemaGenerationError:
            raise DefinitionError(
                f"{owner}: parameter '{self.name}' has an annotation Sluice cannot "
                f"validate: {self.annotation!r}"
            ) from None

    def to_json(self, value: Any) -> Any:
        """The plain-JSON form of a validated value (for the IR and the store)."""
        import pydantic

        return pydantic.TypeAdapter(self.annotation).dump_python(value, mode="json")


def type_label(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _input_or_value(annotation: Any) -> tuple[type[Artifact], Any] | None:
    """``(T, V)`` for an annotation ``Input[T] | V`` (V one type or a union), else None."""
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return None
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    inputs = [m for m in members if _marker_of(m)[1] is _INPUT]
    values = [m for m in members if _marker_of(m)[1] is None]
    if len(inputs) != 1 or not values or len(inputs) + len(values) != len(members):
        return None
    artifact_type = _marker_of(inputs[0])[0]
    if not (isinstance(artifact_type, type) and issubclass(artifact_type, Artifact)):
        return None
    return artifact_type, functools.reduce(lambda a, b: a | b, values)


def _marker_of(annotation: Any) -> tuple[Any, _Marker | None]:
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, _Marker):
                return base, extra
    return annotation, None


# Components defined inside functions (e.g. in tests), by module:qualname:name.
LOCAL_COMPONENTS: dict[str, Component] = {}


class Component:
    """A component type built from a typed function; calling it makes a pipeline node.

    ``name`` is the component type (and the default node id); ``version`` is
    mixed into cache keys together with a hash of the function's module source.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, version: str = "1",
                 warm_imports: tuple[str, ...] = (), workers_parameter: str | None = None,
                 remote_io: bool = False, remote_inputs: tuple[str, ...] = ()):
        self.fn = fn
        self.name = name or fn.__name__
        self.version = version
        # Heavy modules the executor imports (e.g. "tensorflow"): a runner may import
        # them in the background while earlier components run.
        self.warm_imports = tuple(warm_imports)
        # The parameter holding how many workers the executor starts with ``ctx.run_workers``
        # (e.g. the Trainer's "num_workers"): a compiler may prepare the task to launch them.
        self.workers_parameter = workers_parameter
        # The executor reads and writes artifacts by URI (``sluice.components.io``), object stores
        # included: a runner whose Beam workers do not share its disk hands it the store's URIs.
        self.remote_io = remote_io
        # Inputs the executor reads by URI on any runner (the Pusher's one-row input example):
        # a remote root hands them over as they are, rather than downloading them first.
        self.remote_inputs = tuple(remote_inputs)
        self.inputs: dict[str, ArtifactSpec] = {}
        self.outputs: dict[str, ArtifactSpec] = {}
        self.parameters: dict[str, ParameterSpec] = {}
        self.context_parameter: str | None = None
        self._parse_signature()
        unknown = [name for name in self.remote_inputs if name not in self.inputs]
        if unknown:
            raise DefinitionError(f"component {self.name}: remote_inputs names no input: {', '.join(unknown)}")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        if "<locals>" in fn.__qualname__:
            # Not importable by name: the in-process runner finds it here.
            LOCAL_COMPONENTS[f"{fn.__module__}:{fn.__qualname__}:{self.name}"] = self

    def _parse_signature(self) -> None:
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception as exc:  # an unresolvable annotation
            raise DefinitionError(f"component {self.name}: cannot read its type hints: {exc}") from None
        for pname, param in inspect.signature(self.fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(f"component {self.name}: *args/**kwargs are not allowed ({pname})")
            if pname not in hints:
                raise DefinitionError(f"component {self.name}: parameter '{pname}' needs a type annotation")
            annotation = hints[pname]
            if annotation is ExecutionContext:
                self.context_parameter = pname
                continue
            inner, optional = _unwrap_optional(annotation)
            either = _input_or_value(inner)
            if either is not None:  # Input[T] | V: a channel or a value
                artifact_type, value_annotation = either
                self.inputs[pname] = ArtifactSpec(pname, artifact_type, True)
                self.parameters[pname] = ParameterSpec(pname, value_annotation | None, param.default, "value")
                continue
            base, marker = _marker_of(inner)
            if marker in (_INPUT, _OUTPUT):
                if not (isinstance(base, type) and issubclass(base, Artifact)):
                    raise DefinitionError(
                        f"component {self.name}: {marker.name}[...] of '{pname}' must be an artifact type"
                    )
                spec = ArtifactSpec(pname, base, optional or param.default is None)
                (self.inputs if marker is _INPUT else self.outputs)[pname] = spec
                continue
            kind = {_MODULE_FILE: "module_file", _EXTERNAL_DATA: "external_data",
                    _MODULE_FUNCTION: "module_function"}.get(marker, "value")
            if marker is not None:  # ModuleFile / ExternalData / ModuleFunction: validate as the plain type
                annotation = base | None if optional else base
            self.parameters[pname] = ParameterSpec(pname, annotation, param.default, kind)

    @property
    def code_version(self) -> str:
        """``version`` plus a hash of the code the executor runs.

        For Sluice's own components that is every module of ``sluice.components``: an
        executor spreads over its package and the shared engines it imports. For other
        components it is the source file defining the function.
        """
        if self.fn.__module__.startswith(_BUILTIN_PREFIX):
            return f"{self.version}:{source_tree_digest(os.path.dirname(os.path.abspath(__file__)))}"
        module = sys.modules.get(self.fn.__module__)
        try:
            source = inspect.getsource(module) if module else inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = self.fn.__qualname__
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        return f"{self.version}:{digest}"

    @property
    def reference(self) -> dict[str, str]:
        """Where the runner finds the function again (module, qualname, source file)."""
        return {
            "module": self.fn.__module__,
            "qualname": self.fn.__qualname__,
            "file": inspect.getsourcefile(self.fn) or "",
        }

    def __call__(self, *, id: str | None = None, **kwargs: Any) -> Node:  # noqa: A002
        return Node(self, self.name if id is None else id, kwargs)

    def __repr__(self) -> str:
        return f"<component {self.name}>"


_BUILTIN_PREFIX = __name__.rpartition(".")[0] + "."  # "sluice.components."


@functools.cache
def source_tree_digest(root: str) -> str:
    """A hash of every ``.py`` file under ``root`` (relative paths and contents), once per process."""
    digest = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def component(fn: Callable[..., Any] | None = None, *, name: str | None = None, version: str = "1",
              warm_imports: tuple[str, ...] = (), workers_parameter: str | None = None, remote_io: bool = False,
              remote_inputs: tuple[str, ...] = ()):
    """Turns a typed function into a component (usable bare or as ``@component(...)``)."""
    options = dict(name=name, version=version, warm_imports=warm_imports, workers_parameter=workers_parameter,
                   remote_io=remote_io, remote_inputs=remote_inputs)
    if fn is None:
        return lambda f: Component(f, **options)
    return Component(fn, **options)


# --- nodes and channels ------------------------------------------------------
