"""Two fixes for Beam's in-process runner: its state sampler, woken often enough that bundles
end promptly; and its multi-process mode, whose workers stop when a pipeline ends early.

**The state sampler.**

Each bundle's sampler thread sleeps for up to its period (growing to Beam's default of
200 ms), and the bundle's end waits for it to wake up (``statesampler_fast.pyx``: "May have
to wait up to sampling_period_ms"): every in-process pipeline (CsvExampleGen,
StatisticsGen, Transform) idles at its bundles' ends for it. Beam has no option for the
period, so the constructor's default is lowered; the samples only feed Beam's msec counters,
and the sampler wakes without the GIL (a lock and a few adds), so frequent wake-ups cost
next to nothing. Workers of remote runners (Dataflow, Flink, Spark) are other processes and
keep Beam's default.

**Workers that connect late.** In multi-process mode (``--direct_running_mode=multi_processing``)
the runner starts its SDK worker processes and, when the pipeline ends, closes each worker's
control stream and waits for the process to exit. ``ControlConnection.close`` only tells a
worker to stop if the worker has already connected: when a pipeline fails before a slow-starting
worker connects (a DoFn error in the first bundle, on a loaded machine), that worker connects
later, waits for instructions that never come, and the runner waits for it forever (seen in CI,
about one failing run in fifteen under load). The patched ``close`` leaves the stop
instruction queued for such a worker too, so it gets it as soon as it connects.

Runners hand executors a ``RunnerContext``: its first Beam pipeline applies both, once per
process. Applying it at a runner's start would import Beam there, in
processes whose components may not use it.
"""

from __future__ import annotations

from sluice.components.sdk import ExecutionContext

# At most this long between Beam's state samples in this process.
STATE_SAMPLING_PERIOD_MS = 2


def apply() -> None:
    """Caps the sampling period of Beam's in-process state sampler and lets late workers stop
    (Beam 2.x only; idempotent)."""
    import apache_beam

    if not apache_beam.__version__.startswith("2."):  # both are written for Beam 2's runner
        return
    from apache_beam.runners.worker import statesampler

    init = statesampler.StateSampler.__init__
    if init.__defaults__ and init.__defaults__[-1] > STATE_SAMPLING_PERIOD_MS:
        init.__defaults__ = init.__defaults__[:-1] + (STATE_SAMPLING_PERIOD_MS,)
    _stop_late_workers()


def _stop_late_workers() -> None:
    """Patches ``ControlConnection.close`` to queue the stop instruction for a worker that has
    not connected yet (left alone where the class lacks the attributes it was written for)."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    connection = worker_handlers.ControlConnection
    servicer = worker_handlers.BeamFnControlServicer
    original = connection.close
    if getattr(original, "_sluice_patched", False):
        return
    written_for = hasattr(connection, "_lock") and all(
        hasattr(servicer, name) for name in ("_DONE_MARKER", "UNSTARTED_STATE"))
    if not written_for:
        return

    def close(self):
        with connection._lock:
            if getattr(self, "_state", None) == servicer.UNSTARTED_STATE:
                self._push_queue.put(servicer._DONE_MARKER)
        original(self)

    close._sluice_patched = True
    connection.close = close


class RunnerContext(ExecutionContext):
    """The ``ExecutionContext`` runners hand executors: in-process Beam pipelines sample states often,
    and processes a component starts are prepared as the runner's own (``runtime.processes``)."""

    def beam_pipeline(self):
        apply()
        return super().beam_pipeline()

    def process_command(self, entry: str, warm_imports: tuple[str, ...] = ()) -> list[str]:
        from sluice.orchestration.runtime import processes

        return processes.command(entry, warm_imports)
