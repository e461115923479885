"""Importing a component's heavy modules (its ``warm_imports``) ahead of its executor.

A runner imports them in the background while earlier components run, and then freezes
what they created (``objects.freeze_long_lived``). While importing, it hides the packages a
library imports only because they happen to be installed (``_OPTIONAL_FOR``): Keras imports
scikit-learn (``keras.wrappers``) and matplotlib (``keras.visualization``) on ``import
tensorflow`` if it finds them, and MLflow depends on both, so they are always there, though
no component needs them inside Keras; they cost each run memory and start-up time. Keras
treats them as optional. h5py is needed only to read and write ``.h5`` files: the modules
that import it eagerly get a stand-in that imports it on first use (``_IMPORTED_ON_USE``).

While a background import is in flight, other threads wait for it rather than import the
same package beside it (``_WaitForInFlight``). Two threads importing TensorFlow at once take
its modules' locks in different orders; Python then breaks the deadlock by handing one of
them a half-initialised module (``module 'tensorflow.python.data.ops.dataset_ops' has no
attribute 'DatasetV2'``, seen when a module file imports ``keras_tuner`` first). A module
already in ``sys.modules`` counts as imported only once its import is over: ``import_heavy``
waits for an in-flight import of the same module, and the finder makes another thread's
import of the package, or of a package in its family (``_FAMILY``: Keras, keras-tuner,
TensorBoard, tfx-bsl, tensorflow-* for TensorFlow), wait until it is done.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types

from sluice.orchestration.runtime.objects import freeze_long_lived

_OPTIONAL_FOR = {"tensorflow": ("sklearn", "matplotlib", "h5py"), "keras": ("sklearn", "matplotlib", "h5py")}
_IMPORTED_ON_USE = ("h5py",)
# What imports through a heavy module (top-level names; "*" ends a prefix): while it is in
# flight, another thread importing any of these waits for it.
_FAMILY = {"tensorflow": ("tensorflow*", "keras*", "tf_keras", "tensorboard*", "tfx_bsl")}
# How often a waiting import checks that the import it waits for is not waiting for it.
_POLL_SECONDS = 0.05

# Heavy imports running now (on any thread): ``heap.release_memory`` does not collect meanwhile.
_IMPORTS_IN_FLIGHT = 0
_IMPORTS_LOCK = threading.Lock()


@dataclasses.dataclass
class _InFlight:
    thread: int                   # the thread importing it
    family: tuple[str, ...]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


_IN_FLIGHT: dict[str, _InFlight] = {}


def _in_family(top: str, family: tuple[str, ...]) -> bool:
    return any(top.startswith(name[:-1]) if name.endswith("*") else top == name for name in family)


def _import_locks_supported() -> bool:
    """Whether importlib records which module lock each thread waits on as CPython 3.11-3.13 do."""
    import importlib._bootstrap as bootstrap

    return (3, 11) <= sys.version_info[:2] <= (3, 13) and hasattr(bootstrap, "_blocking_on")


def _waits_on(thread: int, me: int) -> bool:
    """Whether ``thread`` waits, directly or through other threads, on a module lock ``me`` holds."""
    import importlib._bootstrap as bootstrap

    seen = set()
    while thread not in seen:
        seen.add(thread)
        locks = bootstrap._blocking_on.get(thread)  # 3.11: a lock; 3.12+: a list of locks
        if not locks:
            return False
        owners = [getattr(lock, "owner", None) for lock in (locks if isinstance(locks, list) else [locks])]
        if me in owners:
            return True
        thread = owners[-1]
    return False


class _WaitForInFlight:
    """A meta-path finder: another thread's import of an in-flight heavy module's family waits for it.

    Finders run under Python's global import lock, so the wait happens in the loader instead
    (``_WaitThenLoad``), which holds only the module's own lock. Installed once, at the first
    heavy import, and never removed (removing a finder while another thread walks
    ``sys.meta_path`` could make it skip one); with nothing in flight it returns at once.
    """

    def find_spec(self, fullname, path=None, target=None):
        if not _IN_FLIGHT:
            return None
        me, top = threading.get_ident(), fullname.partition(".")[0]
        flights = [f for f in list(_IN_FLIGHT.values()) if f.thread != me and _in_family(top, f.family)]
        if not flights:
            return None
        for finder in sys.meta_path:  # the spec the other finders give, loaded once the import is done
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _WaitThenLoad(spec.loader, flights)
                return spec
        return None


class _WaitThenLoad:
    """Waits for the in-flight imports, then hands the module back to its own loader.

    ``importlib`` creates a module with ``spec.loader.create_module`` and only then records
    ``spec.loader`` as the module's ``__loader__`` and calls its ``exec_module``: the real
    loader is put back into the spec before either. The wait holds this module's import
    lock; should the importing thread come to need it, the wait stops and the import goes
    on as it would without this loader (which thread waits on which module lock is read from
    importlib's own record, on the CPython versions whose record this reads:
    ``_import_locks_supported``; elsewhere the finder is not installed).
    """

    def __init__(self, loader, flights: list[_InFlight]):
        self.loader, self.flights = loader, flights

    def create_module(self, spec):
        me = threading.get_ident()
        for flight in self.flights:
            while not flight.done.wait(_POLL_SECONDS) and not _waits_on(flight.thread, me):
                pass
        spec.loader = self.loader
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create else None

    def exec_module(self, module):
        return self.loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


_FINDER = _WaitForInFlight()


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


def warm_order(modules: set[str] | list[str]) -> list[str]:
    """``modules`` in the order a runner warms them: a package another one imports only optionally
    (matplotlib for TensorFlow) after it, so that one's import still leaves it out."""
    optional = {name for names in _OPTIONAL_FOR.values() for name in names}
    return sorted(modules, key=lambda module: (module.split(".")[0] in optional, module))


def import_heavy(modules: tuple[str, ...] | list[str]) -> bool:
    """Imports a component's ``warm_imports``, leaving out what Keras imports only optionally.

    Other code importing scikit-learn, matplotlib or h5py meanwhile, or later, is unaffected;
    only Keras' own scikit-learn wrappers (``keras.wrappers.SKLearn*``) then report it missing.
    Keras' and TensorFlow's ``.h5`` saving and loading import h5py when first used.
    A module another thread is importing now is waited for. Returns whether this call
    imported anything.
    """
    import importlib

    global _IMPORTS_IN_FLIGHT
    imported = False
    for module in modules:
        flight = _begin(module)
        if flight is None:
            continue
        try:
            _import_leaving_out_optional(importlib, module)
            imported = True
        finally:
            with _IMPORTS_LOCK:
                _IMPORTS_IN_FLIGHT -= 1
                del _IN_FLIGHT[module]
            flight.done.set()
    return imported


def _begin(module: str) -> _InFlight | None:
    """Registers this thread's import of ``module``; None (after waiting, if another thread
    is importing it now) when there is nothing left to import."""
    global _IMPORTS_IN_FLIGHT
    me = threading.get_ident()
    with _IMPORTS_LOCK:
        flight = _IN_FLIGHT.get(module)
        if flight is None:
            if module in sys.modules:
                return None
            flight = _IN_FLIGHT[module] = _InFlight(me, _FAMILY.get(module, (module,)))
            _IMPORTS_IN_FLIGHT += 1
            if _FINDER not in sys.meta_path and _import_locks_supported():
                sys.meta_path.insert(0, _FINDER)
            return flight
    if flight.thread != me:
        flight.done.wait()  # no import lock is held here: this cannot deadlock
    return None


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
    if any(module not in sys.modules or module in _IN_FLIGHT for module in modules) and import_heavy(modules):
        freeze_long_lived()
