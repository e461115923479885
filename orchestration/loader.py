"""Finding a pipeline definition and building it from ``--param`` values.

``PIPELINE`` is either the name of an example shipped in ``sluice.pipelines``
(``penguin`` loads ``sluice/pipelines/penguin/pipeline.py``) or the path of a
``.py`` file. The module must define ``create_pipeline(**params) -> Pipeline``.

A file inside a package of the user's (``pipelines/my_pipe.py`` beside
``pipelines/__init__.py``) is imported by its dotted name from the package's root,
which goes on ``sys.path``, so ``from pipelines.common import X`` works there with
or without ``PYTHONPATH=.``; a lone file is imported as a script is, its folder on
``sys.path``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Any

from sluice.components.sdk import DefinitionError, user_code_line
from sluice.orchestration.pipeline import Pipeline

PIPELINES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines")


class PipelineLoadError(DefinitionError):
    """The pipeline file is missing, broken or does not build a pipeline."""


def pipeline_file(spec: str) -> str:
    """The .py file that ``spec`` names."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise PipelineLoadError(f"{spec}: pipeline file does not exist")
        return path
    path = os.path.join(PIPELINES_DIR, spec, "pipeline.py")
    if not os.path.isfile(path):
        known = sorted(
            d for d in os.listdir(PIPELINES_DIR)
            if os.path.isfile(os.path.join(PIPELINES_DIR, d, "pipeline.py"))
        ) if os.path.isdir(PIPELINES_DIR) else []
        raise PipelineLoadError(
            f"{spec}: no such pipeline (examples: {', '.join(known) or 'none'}; or give a path to a .py file)"
        )
    return path


def _module_name(path: str) -> str:
    if os.path.dirname(os.path.dirname(path)) == PIPELINES_DIR:
        return f"sluice.pipelines.{os.path.basename(os.path.dirname(path))}.pipeline"
    root, dotted = _package_root(path)
    if dotted:
        _put_on_path(root)
        return dotted
    _put_on_path(os.path.dirname(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"sluice_user_pipeline_{stem}"


def _package_root(path: str) -> tuple[str, str | None]:
    """The folder above the outermost package holding ``path``, and the module's dotted name."""
    folder, parts = os.path.dirname(path), [os.path.splitext(os.path.basename(path))[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parts.insert(0, os.path.basename(folder))
        folder = os.path.dirname(folder)
    if len(parts) == 1 or not all(p.isidentifier() for p in parts):
        return folder, None
    return folder, ".".join(parts)


def _put_on_path(folder: str) -> None:
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _where(path: str, exc: BaseException) -> str:
    """``file:line`` of the deepest frame in ``path`` (or the syntax error's line)."""
    line = user_code_line(exc, path)
    return f"{path}:{line}" if line else path


def _exit_message(exc: SystemExit) -> str:
    return f"sys.exit({exc.code!r})" if exc.code is not None else "sys.exit()"


def load_module(spec: str) -> ModuleType:
    path = pipeline_file(spec)
    name = _module_name(path)
    if "." in name:
        try:
            return importlib.import_module(name)
        except DefinitionError:
            raise
        except SystemExit as exc:  # a module that exits would end the CLI without a word
            raise PipelineLoadError(f"{_where(path, exc)}: the module called {_exit_message(exc)} "
                                    f"while being imported") from None
        except Exception as exc:
            raise PipelineLoadError(f"{_where(path, exc)}: {type(exc).__name__}: {exc}") from exc
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise PipelineLoadError(f"{_where(path, exc)}: {exc}") from exc
    except SystemExit as exc:
        del sys.modules[name]
        raise PipelineLoadError(f"{_where(path, exc)}: the module called {_exit_message(exc)} "
                                f"while being imported") from None
    except Exception as exc:
        del sys.modules[name]
        raise PipelineLoadError(f"{_where(path, exc)}: {type(exc).__name__}: {exc}") from exc
    return module


def parse_params(create_pipeline: Any, raw: list[str], source: str) -> dict[str, Any]:
    """``["rows=10", ...]`` -> typed keyword arguments of ``create_pipeline``."""
    import pydantic

    signature = inspect.signature(create_pipeline)
    accepted = {n: p for n, p in signature.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    values: dict[str, Any] = {}
    for item in raw:
        if "=" not in item:
            raise PipelineLoadError(f"--param {item!r}: expected NAME=VALUE")
        name, text = item.split("=", 1)
        if name not in accepted:
            raise PipelineLoadError(
                f"--param {name}: unknown parameter of {source} (valid: {', '.join(accepted) or 'none'})"
            )
        annotation = accepted[name].annotation
        if annotation is inspect.Parameter.empty:
            values[name] = text
            continue
        try:
            values[name] = pydantic.TypeAdapter(annotation).validate_strings(text)
        except pydantic.ValidationError:
            try:
                values[name] = pydantic.TypeAdapter(annotation).validate_json(text)
            except pydantic.ValidationError as exc:
                msg = exc.errors()[0]["msg"]
                raise PipelineLoadError(f"--param {name}={text!r}: {msg}") from None
    return values


def build_pipeline(spec: str, raw_params: list[str] | None = None, pipeline_root: str | None = None) -> Pipeline:
    """Loads ``spec`` and calls its ``create_pipeline`` with the given ``--param`` values.

    ``pipeline_root`` is the one root of the run (the CLI's ``--pipeline-root``): it is
    handed to ``create_pipeline`` when that takes a ``pipeline_root`` parameter, so that
    what the pipeline places under its root by default (Pusher's serving folder) follows
    it, and it becomes the built pipeline's root either way.
    """
    module = load_module(spec)
    path = os.path.abspath(module.__file__)
    create = getattr(module, "create_pipeline", None)
    if not callable(create):
        raise PipelineLoadError(f"{path}: defines no create_pipeline(**params) function")
    params = parse_params(create, raw_params or [], path)
    root = _one_root(create, params, pipeline_root)
    try:
        pipeline = create(**params)
    except DefinitionError as exc:
        # Name the line of create_pipeline that built the bad node, too.
        raise PipelineLoadError(f"{_where(path, exc)}: {exc}") from exc
    except SystemExit as exc:
        raise PipelineLoadError(f"{_where(path, exc)}: create_pipeline called {_exit_message(exc)}") from None
    except Exception as exc:
        raise PipelineLoadError(f"{_where(path, exc)}: create_pipeline raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(pipeline, Pipeline):
        raise PipelineLoadError(f"{path}: create_pipeline returned {type(pipeline).__name__}, not a Pipeline")
    if root is not None:
        pipeline.pipeline_root = root
    pipeline.parameters = {**_defaults(create), **params, **pipeline.parameters}
    return pipeline


def _one_root(create: Any, params: dict[str, Any], pipeline_root: str | None) -> str | None:
    """The run's root: ``pipeline_root`` (also passed to ``create_pipeline`` when it takes one).

    ``--param pipeline_root=`` is the same setting spelled otherwise: it must agree.
    """
    given = params.get("pipeline_root")
    if pipeline_root is None:
        return given if isinstance(given, str) and given else None
    if given is not None and _same_path(str(given), pipeline_root) is False:
        raise PipelineLoadError(f"--param pipeline_root={given} disagrees with the pipeline root {pipeline_root}: "
                                f"give the root once, with --pipeline-root")
    if "pipeline_root" in inspect.signature(create).parameters:
        params["pipeline_root"] = pipeline_root
    return pipeline_root


def _same_path(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(a) == os.path.abspath(b)


def _defaults(fn: Any) -> dict[str, Any]:
    return {
        n: p.default for n, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
