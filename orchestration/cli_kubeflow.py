"""The Kubeflow commands of ``sluice``: ``compile`` to KFP IR YAML, ``kfp submit`` and ``kfp schedule``."""

from __future__ import annotations

import os

import click

from sluice.orchestration.cli_output import CliError, echo
from sluice.orchestration.runtime import stderr


@click.command("compile")
@click.argument("pipeline")
@click.option("--target", default="kubeflow", show_default=True, help="Compilation target.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="YAML to write.")
@click.option("--image", help="Container image with Sluice installed (see infra/Dockerfile).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A create_pipeline parameter.")
@click.option("--tracking-uri", help="MLflow tracking URI the tasks log to (default: MLFLOW_TRACKING_URI in the pod).")
def compile_command(pipeline, target, output, image, params, tracking_uri):
    """Compile PIPELINE for Kubeflow Pipelines v2 (KFP IR YAML)."""
    stderr.quiet_libraries(False)
    from sluice.orchestration.kubeflow import compile_kubeflow
    from sluice.orchestration.loader import build_pipeline

    if target != "kubeflow":
        raise CliError(f"--target {target}: unknown target (known: kubeflow)")
    pipe = build_pipeline(pipeline, list(params))
    summary = compile_kubeflow(pipe, output, image=image, tracking_uri=tracking_uri, source=pipeline)
    echo(f"compiled {summary['pipeline']} ({len(summary['tasks'])} tasks) to {output}")
    for node_id, count in summary.get("worker_launchers", {}).items():
        echo(f"{node_id} launches its {count} workers as a TFJob (the task's service account needs create, get "
             f"and delete on tfjobs.kubeflow.org and get on pods)")


@click.group()
def kfp() -> None:
    """Submit and schedule pipelines on a Kubeflow Pipelines endpoint."""


def _kfp_options(fn):
    for opt in reversed([
        click.argument("pipeline"),
        click.option("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080."),
        click.option("--experiment", default=None, help="KFP experiment (default: the pipeline name)."),
        click.option("--image", help="Container image with Sluice installed (see infra/Dockerfile)."),
        click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A create_pipeline parameter."),
        click.option("--tracking-uri", help="MLflow tracking URI for the tasks."),
    ]):
        fn = opt(fn)
    return fn


def _compile_to_temp(pipeline, image, params, tracking_uri):
    import tempfile

    from sluice.orchestration.kubeflow import compile_kubeflow
    from sluice.orchestration.loader import build_pipeline

    pipe = build_pipeline(pipeline, list(params))
    path = os.path.join(tempfile.mkdtemp(prefix="sluice-"), f"{pipe.name}.yaml")
    compile_kubeflow(pipe, path, image=image, tracking_uri=tracking_uri, source=pipeline)
    return pipe, path


@kfp.command("submit")
@_kfp_options
def kfp_submit(pipeline, host, experiment, image, params, tracking_uri):
    """Compile PIPELINE and create one run of it on Kubeflow."""
    stderr.quiet_libraries(False)
    from sluice.orchestration.kubeflow import submit_run

    pipe, path = _compile_to_temp(pipeline, image, params, tracking_uri)
    run_id = submit_run(path, host, experiment or pipe.name)
    echo(f"submitted {pipe.name}: run {run_id} in experiment {experiment or pipe.name}")


@kfp.command("schedule")
@_kfp_options
@click.option("--cron", required=True, help="5-field cron in --timezone, e.g. '0 3 * * *'.")
@click.option("--timezone", "timezone_name", default="UTC", show_default=True)
@click.option("--catch-up", is_flag=True, help="Let KFP backfill missed runs.")
def kfp_schedule(pipeline, host, experiment, image, params, tracking_uri, cron, timezone_name, catch_up):
    """Compile PIPELINE and create a recurring run (converted to KFP's UTC cron)."""
    stderr.quiet_libraries(False)
    from sluice.orchestration.kubeflow import schedule_recurring_run
    from sluice.orchestration.scheduler import to_kfp_cron

    kfp_cron = to_kfp_cron(cron, timezone_name)
    pipe, path = _compile_to_temp(pipeline, image, params, tracking_uri)
    rid = schedule_recurring_run(path, host, experiment or pipe.name, f"{pipe.name}-recurring", kfp_cron, catch_up)
    echo(f"scheduled {pipe.name}: recurring run {rid}, cron '{cron}' in {timezone_name} "
         f"= KFP cron '{kfp_cron}' (UTC)")
