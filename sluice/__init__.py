"""Sluice: production ML pipelines in the TFX component model.

What a user imports::

    from sluice import Pipeline, component, Input, Output, ExecutionContext
    from sluice.components import CsvExampleGen, StatisticsGen, Trainer, Pusher
    from sluice import tft                  # tf.Transform-style analyzers
    from sluice import tfx                  # TFX's module-file API: tfx.components.FnArgs, ...

The repository's ``components/``, ``orchestration/`` and ``pipelines/`` folders
are this package's subpackages (mapped by ``pyproject.toml``).
"""

from sluice.components import tft
from sluice.components.sdk import (
    ComponentError,
    DefinitionError,
    ExecutionContext,
    ExternalData,
    Input,
    ModuleFile,
    Output,
    component,
)
from sluice.orchestration.pipeline import Pipeline

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``sluice.tfx`` is imported on first use: ``import sluice`` stays cheap.
    if name == "tfx":
        from sluice.components import tfx_compat

        return tfx_compat
    raise AttributeError(f"module 'sluice' has no attribute {name!r}")


__all__ = [
    "ComponentError",
    "DefinitionError",
    "ExecutionContext",
    "ExternalData",
    "Input",
    "ModuleFile",
    "Output",
    "Pipeline",
    "component",
    "tfx",
    "tft",
]
