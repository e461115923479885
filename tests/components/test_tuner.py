"""The Tuner: a real keras-tuner search on the penguins, its artifact, MLflow trials, and the Trainer taking it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sluice.components.artifacts import HyperParameters, Model, ModelRun
from sluice.components.sdk import ComponentError, ExecutionContext
from sluice.components.tuner import run_tuner
from tests.components.test_trainer import REPO, _transformed

PENGUIN_MODEL = os.path.join(REPO, "pipelines", "penguin", "model.py")


@pytest.fixture(scope="module")
def penguin_transformed(tmp_path_factory):
    import pyarrow as pa
    from palmerpenguins import load_penguins

    root = tmp_path_factory.mktemp("penguin")
    table = pa.Table.from_pandas(load_penguins(), preserve_index=False)
    _, transformed, graph = _transformed(str(root), table, "penguin")
    return root, transformed, graph


@pytest.fixture(scope="module")
def searched(penguin_transformed, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    _, transformed, graph = penguin_transformed
    root = tmp_path_factory.mktemp("tuner")
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri)
    parent = client.create_run(client.create_experiment("tuner-test")).info.run_id
    best = HyperParameters(uri=str(root / "best"))
    os.makedirs(best.uri)
    ctx = ExecutionContext(tracking_uri=tracking_uri, mlflow_run_id=parent)
    run_tuner(examples=transformed, transform_graph=graph, best_hyperparameters=best, module_file=PENGUIN_MODEL,
              train_steps=30, eval_steps=5, custom_config={"max_trials": 2}, ctx=ctx)
    return best, ctx, client, parent


def test_search_writes_the_best_config_and_every_trial(searched):
    import keras_tuner

    best, ctx, _, _ = searched
    config = best.read()
    hp = keras_tuner.HyperParameters.from_config(config)  # what a run_fn does with fn_args.hyperparameters
    assert hp.get("learning_rate") in (0.03, 0.01, 0.003) and hp.get("units") in (8, 16, 24, 32)
    trials = json.loads(Path(best.path("trials.json")).read_text())
    assert len(trials) == 2 and {t["status"] for t in trials} == {"COMPLETED"}
    assert best.trials == 2 and best.objective == "val_accuracy"
    assert best.best_score == max(t["score"] for t in trials)
    assert next(t for t in trials if t["score"] == best.best_score)["values"] == config["values"]
    assert all(0.0 <= t["metrics"]["val_accuracy"] <= 1.0 for t in trials)
    assert ctx.metrics["trials"] == 2 and ctx.metrics["best_score"] == best.best_score
    assert best.summary() == f"best val_accuracy {best.best_score:.4g} of 2 trial(s)"


def test_every_trial_is_an_mlflow_child_run(searched):
    best, _, client, parent = searched
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    trials = json.loads(Path(best.path("trials.json")).read_text())
    assert sorted(r.info.run_name for r in children) == [f"trial {t['trial_id']}" for t in trials]
    for run in children:
        trial = next(t for t in trials if f"trial {t['trial_id']}" == run.info.run_name)
        assert run.data.params == {k: str(v) for k, v in trial["values"].items()}
        assert run.data.metrics["score_val_accuracy"] == pytest.approx(trial["score"])
        assert run.info.status == "FINISHED"


def test_trainer_trains_with_the_tuners_best_hyperparameters(searched, penguin_transformed, tmp_path):
    from mlflow.tracking import MlflowClient

    from sluice.components.trainer import run_trainer

    best, _, _, _ = searched
    _, transformed, graph = penguin_transformed
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("trainer")).info.run_id
    (tmp_path / "model").mkdir()
    (tmp_path / "run").mkdir()
    run_trainer(examples=transformed, transform_graph=graph, model=Model(uri=str(tmp_path / "model")),
                model_run=ModelRun(uri=str(tmp_path / "run")), module_file=PENGUIN_MODEL, train_steps=20,
                eval_steps=2, hyperparameters=best,
                ctx=ExecutionContext(tracking_uri=tracking_uri, mlflow_run_id=run_id))
    params = client.get_run(run_id).data.params
    values = best.read()["values"]
    assert {k: params[f"hp.{k}"] for k in values} == {k: str(v) for k, v in values.items()}


BAD_TUNER_FNS = {
    "not_a_result": ("def tuner_fn(fn_args):\n    return {'tuner': None}\n",
                     r"^Tuner: tuner_fn in .*bad\.py returned dict, not a TunerFnResult\(tuner=<a keras-tuner "
                     r"tuner>, fit_kwargs=<dict>\)$"),
    "raises": ("def tuner_fn(fn_args):\n    steps = fn_args.custom_config['steps']\n",
               r"^Tuner: tuner_fn in .*bad\.py, line 2 failed: TypeError: 'NoneType' object is not subscriptable$"),
    "no_tuner_fn": ("def run_fn(fn_args):\n    pass\n",
                    r"^Tuner: module file .*bad\.py defines no function 'tuner_fn'$"),
}


@pytest.mark.parametrize("case", sorted(BAD_TUNER_FNS))
def test_bad_tuner_fns_are_one_line_naming_the_file(case, penguin_transformed, tmp_path):
    source, message = BAD_TUNER_FNS[case]
    module = tmp_path / "bad.py"
    module.write_text(source)
    _, transformed, _ = penguin_transformed
    best = HyperParameters(uri=str(tmp_path / "best"))
    with pytest.raises(ComponentError, match=message):
        run_tuner(examples=transformed, best_hyperparameters=best, module_file=str(module), train_steps=5)


def test_a_search_that_fails_names_the_search(penguin_transformed, tmp_path):
    module = tmp_path / "bad.py"
    module.write_text(
        "from sluice import tfx\n\n"
        "class Broken:\n"
        "    def search(self, **kwargs):\n"
        "        raise ValueError('no space')\n\n"
        "def tuner_fn(fn_args):\n"
        "    return tfx.components.TunerFnResult(tuner=Broken(), fit_kwargs={})\n")
    _, transformed, _ = penguin_transformed
    with pytest.raises(ComponentError, match=r"^Tuner: the search of tuner_fn in .*bad\.py, line 5 failed: "
                                             r"ValueError: no space$"):
        run_tuner(examples=transformed, best_hyperparameters=HyperParameters(uri=str(tmp_path)),
                  module_file=str(module), train_steps=5)


DATA_ERRORS = {  # the Trainer's input pipeline, called by the Tuner: its errors name the Tuner
    "split": ({"train_splits": ["nosuch"]}, "def tuner_fn(fn_args):\n    pass\n",
              r"^Tuner: examples split 'nosuch' has no Parquet files in "),
    "dataset": ({}, "def tuner_fn(fn_args):\n    fn_args.dataset(fn_args.train_files, 8, label_key='nope')\n",
                r"^Tuner: label 'nope' is not a column of "),
    "data_accessor": ({}, "from sluice.components.training.fn_args import DatasetOptions\n\n"
                          "def tuner_fn(fn_args):\n"
                          "    options = DatasetOptions(8, label_key='nope')\n"
                          "    fn_args.data_accessor.tf_dataset_factory(fn_args.train_files, options)\n",
                      r"^Tuner: label 'nope' is not a column of "),
}


@pytest.mark.parametrize("case", sorted(DATA_ERRORS))
def test_errors_of_the_input_pipeline_name_the_tuner(case, penguin_transformed, tmp_path):
    params, source, message = DATA_ERRORS[case]
    module = tmp_path / "tuner_module.py"
    module.write_text(source)
    _, transformed, _ = penguin_transformed
    with pytest.raises(ComponentError, match=message):
        run_tuner(examples=transformed, best_hyperparameters=HyperParameters(uri=str(tmp_path)),
                  module_file=str(module), train_steps=5, **params)


def test_tuner_definitions_validate_parameters():
    from sluice.components.sdk import DefinitionError
    from sluice.components.tuner import Tuner

    with pytest.raises(DefinitionError, match="missing required input 'examples'"):
        Tuner(module_file=PENGUIN_MODEL, train_steps=5)
    with pytest.raises(ComponentError, match="^Tuner: set exactly one of module_file or tuner_fn$"):
        run_tuner(examples=None, best_hyperparameters=HyperParameters(uri="/nonexistent"), train_steps=5)
