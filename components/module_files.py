"""Users' module files (``module_file=`` of Transform and Trainer): imported once per content.

A module file's directory is importable while the module loads (and, through
:func:`module_directory_importable`, while its functions run), as in TFX: users keep helper
modules beside it (``import penguin_utils_base as base``). The helpers it imports are pickled
by value for Beam workers in other processes, and are part of the module's identity: a module
file is imported again when a helper beside it changes, as the cache key re-executes it
(:func:`module_directory_sources` is the rule both use).

Errors are one ``ComponentError`` line naming the file and, where there is one, the line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from sluice.components.errors import ComponentError

# What of a module file's directory counts as its code: its .py files and those of the packages
# below it, leaving out folders that hold no user code. At most MAX_DIRECTORY_SOURCES files.
SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "env"})
MAX_DIRECTORY_SOURCES = 500

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_ON_PATH: dict[str, int] = {}  # directory -> how many loads or runs need it on sys.path now


def module_directory_sources(path: str) -> list[str]:
    """The Python files that make up a module file's code: every ``.py`` in its directory and
    in the packages (folders with an ``__init__.py``) below it, sorted; hidden folders,
    ``__pycache__`` and virtual environments are skipped, and the list stops at
    ``MAX_DIRECTORY_SOURCES`` files."""
    top = os.path.dirname(os.path.abspath(path))
    found: list[str] = []
    for root, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS
                         and os.path.isfile(os.path.join(root, d, "__init__.py")))
        found.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".py") and not n.startswith("."))
        if len(found) >= MAX_DIRECTORY_SOURCES:
            return found[:MAX_DIRECTORY_SOURCES]
    return found


def _directory_digest(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for file in module_directory_sources(path):
        try:
            with open(file, "rb") as fh:
                digest.update(file.encode() + b"\0" + hashlib.file_digest(fh, "blake2b").digest())
        except OSError:
            continue
    return digest.hexdigest()


def user_code_line(exc: BaseException, path: str) -> int | None:
    """The line of the deepest traceback frame inside the user's file ``path``."""
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == os.path.abspath(path):
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(path):
            line = frame.lineno
    return line


@contextlib.contextmanager
def module_directory_importable(path: str) -> Iterator[None]:
    """The module file's directory on ``sys.path`` (first) for the duration.

    ``sys.path`` is replaced by a new list rather than changed in place, so a thread walking
    it meanwhile walks the list it started with.
    """
    directory = os.path.dirname(os.path.abspath(path))
    with _LOCKS_GUARD:
        _ON_PATH[directory] = _ON_PATH.get(directory, 0) + 1
        if directory not in sys.path:
            sys.path = [directory, *sys.path]
    try:
        yield
    finally:
        with _LOCKS_GUARD:
            _ON_PATH[directory] -= 1
            if not _ON_PATH[directory]:
                del _ON_PATH[directory]
                sys.path = [p for p in sys.path if p != directory]


def _helpers(path: str) -> list[types.ModuleType]:
    """Top-level modules imported from a module file's directory (its helpers)."""
    sources = {os.path.abspath(f) for f in module_directory_sources(path)}
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." in name or name.startswith("_") or name == "sluice" or not file:
            continue
        if os.path.abspath(file) in sources:
            found.append(module)
    return found


def _pickle_helpers_by_value(helpers: list[types.ModuleType]) -> None:
    """Beam workers in other processes get the helpers' code with the functions that use them."""
    if not helpers:
        return
    try:
        from apache_beam.internal.cloudpickle import cloudpickle

        for helper in helpers:
            cloudpickle.register_pickle_by_value(helper)
    except Exception:  # noqa: BLE001 - in-process runners unpickle by reference anyway
        pass


def load_module_file(path: str, owner: str) -> types.ModuleType:
    """Imports a user's module file once per content (its own and its directory's);
    errors are one line naming file and line.

    >>> # trainer_module = load_module_file("pipelines/taxi/model.py", "Trainer")
    """
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError as exc:
        raise ComponentError(f"{owner}: module file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ComponentError(f"{owner}: module file {path}: not UTF-8 text") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise ComponentError(f"{owner}: module file {path}, line {exc.lineno}: syntax error: {exc.msg}") from None
    identity = path + "\0" + source + "\0" + _directory_digest(path)
    name = "sluice_user_module_" + hashlib.sha256(identity.encode()).hexdigest()[:16]
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(name, threading.Lock())
    with lock:  # another thread loading the same file waits, rather than see it half-run
        module = sys.modules.get(name)
        if module is None:
            module = _run_module(name, path, code, owner)
    return module


def _run_module(name: str, path: str, code: types.CodeType, owner: str) -> types.ModuleType:
    for helper in _helpers(path):  # imported for an older version of this directory
        sys.modules.pop(helper.__name__, None)
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    try:
        with module_directory_importable(path):
            exec(code, module.__dict__)  # noqa: S102 - running the user's module is the point
    except Exception as exc:  # noqa: BLE001 - user code
        del sys.modules[name]
        line = user_code_line(exc, path)
        where = f", line {line}" if line else ""
        raise ComponentError(
            f"{owner}: module file {path}{where}: importing it failed: {type(exc).__name__}: {exc}"
        ) from None
    _pickle_helpers_by_value(_helpers(path))
    return module


def module_function(path: str, name: str, owner: str) -> Callable[..., Any]:
    """The function ``name`` of a user's module file; a one-line error when it is missing."""
    fn = getattr(load_module_file(path, owner), name, None)
    if not callable(fn):
        raise ComponentError(f"{owner}: module file {os.path.abspath(path)} defines no function '{name}'")
    return fn


def user_function(module_file: str | None, dotted: str | None, name: str, owner: str) -> tuple[Callable[..., Any], str]:
    """The user's function ``name`` and where it came from: from ``module_file``, or a dotted
    ``"package.module.function"`` (exactly one of the two, as TFX's components take them)."""
    if (module_file is None) == (dotted is None):
        raise ComponentError(f"{owner}: set exactly one of module_file or {name}")
    if module_file is not None:
        path = os.path.abspath(module_file)
        if not os.path.isfile(path):
            raise ComponentError(f"{owner}: module file {path} does not exist")
        return module_function(path, name, owner), path
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ComponentError(f"{owner}: {name} {dotted!r} must be 'module.function'")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - user code
        raise ComponentError(f"{owner}: {name} {dotted!r}: cannot import {module_name}: "
                             f"{type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ComponentError(f"{owner}: {name} {dotted!r}: {module_name} has no function {attr}")
    return fn, getattr(module, "__file__", None) or dotted
