"""Processes a component starts itself (the Trainer's local workers), prepared as the runner
prepares its own: the heap tuning and log masking of ``prepare_process``, then the heavy imports
and their workarounds (the Keras patches with TensorFlow) of ``prepare_executor``. Without
this, a worker process would meet the Keras bugs the runner's own process is spared.

    python -m sluice.orchestration.runtime.processes WARM_IMPORTS ENTRY [ARGS...]

``WARM_IMPORTS``: comma-separated module names (``-`` for none); ``ENTRY``:
``package.module:function``, called with ``ARGS``; its return value is the exit status.
"""

from __future__ import annotations

import importlib
import sys


def command(entry: str, warm_imports: tuple[str, ...] | list[str]) -> list[str]:
    """The command line that runs ``entry`` in a prepared process (arguments follow it)."""
    return [sys.executable, "-m", __name__, ",".join(warm_imports) or "-", entry]


def main(argv: list[str]) -> int:
    from sluice.orchestration import runtime

    warm, entry, *args = argv
    runtime.prepare_process()
    runtime.prepare_executor(tuple(m for m in warm.split(",") if m and m != "-"))
    module, function = entry.split(":")
    return int(getattr(importlib.import_module(module), function)(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
