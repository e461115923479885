"""Which Beam worker processes did a component's data work: shared by every Beam component.

- ``asks_for_workers(options)``: whether Beam options run the pipeline on workers (another
  runner than the in-process one, or it with ``direct_num_workers`` other than 1; 0 means one
  per core). Components spread work (files, byte ranges, row groups) only then.
- ``runs_elsewhere(options)``: whether they name another runner than the in-process one, whose
  workers may not share this machine's disk.
- ``record_worker(rows)``: inside a DoFn, counts ``rows`` under this worker process (one Beam
  counter per process id, namespace ``WORKERS_NAMESPACE``).
- ``workers_of(result)``: after the run, how many processes counted some rows, or None where the
  runner reports no metrics. Components log it as their ``workers`` metric.
"""

from __future__ import annotations

import os

WORKERS_NAMESPACE = "sluice.workers"


def asks_for_workers(options) -> bool:
    """Whether Beam ``options`` (``PipelineOptions`` or a list of arguments) ask for work spread over workers."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    from sluice.components.sdk import IN_PROCESS_RUNNERS

    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options))
    runner = options.view_as(StandardOptions).runner
    if runner is not None and runner not in IN_PROCESS_RUNNERS:
        return True
    return options.view_as(DirectOptions).direct_num_workers != 1


def runs_elsewhere(options) -> bool:
    """Whether Beam ``options`` name another runner than the in-process one (a portable runner,
    Dataflow, Flink, Spark...), whose workers may run without this machine's disk. The
    DirectRunner's worker processes share it, and get no filesystem options of the pipeline's."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from sluice.components.sdk import IN_PROCESS_RUNNERS

    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options))
    runner = options.view_as(StandardOptions).runner
    return runner is not None and runner not in IN_PROCESS_RUNNERS


def record_worker(rows: int) -> None:
    """Counts ``rows`` handled by this worker process (call inside a DoFn)."""
    import apache_beam as beam

    beam.metrics.Metrics.counter(WORKERS_NAMESPACE, f"pid-{os.getpid()}").inc(rows)


def workers_of(result) -> int | None:
    """How many worker processes counted rows in a finished pipeline, or None when its runner
    reports no metrics. Committed counts where the runner has them (a replayed bundle's are
    not), else attempted ones."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(WORKERS_NAMESPACE))["counters"]
    except (NotImplementedError, AttributeError, KeyError):
        return None
    if not counters:
        return None
    return len({c.key.metric.name for c in counters if (c.committed or c.attempted or 0) > 0})
