"""The Trainer component: runs a module file's ``run_fn(fn_args)`` to train and export a model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, Literal

from sluice.components.artifacts import Examples, HyperParameters, Model, ModelRun, Schema, TransformGraph
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
from sluice.components.trainer import workers
from sluice.components.trainer.workers import TrainingCall
from sluice.components.training.data import split_files
from sluice.components.training.distribution import is_chief, make_strategy
from sluice.components.training.fn_args import DataAccessor, FnArgs


def load_run_fn(module_file: str | None, run_fn: str | None) -> tuple[Callable, str]:
    """The user's ``run_fn`` and where it came from: a module file's, or a dotted
    ``"package.module.function"`` (exactly one of the two, as TFX's Trainer)."""
    return user_function(module_file, run_fn, "run_fn", "Trainer")


def _user_code_error(exc: BaseException, module_file: str) -> str:
    """One line for an exception raised by run_fn: the module file's innermost line and the error."""
    line = user_code_line(exc, module_file)
    where = f"{module_file}, line {line}" if line else module_file
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Trainer: run_fn in {where} failed: {type(exc).__name__}: {message}"[:1000]


def _flat_params(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_params(f"{name}.", value))
        else:
            flat[name] = str(value)[:500]  # MLflow's param value limit is generous; keep it tidy
    return flat


def _last_pushed_model(ctx: ExecutionContext) -> str | None:
    """The serving copy of the newest model this pipeline pushed, if it still exists."""
    if ctx.lookup is None:
        return None
    for pushed, _ in ctx.lookup.find_artifacts(ctx.pipeline_name, "PushedModel", lambda a: a.pushed):
        if pushed.destination and os.path.isdir(pushed.destination):
            return pushed.destination
    return None


def _hyperparameter_values(hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    """The values of a keras-tuner config (``{"space": ..., "values": ...}``), or the dict itself."""
    hyperparameters = hyperparameters or {}
    if isinstance(hyperparameters.get("values"), dict) and "space" in hyperparameters:
        return hyperparameters["values"]
    return hyperparameters


def _log_params(tracking_uri: str, run_id: str, call: TrainingCall, replicas: int) -> None:
    """The run's parameters, hyperparameters and custom config as MLflow params."""
    import mlflow.entities
    from mlflow.tracking import MlflowClient

    params = {"train_steps": str(call.train_steps), "eval_steps": str(call.eval_steps),
              "distribution": call.distribution, "num_replicas": str(replicas),
              **_flat_params("hp.", _hyperparameter_values(call.hyperparameters)),
              **_flat_params("config.", call.custom_config or {})}
    MlflowClient(tracking_uri).log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])


def _call_run_fn(run_fn: Callable, fn_args: FnArgs, source: str, scratch: str | None,
                 module_file: str | None) -> None:
    try:
        if module_file is not None:  # helpers beside it stay importable while it runs
            with module_directory_importable(module_file):
                run_fn(fn_args)
        else:
            run_fn(fn_args)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(_user_code_error(exc, source)) from exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_trainer(
    examples: Input[Examples],
    model: Output[Model],
    model_run: Output[ModelRun],
    train_steps: int,
    module_file: ModuleFile | None = None,
    run_fn: ModuleFunction | None = None,
    transform_graph: Input[TransformGraph] | None = None,
    schema: Input[Schema] | None = None,
    base_model: Input[Model] | None = None,
    eval_steps: int = 100,
    custom_config: dict[str, Any] | None = None,
    hyperparameters: Input[HyperParameters] | dict[str, Any] | None = None,
    distribution: Literal["auto", "mirrored", "multi_worker", "tpu", "one_device"] = "auto",
    cluster_spec: dict[str, Any] | None = None,
    num_workers: int = 1,
    train_splits: list[str] = ["train"],  # noqa: B006 - never mutated; the component's declared default
    eval_splits: list[str] = ["eval"],  # noqa: B006 - never mutated; the component's declared default
    warm_start_from_last_push: bool = False,
    ctx: ExecutionContext = None,
) -> None:
    """Trains a model with the module file's ``run_fn(fn_args)``.

    Exactly one of ``module_file`` (a .py defining ``run_fn``) or ``run_fn`` (a dotted
    ``"package.module.function"``) is required.

    ``hyperparameters``: a Tuner's ``best_hyperparameters`` (``run_fn`` gets its keras-tuner config, as
    in TFX: ``keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)``) or a dict as it is.

    ``distribution``: ``auto`` mirrors over GPUs when there are any, else the
    default strategy; ``mirrored``; ``multi_worker`` (TF_CONFIG or
    ``cluster_spec``: a TF_CONFIG-shaped dict; or neither, with ``num_workers`` > 1: the
    runner starts that many workers, worker 0 the chief: processes on loopback locally, a
    TFJob on Kubeflow); ``tpu``; ``one_device``.
    ``base_model``, when wired, is passed to ``run_fn`` for warm starts; with ``warm_start_from_last_push``
    and nothing wired, the base is the model this pipeline's Pusher pushed last (found in the metadata
    store), so retraining on a new span continues from the serving model.
    """
    ctx = ctx or ExecutionContext()
    if train_steps <= 0:
        raise ComponentError(f"Trainer: parameter 'train_steps' must be positive, got {train_steps}")
    source = load_run_fn(module_file, run_fn)[1]
    call = TrainingCall(
        examples=examples, model=model, model_run=model_run, train_steps=train_steps, module_file=module_file,
        run_fn=run_fn, transform_graph=transform_graph, schema=schema, eval_steps=eval_steps,
        custom_config=dict(custom_config) if custom_config is not None else None,  # None when unset, as TFX's
        hyperparameters=(hyperparameters.read() if isinstance(hyperparameters, HyperParameters)
                         else dict(hyperparameters) if hyperparameters is not None else None),
        base_model_dir=(base_model.serving_dir if base_model is not None
                        else _last_pushed_model(ctx) if warm_start_from_last_push else None),
        distribution=distribution, cluster_spec=cluster_spec, train_splits=list(train_splits),
        eval_splits=list(eval_splits))
    if not workers.launches_workers(distribution, cluster_spec, num_workers):
        train(call, ctx)
        return
    result = workers.run_workers(call, num_workers, ctx)
    if ctx.tracking_uri and ctx.mlflow_run_id:
        _log_params(ctx.tracking_uri, ctx.mlflow_run_id, call, result["replicas"])
    _record(model, train_steps, result["final_metrics"], source, ctx)


