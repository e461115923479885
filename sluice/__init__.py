"""Sluice: production ML pipelines in the TFX component model.

What a user imports::

    from sluice import Pipeline, component, Input, Output, ExecutionContext
    from sluice.components import CsvExampleGen, StatisticsGen, Trainer, Pusher
    from sluice import tft                  # tf.Transform-style analyzers

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
    "tft",
]
