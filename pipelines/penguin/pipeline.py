"""The penguin pipeline: all 8 standard components on the Palmer penguins data.

The data is the raw ``penguins.csv`` shipped by the ``palmerpenguins`` package:
species (the label), island and sex strings, four measurements, with real
nulls. It is the README's main job:

    sluice run penguin
"""

from __future__ import annotations

import os

from sluice.components.evaluator import Evaluator, MetricThreshold
from sluice.components.example_gen import CsvExampleGen
from sluice.components.example_validator import ExampleValidator
from sluice.components.import_schema_gen import ImportSchemaGen
from sluice.components.pusher import Pusher
from sluice.components.schema_gen import SchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.trainer import Trainer
from sluice.components.transform import Transform
from sluice.components.tuner import Tuner
from sluice.orchestration.pipeline import Pipeline
from sluice.pipelines import curated_schema

HERE = os.path.dirname(os.path.abspath(__file__))


def penguins_data_dir() -> str:
    """The folder of the CSV files the ``palmerpenguins`` package ships."""
    import importlib.util

    spec = importlib.util.find_spec("palmerpenguins")
    return os.path.join(os.path.dirname(spec.origin), "data")


def create_pipeline(
    pipeline_root: str = "sluice_runs",
    data_root: str = "",
    serving_dir: str = "",
    train_steps: int = 300,
    eval_steps: int = 20,
    min_accuracy: float = 0.9,
    schema_file: str = "",
    enable_cache: bool = True,
    beam_pipeline_args: list[str] = [],  # noqa: B006 - never mutated
    tune: bool = False,
    tuner_trials: int = 4,
    tuner_steps: int = 100,
    trainer_workers: int = 1,
) -> Pipeline:
    """``tune``: a Tuner searches the model's learning rate and width first (``tuner_trials``
    trials of ``tuner_steps`` steps) and the Trainer trains with the best values found.
    ``trainer_workers`` > 1: the Trainer trains with that many workers
    (``MultiWorkerMirroredStrategy``): processes on loopback when run locally, a TFJob's replicas
    on Kubeflow."""
    data_root = data_root or penguins_data_dir()
    # Under the run's root by default: `sluice run --pipeline-root` passes its root here.
    serving_dir = serving_dir or os.path.join(pipeline_root, "serving", "penguin")
    # The package writes missing values R-style, as "NA".
    example_gen = CsvExampleGen(input_base=data_root, input_pattern="penguins.csv", null_values=["", "NA"])
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    # A curated schema (e.g. schemas/penguin.pbtxt, kept under version control) or an inferred one.
    schema_gen = (ImportSchemaGen(schema_file=curated_schema(schema_file)) if schema_file
                  else SchemaGen(statistics=statistics_gen.outputs["statistics"]))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "preprocessing.py"))
    transform.add_upstream(example_validator)  # anomalies stop the run before training
    tuner = Tuner(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "model.py"),
        train_steps=tuner_steps, eval_steps=eval_steps, custom_config={"max_trials": tuner_trials}) if tune else None
    trainer = Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "model.py"),
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        train_steps=train_steps, eval_steps=eval_steps,
        distribution="multi_worker" if trainer_workers > 1 else "auto", num_workers=trainer_workers)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        # The label as the model sees it: the species' vocabulary index, computed from the raw
        # eval examples by the model's transform_features signature.
        label_key="species_xf", prediction_key="probabilities",
        problem="multiclass", slicing_features=["island"],
        thresholds={"accuracy": MetricThreshold(lower_bound=min_accuracy, max_regression=0.02)})
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        serving_dir=serving_dir, registered_model_name="penguin",
        examples=example_gen.outputs["examples"])  # the registered MLflow model's input example
    return Pipeline(
        name="penguin",
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    *([tuner] if tuner else []), trainer, evaluator, pusher],
        pipeline_root=pipeline_root, enable_cache=enable_cache, beam_pipeline_args=beam_pipeline_args)
