"""Processes a component starts itself (the Trainer's local workers), prepared as the runner
prepares its own: the heap tuning and log masking of ``prepare_process``, then the heavy imports
and their workarounds (the Keras patches with TensorFlow) of ``prepare_executor``. Without
this, a worker process would meet the Keras bugs the runner's own process is spared.

    python -m sluice.orchestration.runtime.processes WARM_IMPORTS ENTRY [ARGS...]

``WARM_IMPORTS``: comma-separated module names (``-`` for none); ``ENTRY``:
``package.module:function``, called with ``ARGS``; its return value is the exit status.

``worker_launcher``: a runner whose workers are not local processes (Kubeflow's TFJob) installs
its launcher for ``ExecutionContext.run_workers`` while it runs a component in this process. It
is a process-wide setting of Sluice's own (``components.worker_processes``), no library patch:
no version guard.
"""

from __future__ import annotations

import contextlib
import importlib
import sys


def command(entry: str, warm_imports: tuple[str, ...] | list[str]) -> list[str]:
    """The command line that runs ``entry`` in a prepared process (arguments follow it)."""
    return [sys.executable, "-m", __name__, ",".join(warm_imports) or "-", entry]


@contextlib.contextmanager
def worker_launcher(launcher):
    """Within the block, ``ExecutionContext.run_workers`` calls ``launcher(ctx, entry, request, count,
    warm_imports)`` (see ``components.worker_processes``); the previous launcher comes back after."""
    from sluice.components import worker_processes

    previous = worker_processes.install_launcher(launcher)
    try:
        yield launcher
    finally:
        worker_processes.install_launcher(previous)


def main(argv: list[str]) -> int:
    from sluice.orchestration import runtime

    warm, entry, *args = argv
    runtime.prepare_process()
    runtime.prepare_executor(tuple(m for m in warm.split(",") if m and m != "-"))
    module, function = entry.split(":")
    return int(getattr(importlib.import_module(module), function)(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
