"""Users' module files (``module_file=`` of Transform and Trainer): imported once per content.

Errors are one ``ComponentError`` line naming the file and, where there is one, the line.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from sluice.components.errors import ComponentError


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


def load_module_file(path: str, owner: str) -> types.ModuleType:
    """Imports a user's module file once per content; errors are one line naming file and line.

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
    name = "sluice_user_module_" + hashlib.sha256((path + "\0" + source).encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module
        try:
            exec(code, module.__dict__)  # noqa: S102 - running the user's module is the point
        except Exception as exc:  # noqa: BLE001 - user code
            del sys.modules[name]
            line = user_code_line(exc, path)
            where = f", line {line}" if line else ""
            raise ComponentError(
                f"{owner}: module file {path}{where}: importing it failed: {type(exc).__name__}: {exc}"
            ) from None
    return module


def module_function(path: str, name: str, owner: str) -> Callable[..., Any]:
    """The function ``name`` of a user's module file; a one-line error when it is missing."""
    fn = getattr(load_module_file(path, owner), name, None)
    if not callable(fn):
        raise ComponentError(f"{owner}: module file {os.path.abspath(path)} defines no function '{name}'")
    return fn
