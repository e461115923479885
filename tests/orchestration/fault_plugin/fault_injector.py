"""Kills the process at a chosen point of one component's execution (see the package docstring)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from sluice.orchestration.hooks import RunHooks


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultHooks(RunHooks):
    """Kills the process where ``fault`` (``<component_id>:<point>``) says."""

    def __init__(self, fault: str, watch_dirs: list[str]):
        self.fault = fault
        self.watch_dirs = watch_dirs
        self._watches: dict[str, FaultWatch] = {}

    def _point(self, node_id: str, point: str) -> None:
        if self.fault == f"{node_id}:{point}":
            _kill()

    def before_executor(self, node_id: str, output_dirs: list[str]) -> None:
        self._point(node_id, "before_executor")
        prefix = f"{node_id}:after_call="
        if self.fault.startswith(prefix):
            kill_after_call(self.fault[len(prefix):])
        watch = FaultWatch(self.fault, node_id, output_dirs, self.watch_dirs)
        self._watches[node_id] = watch
        watch.start()

    def after_executor(self, node_id: str, error: BaseException | None) -> None:
        watch = self._watches.pop(node_id, None)
        if watch is not None:
            watch.stop(succeeded=error is None)
        if error is None:
            self._point(node_id, "after_executor")

    def during_publish(self, node_id: str, output: str) -> None:
        self._point(node_id, "during_publish")


def kill_after_call(target: str) -> None:
    """SIGKILLs the process when ``<module>:<function>`` (or ``<module>:<Class>.<method>``) returns.

    Patched when the chosen component's executor starts, so only its own call is hit: a step
    boundary inside a component (e.g. the Pusher's rename) without the component knowing.
    """
    import functools
    import importlib

    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    @functools.wraps(original)
    def then_kill(*args, **kwargs):
        result = original(*args, **kwargs)
        _kill()
        return result

    setattr(owner, name, then_kill)


class FaultWatch:
    """Kills *inside* an executor, without touching component code.

    ``<component_id>:after_seconds=<s>`` SIGKILLs the process ``s`` seconds into the executor;
    ``<component_id>:after_writes=<n>`` when the ``n``-th file is created in its temporary
    output folders (plus the watched folders, counting only new files there).

    Files Python opens for writing are counted synchronously by an audit hook
    (the kill comes as the n-th one is opened, so it is truly mid-write); files
    written by native code (Arrow, TensorFlow) by a thread polling the folders.
    The count is checked once more when the executor returns, so a kill at a
    reachable count always happens, at the latest just after the executor.
    """

    POLL_SECONDS = 0.002
    _active: set[FaultWatch] = set()
    _hooked = False

    def __init__(self, fault: str, node_id: str, tmp_dirs: list[str], watch_dirs: list[str]):
        self.seconds: float | None = None
        self.writes: int | None = None
        prefix = f"{node_id}:"
        if fault.startswith(prefix):
            point = fault[len(prefix):]
            if point.startswith("after_seconds="):
                self.seconds = float(point.split("=", 1)[1])
            elif point.startswith("after_writes="):
                self.writes = int(point.split("=", 1)[1])
        self.tmp_dirs = [os.path.abspath(d) for d in tmp_dirs]
        self.extra_dirs = [os.path.abspath(d) for d in watch_dirs]
        self._before: set[str] = set()
        self._opened: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _files(folder: str) -> set[str]:
        found = set()
        for base, _, names in os.walk(folder):
            found.update(os.path.join(base, n) for n in names)
        return found

    def _created(self) -> set[str]:
        files = set().union(*(self._files(d) for d in self.tmp_dirs))
        for folder in self.extra_dirs:
            files |= self._files(folder) - self._before
        return files

    def _count(self) -> int:
        return len(self._created() | self._opened)

    @classmethod
    def _audit(cls, event: str, args: tuple) -> None:
        if event != "open" or not cls._active:
            return
        path, _, flags = args
        if not isinstance(path, (str, bytes)) or not isinstance(flags, int) or not flags & (os.O_WRONLY | os.O_RDWR):
            return
        path = os.path.abspath(os.fsdecode(path))
        for watch in list(cls._active):
            if path in watch._before or not any(path.startswith(d + os.sep) for d in watch.tmp_dirs + watch.extra_dirs):
                continue
            watch._opened.add(path)
            if len(watch._opened) >= watch.writes:
                _kill()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self._count() >= self.writes:
                _kill()
            self._stop.wait(self.POLL_SECONDS)

    def _sleep_then_kill(self) -> None:
        if not self._stop.wait(self.seconds):
            _kill()

    def start(self) -> None:
        if self.seconds is not None:
            self._thread = threading.Thread(target=self._sleep_then_kill, daemon=True)
        elif self.writes is not None:
            self._before = set().union(*(self._files(d) for d in self.extra_dirs))
            if not FaultWatch._hooked:  # audit hooks cannot be removed: one, shared
                sys.addaudithook(FaultWatch._audit)
                FaultWatch._hooked = True
            FaultWatch._active.add(self)
            self._thread = threading.Thread(target=self._watch, daemon=True)
        if self._thread is not None:
            self._thread.start()

    def stop(self, succeeded: bool) -> None:
        FaultWatch._active.discard(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.writes is not None and succeeded and self._count() >= self.writes:
            _kill()
