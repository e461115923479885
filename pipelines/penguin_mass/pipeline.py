"""The penguin body-mass pipeline: a regression end to end on the Palmer penguins data.

The same raw ``penguins.csv`` as the penguin pipeline; the label is ``body_mass_g``. The
Evaluator judges the model in grams, overall and per species and sex::

    sluice run penguin_mass
"""

from __future__ import annotations

import os

from sluice.components.evaluator import Evaluator, MetricThreshold
from sluice.components.example_gen import CsvExampleGen
from sluice.components.example_validator import ExampleValidator
from sluice.components.pusher import Pusher
from sluice.components.schema_gen import SchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.trainer import Trainer
from sluice.components.transform import Transform
from sluice.orchestration.pipeline import Pipeline
from sluice.pipelines.penguin.pipeline import penguins_data_dir

HERE = os.path.dirname(os.path.abspath(__file__))


def create_pipeline(
    pipeline_root: str = "sluice_runs",
    data_root: str = "",
    serving_dir: str = "",
    train_steps: int = 400,
    eval_steps: int = 10,
    max_rmse: float = 450.0,
    min_r2: float = 0.6,
    species_max_rmse: float = 600.0,
    enable_cache: bool = True,
    beam_pipeline_args: list[str] = [],  # noqa: B006 - never mutated
) -> Pipeline:
    """``max_rmse`` and ``min_r2`` judge the model overall, ``species_max_rmse`` each species
    (grams)."""
    data_root = data_root or penguins_data_dir()
    serving_dir = serving_dir or os.path.join(pipeline_root, "serving", "penguin_mass")
    example_gen = CsvExampleGen(input_base=data_root, input_pattern="penguins.csv", null_values=["", "NA"])
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "preprocessing.py"))
    transform.add_upstream(example_validator)
    trainer = Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        module_file=os.path.join(HERE, "model.py"),
        train_steps=train_steps, eval_steps=eval_steps)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        label_key="body_mass_g", prediction_key="mass", problem="regression",
        slicing_features=["species", "sex", "flipper_length_mm"], slice_buckets={"flipper_length_mm": 4},
        thresholds={"rmse": MetricThreshold(upper_bound=max_rmse, higher_is_better=False),
                    "r2": MetricThreshold(lower_bound=min_r2)},
        slice_thresholds={"species": {"rmse": MetricThreshold(upper_bound=species_max_rmse,
                                                              higher_is_better=False)}})
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        serving_dir=serving_dir, registered_model_name="penguin_mass",
        examples=example_gen.outputs["examples"])
    return Pipeline(
        name="penguin_mass",
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform, trainer, evaluator,
                    pusher],
        pipeline_root=pipeline_root, enable_cache=enable_cache, beam_pipeline_args=beam_pipeline_args)
