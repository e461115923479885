"""The fault injector of the crash-safety tests, as a plugin of the processes they start.

Put ``PLUGIN_DIR`` on a subprocess's ``PYTHONPATH`` (``pythonpath``) and set ``SLUICE_FAULT``:
Python imports this folder's ``sitecustomize`` at start-up, which registers the injector's
``orchestration.hooks.RunHooks`` (``fault_injector.FaultHooks``). Sluice itself never reads
``SLUICE_FAULT``.

- ``SLUICE_FAULT=<component_id>:<point>``: SIGKILL at ``before_executor``, ``after_executor``
  or ``during_publish`` (after the first output is moved into place).
- ``<component_id>:after_call=<module>:<function>``: when that function (or ``<Class>.<method>``)
  returns during the component's executor, e.g. ``Pusher:after_call=sluice.components.pusher.component:place_version``.
- ``<component_id>:after_seconds=<s>``: ``s`` seconds into the executor.
- ``<component_id>:after_writes=<n>``: when the ``n``-th file is created in its temporary
  output folders, plus any folder listed in ``SLUICE_FAULT_WATCH`` (os.pathsep-separated,
  counting only new files there, e.g. a Pusher's serving directory).
"""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def pythonpath(*others: str | os.PathLike) -> str:
    """A ``PYTHONPATH`` value with the plugin first, then ``others``."""
    return os.pathsep.join([str(PLUGIN_DIR), *map(str, others)])