def train(call: TrainingCall, ctx: ExecutionContext) -> dict[str, Any]:
    """Trains in this process (one worker of a cluster, or alone); the chief records the model.
    Returns what a launching process needs: the replicas in sync and the final metrics."""
    user_fn, source = load_run_fn(call.module_file, call.run_fn)
    train_files = [f for split in call.train_splits for f in split_files(call.examples, split)]
    eval_files = [f for split in call.eval_splits for f in split_files(call.examples, split)]
    strategy = make_strategy(call.distribution, call.cluster_spec)
    chief = is_chief(strategy)

    # Non-chief workers must still save (saving is collective) but somewhere thrown away.
    scratch = None if chief else tempfile.mkdtemp(prefix="sluice-worker-model-")
    run_dir = call.model_run.uri if chief else scratch
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    tracking = ctx.tracking_uri if (ctx.tracking_uri and ctx.mlflow_run_id and chief) else None

    fn_args = FnArgs(
        train_files=train_files,
        eval_files=eval_files,
        transform_output=call.transform_graph.uri if call.transform_graph is not None else None,
        schema_path=call.schema.file if call.schema is not None else None,
        serving_model_dir=call.model.serving_dir if chief else os.path.join(scratch, "Format-Serving"),
        model_run_dir=run_dir,
        train_steps=call.train_steps,
        eval_steps=call.eval_steps,
        custom_config=call.custom_config,
        hyperparameters=call.hyperparameters,
        base_model=call.base_model_dir,
        strategy=strategy,
        is_chief=chief,
        tracking_uri=tracking,
        mlflow_run_id=ctx.mlflow_run_id if tracking else None,
        data_accessor=DataAccessor({tuple(train_files): call.train_steps, tuple(eval_files): call.eval_steps}),
    )
    if tracking:
        _log_params(tracking, ctx.mlflow_run_id, call, strategy.num_replicas_in_sync)
    _call_run_fn(user_fn, fn_args, source, scratch, call.module_file)
    if chief:
        _record(call.model, call.train_steps, fn_args.final_metrics, source, ctx)
    return {"replicas": strategy.num_replicas_in_sync, "final_metrics": dict(fn_args.final_metrics),
            "chief": chief}


def _record(model: Model, train_steps: int, final_metrics: dict[str, float], source: str,
            ctx: ExecutionContext) -> None:
    """Checks the chief's SavedModel exists; records metrics, and the model in MLflow."""
    if not os.path.isfile(os.path.join(model.serving_dir, "saved_model.pb")):
        raise ComponentError(f"Trainer: run_fn in {source} saved no SavedModel into "
                             f"fn_args.serving_model_dir")
    model.framework = "tensorflow"
    ctx.log_metric("train_steps", train_steps)
    ctx.log_metrics(final_metrics)
    if ctx.tracking_uri and ctx.mlflow_run_id:
        ctx.log_artifacts(model.serving_dir, "model")


Trainer = component(run_trainer, name="Trainer", warm_imports=("tensorflow",), workers_parameter="num_workers")
