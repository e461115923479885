"""The standard components, the component SDK and the artifact types.

    from sluice.components import CsvExampleGen, StatisticsGen, SchemaGen, Trainer, Pusher

A component's module is imported when its name is first used here, so importing
one module of this package (``sluice.components.sdk``, say) does not import every
component; and no component module imports TensorFlow or Beam until it runs.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it.
_HOMES = {
    "BulkInferrer": "bulk_inferrer",
    "CsvExampleGen": "example_gen",
    "Evaluator": "evaluator",
    "ExampleValidator": "example_validator",
    "ImportExampleGen": "example_gen",
    "ImportSchemaGen": "import_schema_gen",
    "MetricThreshold": "evaluator",
    "ParquetExampleGen": "example_gen",
    "Pusher": "pusher",
    "SchemaGen": "schema_gen",
    "SplitConfig": "example_gen",
    "StatisticsGen": "statistics_gen",
    "Trainer": "trainer",
    "Transform": "transform",
    "Tuner": "tuner",
}

__all__ = [
    "BulkInferrer",
    "CsvExampleGen",
    "Evaluator",
    "ExampleValidator",
    "ImportExampleGen",
    "ImportSchemaGen",
    "MetricThreshold",
    "ParquetExampleGen",
    "Pusher",
    "SchemaGen",
    "SplitConfig",
    "StatisticsGen",
    "Trainer",
    "Transform",
    "Tuner",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from sluice.components.bulk_inferrer import BulkInferrer
    from sluice.components.evaluator import Evaluator, MetricThreshold
    from sluice.components.example_gen import CsvExampleGen, ImportExampleGen, ParquetExampleGen, SplitConfig
    from sluice.components.example_validator import ExampleValidator
    from sluice.components.import_schema_gen import ImportSchemaGen
    from sluice.components.pusher import Pusher
    from sluice.components.schema_gen import SchemaGen
    from sluice.components.statistics_gen import StatisticsGen
    from sluice.components.trainer import Trainer
    from sluice.components.transform import Transform
    from sluice.components.tuner import Tuner


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
