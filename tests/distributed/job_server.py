"""Beam's local job server (``apache_beam.runners.portability.local_job_service_main``), except that
its runner honours the job's ``--direct_num_workers`` and ``--direct_runner_bundle_repeat``.

Run as ``python tests/distributed/job_server.py --port=PORT``. Beam's job service runs each job
with ``FnApiRunner.run_via_runner_api``, which reads neither option (only ``FnApiRunner.run_pipeline``
does), so every job would get a single SDK worker from the worker pool; passing the count on is what
lets a test see work spread over several worker processes. Everything else is Beam's own.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.portability.api import beam_job_api_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner

# Checked on this version: FnApiRunner keeps its worker count in ``_num_workers``.
if not beam.__version__.startswith("2.77.") or not hasattr(fn_runner.FnApiRunner(), "_num_workers"):
    raise SystemExit(f"job_server.py: written for Beam 2.77, found {beam.__version__}")


class _Job(local_job_service.BeamJob):
    def _invoke_runner(self):
        self.set_state(beam_job_api_pb2.JobState.RUNNING)
        options = self.pipeline_options()
        direct = options.view_as(DirectOptions)
        # The job's options come as strings from its JSON struct.
        runner = fn_runner.FnApiRunner(provision_info=self._provision_info,
                                       bundle_repeat=int(direct.direct_runner_bundle_repeat or 0))
        runner._num_workers = int(direct.direct_num_workers) or os.cpu_count()  # what run_pipeline would set
        return runner.run_via_runner_api(self._pipeline_proto, options)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    servicer = local_job_service.LocalJobServicer(beam_job_type=_Job)
    port = servicer.start_grpc_server(args.port)
    logging.info("Listening for beam jobs on port %d.", port)
    try:
        while True:
            time.sleep(3600)
    finally:
        servicer.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1:])
