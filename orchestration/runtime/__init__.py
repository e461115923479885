"""The runtime room: what a runner does to its own process so components run well in it.

Components are plain functions and never touch the process they run in; these are the
process-level settings and library workarounds that runners apply around them:

- once, at a runner's start: ``prepare_process`` (``heap.tune_heap``; ``log_masking.install``:
  credentials masked in every log record);
- before each executor: ``prepare_executor`` (its heavy imports, frozen once done, or waited for
  while the runner's warm-up thread is still importing them; for TensorFlow components the Keras
  workaround and ``tf_signatures``: SavedModel signatures wrapped without AutoGraph), and a
  ``RunnerContext`` for it (Beam's sampler; multi-process workers that stop);
- after each executor: ``after_executor`` (``heap.release_memory``);
- in the CLI: ``stderr`` (native chatter filtered out of the terminal, credentials masked) and
  ``exit.exit_now`` (the exit handlers, then no interpreter teardown);
- whenever a metadata store opens: ``mlflow.quiet_mlflow`` (MLflow's log levels and bounded HTTP
  retries; ``mlflow_sqlite``: its SQLite folder creation reads an encoded URI as SQLAlchemy does).

Each module says what its trick buys; a library patch checks the library's version first and
does nothing for one it was not written for.
"""

from __future__ import annotations

from sluice.orchestration.runtime import keras, log_masking, tf_signatures
from sluice.orchestration.runtime.beam import RunnerContext
from sluice.orchestration.runtime.heap import release_memory, tune_heap
from sluice.orchestration.runtime.imports import import_heavy, import_heavy_modules, warm_order
from sluice.orchestration.runtime.objects import freeze_long_lived

__all__ = ["prepare_process", "prepare_executor", "after_executor", "RunnerContext", "log_masking", "tune_heap",
           "release_memory", "import_heavy", "import_heavy_modules", "freeze_long_lived", "warm_order"]


def prepare_process() -> None:
    """What a runner does once, at its start, before it starts any thread."""
    tune_heap()
    log_masking.install()


def prepare_executor(warm_imports: tuple[str, ...] | list[str]) -> None:
    """Before an executor: its heavy imports (frozen once done), and the workarounds they need."""
    import_heavy_modules(warm_imports)
    if "tensorflow" in warm_imports:
        keras.apply()
        tf_signatures.apply()


def after_executor() -> None:
    """After an executor, whether it succeeded or not: hands what it freed back to the OS."""
    release_memory()
