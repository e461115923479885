"""Beam's in-process state sampler, woken often enough that bundles end promptly.

Each bundle's sampler thread sleeps for up to its period (growing to Beam's default of
200 ms), and the bundle's end waits for it to wake up (``statesampler_fast.pyx``: "May have
to wait up to sampling_period_ms"): every in-process pipeline (CsvExampleGen,
StatisticsGen, Transform) idles at its bundles' ends for it. Beam has no option for the
period, so the constructor's default is lowered; the samples only feed Beam's msec counters,
and the sampler wakes without the GIL (a lock and a few adds), so frequent wake-ups cost
next to nothing. Workers of remote runners (Dataflow, Flink, Spark) are other processes and
keep Beam's default.

Runners hand executors a ``RunnerContext``: its first Beam pipeline applies the
period, once per process. Applying it at a runner's start would import Beam there, in
processes whose components may not use it.
"""

from __future__ import annotations

from sluice.components.sdk import ExecutionContext

# At most this long between Beam's state samples in this process.
STATE_SAMPLING_PERIOD_MS = 2


def apply() -> None:
    """Caps the sampling period of Beam's in-process state sampler (Beam 2.x only; idempotent)."""
    import apache_beam

    if not apache_beam.__version__.startswith("2."):  # the constructor's defaults are Beam 2's
        return
    from apache_beam.runners.worker import statesampler

    init = statesampler.StateSampler.__init__
    if init.__defaults__ and init.__defaults__[-1] > STATE_SAMPLING_PERIOD_MS:
        init.__defaults__ = init.__defaults__[:-1] + (STATE_SAMPLING_PERIOD_MS,)


class RunnerContext(ExecutionContext):
    """The ``ExecutionContext`` runners hand executors: in-process Beam pipelines sample states often,
    and processes a component starts are prepared as the runner's own (``runtime.processes``)."""

    def beam_pipeline(self):
        apply()
        return super().beam_pipeline()

    def process_command(self, entry: str, warm_imports: tuple[str, ...] = ()) -> list[str]:
        from sluice.orchestration.runtime import processes

        return processes.command(entry, warm_imports)
