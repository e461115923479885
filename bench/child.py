"""``sluice run`` with timestamped component events, for the benchmark's memory attribution.

Runs the ``sluice`` console script's entry point unchanged in this process (same imports,
same work, same exit); the only addition is that every component start and finish is
appended, with ``time.time()``, as a JSON line to the file named by ``SLUICE_BENCH_EVENTS``.
``bench/run.py`` samples this process's RSS from outside and maps the samples onto those
windows.

    SLUICE_BENCH_EVENTS=events.jsonl .venv/bin/python bench/child.py run taxi --json --max-parallel 1
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def _install_event_log(path: str) -> None:
    from sluice.orchestration import local_runner

    lock = threading.Lock()
    original_started = local_runner.Progress.started
    original_finished = local_runner.Progress.finished

    def write(event: dict) -> None:
        with lock, open(path, "a") as fh:
            fh.write(json.dumps(event) + "\n")

    def started(self, node_id: str) -> None:
        write({"event": "start", "node": node_id, "t": time.time()})
        original_started(self, node_id)

    def finished(self, result) -> None:
        write({"event": "finish", "node": result.id, "status": result.status, "seconds": result.seconds,
               "t": time.time()})
        original_finished(self, result)

    local_runner.Progress.started = started
    local_runner.Progress.finished = finished
    write({"event": "hello", "orchestration": os.path.dirname(local_runner.__file__), "t": time.time()})


def main() -> None:
    path = os.environ.get("SLUICE_BENCH_EVENTS")
    if path:
        _install_event_log(path)
    from sluice.orchestration import cli

    # Exactly what the ``sluice`` console script does (it may end with a fast exit).
    entry_point = getattr(cli, "entry_point", None)
    if entry_point is not None:
        entry_point()
    sys.exit(cli.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
