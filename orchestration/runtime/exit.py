"""How the ``sluice`` command leaves its process: the exit handlers, then no interpreter teardown.

``exit_now`` runs what was registered with ``atexit`` (TensorFlow's AutoGraph removes the
temporary ``__autograph_generated_file*.py`` it wrote for each traced function; ``io.files``
removes its local copies of remote folders), then ``os._exit``. Skipping the rest of the
teardown (TensorFlow's and Beam's threads, module finalization) saves seconds after a run whose
records are all written; skipping the handlers too left a run's AutoGraph files in the temp
folder, 18 per taxi run. Version guard: ``atexit._run_exitfuncs`` is CPython's; where it is
missing, the handlers are skipped as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys


def exit_now(code: int) -> None:
    """Run the ``atexit`` handlers and end the process with ``code``; what was printed before and by
    them is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is not None:
        run_handlers()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
