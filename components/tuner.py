"""The Tuner component: runs a module file's ``tuner_fn(fn_args)`` search with keras-tuner, as TFX's Tuner.

``tuner_fn`` returns a ``TunerFnResult`` (``tfx.components.TunerFnResult``): a keras-tuner
tuner and the keyword arguments of its ``search`` (datasets, steps). The Tuner runs the search
in a scratch ``fn_args.working_dir``, writes the best hyperparameters as a ``HyperParameters``
artifact (keras-tuner's config, as TFX writes it) with every trial's outcome beside it, and logs
each trial to MLflow as a child run of the Tuner's run. The Trainer takes
``hyperparameters=tuner.outputs["best_hyperparameters"]``.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
from typing import Any

from sluice.components.artifacts import Examples, HyperParameters, Schema, TransformGraph
from sluice.components.sdk import (
    ComponentError,
    ExecutionContext,
    Input,
    ModuleFile,
    ModuleFunction,
    Output,
    component,
    module_directory_importable,
    user_code_line,
    user_function,
)
from sluice.components.training.data import split_files
from sluice.components.training.fn_args import DataAccessor, FnArgs

OWNER = "Tuner"


def run_tuner(
    examples: Input[Examples],
    best_hyperparameters: Output[HyperParameters],
    train_steps: int,
    module_file: ModuleFile | None = None,
    tuner_fn: ModuleFunction | None = None,
    transform_graph: Input[TransformGraph] | None = None,
    schema: Input[Schema] | None = None,
    eval_steps: int = 100,
    custom_config: dict[str, Any] | None = None,
    train_splits: list[str] = ["train"],  # noqa: B006 - never mutated; the component's declared default
    eval_splits: list[str] = ["eval"],  # noqa: B006 - never mutated; the component's declared default
    ctx: ExecutionContext = None,
) -> None:
    """Searches hyperparameters with the module file's ``tuner_fn(fn_args) -> TunerFnResult``.

    Exactly one of ``module_file`` (a .py defining ``tuner_fn``) or ``tuner_fn`` (a dotted
    ``"package.module.function"``) is required. ``fn_args`` is the Trainer's, with
    ``working_dir`` (the tuner's ``directory``: a scratch folder, removed afterwards),
    ``train_steps`` and ``eval_steps`` (steps per trial), ``custom_config``.
    """
    ctx = ctx or ExecutionContext()
    if train_steps <= 0:
        raise ComponentError(f"Tuner: parameter 'train_steps' must be positive, got {train_steps}")
    user_fn, source = user_function(module_file, tuner_fn, "tuner_fn", OWNER)
    train_files = [f for split in train_splits for f in split_files(examples, split, OWNER)]
    eval_files = [f for split in eval_splits for f in split_files(examples, split, OWNER)]
    working_dir = tempfile.mkdtemp(prefix="sluice-tuner-")
    fn_args = FnArgs(
        train_files=train_files, eval_files=eval_files, working_dir=working_dir,
        transform_output=transform_graph.uri if transform_graph is not None else None,
        schema_path=schema.file if schema is not None else None,
        train_steps=train_steps, eval_steps=eval_steps,
        custom_config=dict(custom_config) if custom_config is not None else None,
        data_accessor=DataAccessor({tuple(train_files): train_steps, tuple(eval_files): eval_steps}, OWNER),
    )
    try:
        tuner = _search(user_fn, fn_args, source, module_file)
        trials = _trials(tuner)
        best = tuner.get_best_hyperparameters(1)
        if not best:
            raise ComponentError(f"Tuner: the search of tuner_fn in {source} completed no trial "
                                 f"({len(trials)} trial(s): {', '.join(sorted({t['status'] for t in trials}))})")
        _write(best_hyperparameters, best[0].get_config(), trials, _objective(tuner))
    finally:
        shutil.rmtree(working_dir, ignore_errors=True)
    ctx.log_metric("trials", len(trials))
    if best_hyperparameters.best_score is not None:
        ctx.log_metric("best_score", best_hyperparameters.best_score)
    if ctx.tracking_uri and ctx.mlflow_run_id:
        log_trials(ctx.tracking_uri, ctx.mlflow_run_id, trials, best_hyperparameters.objective)


def _search(user_fn: Any, fn_args: FnArgs, source: str, module_file: str | None) -> Any:
    """Calls ``tuner_fn`` and runs the search it returns; user errors as one line naming the file."""
    step = "tuner_fn"  # then "the search of tuner_fn"
    try:
        with module_directory_importable(module_file) if module_file else contextlib.nullcontext():
            result = user_fn(fn_args)
            tuner, fit_kwargs = getattr(result, "tuner", None), getattr(result, "fit_kwargs", None)
            if tuner is None or not hasattr(tuner, "search") or not isinstance(fit_kwargs, dict):
                raise ComponentError(f"Tuner: tuner_fn in {source} returned {type(result).__name__}, not a "
                                     "TunerFnResult(tuner=<a keras-tuner tuner>, fit_kwargs=<dict>)")
            step = "the search of tuner_fn"
            tuner.search(**{"verbose": 0, **fit_kwargs})
    except ComponentError:
        raise
    except Exception as exc:
        line = user_code_line(exc, source)
        where = f"{source}, line {line}" if line else source
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ComponentError(f"Tuner: {step} in {where} failed: {type(exc).__name__}: {message}"[:1000]) from exc
    return tuner


def _objective(tuner: Any) -> str:
    objective = getattr(tuner.oracle, "objective", None)
    name = getattr(objective, "name", None)
    return str(name) if name else ""


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _trials(tuner: Any) -> list[dict[str, Any]]:
    """Every trial of the search: id, status, score, hyperparameter values, best metric values."""
    found = []
    for trial in tuner.oracle.trials.values():
        metrics = {}
        for name, history in getattr(trial.metrics, "metrics", {}).items():
            best = _number(trial.metrics.get_best_value(name)) if history.get_history() else None
            if best is not None:
                metrics[name] = best
        found.append({"trial_id": str(trial.trial_id), "status": str(trial.status),
                      "score": _number(trial.score), "values": dict(trial.hyperparameters.values),
                      "metrics": metrics})
    return sorted(found, key=lambda t: t["trial_id"])


def _write(artifact: HyperParameters, config: dict[str, Any], trials: list[dict], objective: str) -> None:
    with open(artifact.file, "w") as fh:
        json.dump(config, fh)
    with open(artifact.path("trials.json"), "w") as fh:
        json.dump(trials, fh, indent=1)
    values = config.get("values", {})
    scored = [t for t in trials if t["score"] is not None and t["values"] == values]
    artifact.objective = objective
    artifact.best_score = scored[0]["score"] if scored else None
    artifact.trials = len(trials)


def log_trials(tracking_uri: str, parent_run_id: str, trials: list[dict], objective: str) -> None:
    """Each trial as an MLflow child run of ``parent_run_id``: its hyperparameters, score and metrics."""
    import mlflow.entities
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    for trial in trials:
        run = client.create_run(experiment_id, run_name=f"trial {trial['trial_id']}",
                                tags={"mlflow.parentRunId": parent_run_id, "sluice.tuner_trial": trial["trial_id"],
                                      "sluice.trial_status": trial["status"]})
        params = [mlflow.entities.Param(k, str(v)[:500]) for k, v in sorted(trial["values"].items())]
        metrics = {**trial["metrics"], **({f"score_{objective or 'objective'}": trial["score"]}
                                          if trial["score"] is not None else {})}
        client.log_batch(run.info.run_id, params=params,
                         metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in sorted(metrics.items())])
        client.set_terminated(run.info.run_id, "FINISHED" if trial["status"] == "COMPLETED" else "FAILED")


Tuner = component(run_tuner, name="Tuner", warm_imports=("tensorflow",))

__all__ = ["Tuner", "log_trials", "run_tuner"]
