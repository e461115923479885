"""The standard components, the component SDK and the artifact types.

    from sluice.components import CsvExampleGen, StatisticsGen, SchemaGen, Trainer, Pusher

Each component module imports nothing heavy (TensorFlow, Beam) until it runs.
"""

from sluice.components.evaluator import Evaluator, MetricThreshold
from sluice.components.example_gen import CsvExampleGen, ImportExampleGen, ParquetExampleGen, SplitConfig
from sluice.components.example_validator import ExampleValidator
from sluice.components.import_schema_gen import ImportSchemaGen
from sluice.components.pusher import Pusher
from sluice.components.schema_gen import SchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.trainer import Trainer
from sluice.components.transform import Transform

__all__ = [
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
]
