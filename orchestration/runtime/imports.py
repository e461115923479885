"""Importing a component's heavy modules (its ``warm_imports``) ahead of its executor.

A runner imports them in the background while earlier components run, and then freezes
what they created (``objects.freeze_long_lived``). While importing, it hides the packages a
library imports only because they happen to be installed (``_OPTIONAL_FOR``): Keras imports
scikit-learn (``keras.wrappers``) and matplotlib (``keras.visualization``) on ``import
tensorflow`` if it finds them, and MLflow depends on both, so they are always there, though
no component needs them inside Keras; they cost each run memory and start-up time. Keras
treats them as optional. h5py is needed only to read and write ``.h5`` files: the modules
that import it eagerly get a stand-in that imports it on first use (``_IMPORTED_ON_USE``).
"""

from __future__ import annotations

import sys
import threading
import types

from sluice.orchestration.runtime.objects import freeze_long_lived

_OPTIONAL_FOR = {"tensorflow": ("sklearn", "matplotlib", "h5py"), "keras": ("sklearn", "matplotlib", "h5py")}
_IMPORTED_ON_USE = ("h5py",)

# Heavy imports running now (on any thread): ``heap.release_memory`` does not collect meanwhile.
_IMPORTS_IN_FLIGHT = 0
_IMPORTS_LOCK = threading.Lock()


class _HideWhileImporting:
    """A meta-path finder that makes ``names`` unimportable, on one thread only."""

    def __init__(self, names: tuple[str, ...]):
        self.names = set(names)
        self.thread = threading.get_ident()

    def find_spec(self, fullname, path=None, target=None):
        if threading.get_ident() == self.thread and fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


class _ImportOnUse(types.ModuleType):
    """Stands in for a module a library imported optionally (``h5py = None`` when missing):
    the real module is imported on first attribute use."""

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self.__name__), attribute)


def in_flight() -> int:
    """How many heavy imports are running now, on any thread."""
    return _IMPORTS_IN_FLIGHT


def import_heavy(modules: tuple[str, ...] | list[str]) -> None:
    """Imports a component's ``warm_imports``, leaving out what Keras imports only optionally.

    Other code importing scikit-learn, matplotlib or h5py meanwhile, or later, is unaffected;
    only Keras' own scikit-learn wrappers (``keras.wrappers.SKLearn*``) then report it missing.
    Keras' and TensorFlow's ``.h5`` saving and loading import h5py when first used.
    """
    import importlib

    global _IMPORTS_IN_FLIGHT
    for module in modules:
        if module in sys.modules:
            continue
        with _IMPORTS_LOCK:
            _IMPORTS_IN_FLIGHT += 1
        try:
            _import_leaving_out_optional(importlib, module)
        finally:
            with _IMPORTS_LOCK:
                _IMPORTS_IN_FLIGHT -= 1


def _import_leaving_out_optional(importlib, module: str) -> None:
    """Imports ``module`` with its ``_OPTIONAL_FOR`` packages hidden; see ``import_heavy``."""
    hidden = tuple(name for name in _OPTIONAL_FOR.get(module, ()) if name not in sys.modules)
    finder = _HideWhileImporting(hidden) if hidden else None
    before = set(sys.modules)
    if finder:
        sys.meta_path.insert(0, finder)
    try:
        importlib.import_module(module)
    finally:
        if finder:
            sys.meta_path.remove(finder)
    for name in (n for n in hidden if n in _IMPORTED_ON_USE):
        for imported in [sys.modules[m] for m in set(sys.modules) - before]:
            if getattr(imported, "__dict__", {}).get(name, ...) is None:  # ``try: import h5py`` failed there
                setattr(imported, name, _ImportOnUse(name))


def import_heavy_modules(modules: tuple[str, ...] | list[str]) -> None:
    """``import_heavy``, then freezes what the imports created (only when they imported something)."""
    if any(module not in sys.modules for module in modules):
        import_heavy(modules)
        freeze_long_lived()
