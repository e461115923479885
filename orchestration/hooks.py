"""Hooks into ``run_node``: code that follows an execution from inside the runner's process.

``run_node`` calls every registered ``RunHooks`` at three points: right before the executor
(with its temporary output folders), right after it (with the exception it raised, if any),
and after each output is moved into place while publishing. Nothing in Sluice registers
one; the crash-safety tests do, to kill the process at these points.

>>> class Timer(RunHooks):                                   # doctest: +SKIP
...     def before_executor(self, node_id, output_dirs):
...         self.started = time.monotonic()
>>> register(Timer())                                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class RunHooks:
    """Override what you need; every method does nothing by default."""

    def before_executor(self, node_id: str, output_dirs: list[str]) -> None:
        """The executor of ``node_id`` is about to run, writing into ``output_dirs``."""

    def after_executor(self, node_id: str, error: BaseException | None) -> None:
        """The executor of ``node_id`` returned (``error`` None) or raised ``error``."""

    def during_publish(self, node_id: str, output: str) -> None:
        """Output ``output`` of ``node_id`` was moved into place; others may still be pending."""


_REGISTERED: list[RunHooks] = []


def register(hooks: RunHooks) -> None:
    """Calls ``hooks`` in every ``run_node`` of this process from now on."""
    _REGISTERED.append(hooks)


def unregister(hooks: RunHooks) -> None:
    if hooks in _REGISTERED:
        _REGISTERED.remove(hooks)


def registered() -> tuple[RunHooks, ...]:
    return tuple(_REGISTERED)


@contextlib.contextmanager
def around_executor(node_id: str, output_dirs: list[str]) -> Iterator[None]:
    """Calls ``before_executor`` of every hook on entering, ``after_executor`` on leaving."""
    hooks = registered()
    for hook in hooks:
        hook.before_executor(node_id, output_dirs)
    try:
        yield
    except BaseException as exc:
        for hook in hooks:
            hook.after_executor(node_id, exc)
        raise
    for hook in hooks:
        hook.after_executor(node_id, None)


def during_publish(node_id: str, output: str) -> None:
    for hook in registered():
        hook.during_publish(node_id, output)
