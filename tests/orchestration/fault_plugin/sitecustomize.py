"""Imported by Python at start-up (this folder is on the PYTHONPATH of the fault tests' processes).

Registers the fault injector only when the test asked for a fault, so other processes
started with this PYTHONPATH run as they would without it.
"""

import os

if os.environ.get("SLUICE_FAULT"):
    from fault_injector import FaultHooks

    from sluice.orchestration import hooks

    hooks.register(FaultHooks(
        os.environ["SLUICE_FAULT"],
        [d for d in os.environ.get("SLUICE_FAULT_WATCH", "").split(os.pathsep) if d],
    ))
