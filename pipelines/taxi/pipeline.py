"""TFX's Chicago taxi pipeline, like for like, on Sluice.

Same 8 components, same preprocessing (``preprocessing.py``), same wide-and-deep
model (``model.py``: 1000 training steps at batch 40, 150 eval steps). The data
folder is a parameter with no default (the data is not shipped with Sluice):

    sluice run taxi --param data_root=../shared/data/chicago_taxi

Retraining on data spans (run again when span-2 lands; version 2 is pushed only if
it is not worse than the blessed version 1 on the same eval data):

    sluice run taxi --param data_root=../shared/data/chicago_taxi_spans \
        --param input_pattern='span-{SPAN}/data.csv' --param warm_start=true
"""

from __future__ import annotations

import os

from sluice.components.evaluator import Evaluator, MetricThreshold
from sluice.components.example_gen import CsvExampleGen
from sluice.components.example_validator import ExampleValidator
from sluice.components.import_schema_gen import ImportSchemaGen
from sluice.components.pusher import Pusher
from sluice.components.schema_gen import SchemaGen
from sluice.components.sdk import DefinitionError
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.trainer import Trainer
from sluice.components.transform import Transform
from sluice.orchestration.pipeline import Pipeline
from sluice.pipelines import curated_schema

HERE = os.path.dirname(os.path.abspath(__file__))


def create_pipeline(
    data_root: str = "",
    input_pattern: str = "*.csv",
    pipeline_root: str = "sluice_runs",
    serving_dir: str = "",
    train_steps: int = 1000,
    eval_steps: int = 150,
    min_accuracy: float = 0.6,
    max_accuracy_regression: float = 0.01,
    warm_start: bool = False,
    schema_file: str = "",
    enable_cache: bool = True,
    beam_pipeline_args: list[str] = [],  # noqa: B006 - never mutated
) -> Pipeline:
    """``input_pattern`` may name spans, e.g. ``span-{SPAN}/data.csv``: the latest span is
    read. ``warm_start`` continues training from the last pushed model (retraining)."""
    if not data_root:
        raise DefinitionError("taxi: set the parameter data_root to the folder of the Chicago taxi CSV "
                              "(e.g. --param data_root=../shared/data/chicago_taxi)")
    # Under the run's root by default: `sluice run --pipeline-root` passes its root here.
    serving_dir = serving_dir or os.path.join(pipeline_root, "serving", "taxi")
    example_gen = CsvExampleGen(input_base=data_root, input_pattern=input_pattern)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    # A curated schema (e.g. schemas/taxi.pbtxt, kept under version control) or an inferred one.
    schema_gen = (ImportSchemaGen(schema_file=curated_schema(schema_file)) if schema_file
                  else SchemaGen(statistics=statistics_gen.outputs["statistics"]))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "preprocessing.py"))
    transform.add_upstream(example_validator)  # anomalies stop the run before training
    trainer = Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "model.py"),
        train_steps=train_steps, eval_steps=eval_steps, warm_start_from_last_push=warm_start)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        label_key="tips_xf", prediction_key="outputs", problem="binary",
        slicing_features=["payment_type", "trip_start_hour"],
        thresholds={"binary_accuracy": MetricThreshold(lower_bound=min_accuracy,
                                                       max_regression=max_accuracy_regression)})
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        serving_dir=serving_dir, registered_model_name="taxi",
        examples=example_gen.outputs["examples"])  # the registered MLflow model's input example
    return Pipeline(
        name="taxi",
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
                    evaluator, pusher],
        pipeline_root=pipeline_root, enable_cache=enable_cache, beam_pipeline_args=beam_pipeline_args)
