"""The ``sluice`` command line.

Every failure ends with a non-zero exit and one line on stderr naming the
culprit; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys

import click

from sluice.components.sdk import ComponentError, DefinitionError
from sluice.orchestration.cli_kubeflow import compile_command, kfp
from sluice.orchestration.cli_output import (
    CliError,
    echo,
    echo_json,
    failed_json,
    is_store_error,
    print_lineage,
    print_result,
    print_run,
    print_runs,
    run_json,
)
from sluice.orchestration.runtime import stderr

DEFAULT_ROOT_ENV = "SLUICE_PIPELINE_ROOT"
_STDERR_IS_TTY = False
_RUN_ROOT_HELP = (f"The run's root, also create_pipeline's pipeline_root and so what defaults under it "
                  f"(default: ${DEFAULT_ROOT_ENV} or ./sluice_runs).")


def _default_root() -> str:
    return os.environ.get(DEFAULT_ROOT_ENV) or "sluice_runs"


def _run_root(option: str | None, params: list[str]) -> str:
    """The one root of a run: --pipeline-root, else --param pipeline_root=, else $SLUICE_PIPELINE_ROOT
    or ./sluice_runs. ``build_pipeline`` hands it to create_pipeline and the Pipeline."""
    given = next((p.split("=", 1)[1] for p in params if p.startswith("pipeline_root=")), None)
    return _absolute(option or given or _default_root())


def _store(pipeline_root: str | None, tracking_uri: str | None):
    from sluice.orchestration import roots
    from sluice.orchestration.metadata import MetadataStore, default_tracking_uri

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        root = _absolute(pipeline_root or _default_root())
        db = roots.store_file(root)
        if not os.path.exists(db):
            raise CliError(f"no metadata store at {db} (run a pipeline first, or pass --pipeline-root/--tracking-uri)")
        uri = default_tracking_uri(root)
    return MetadataStore(uri, artifact_root=pipeline_root)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and library logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Sluice: production ML pipelines (TFX components, MLflow metadata, Beam, Kubeflow)."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# Kubeflow's commands: cli_kubeflow.py.
cli.add_command(compile_command)
cli.add_command(kfp)


def _common_store_options(fn):
    fn = click.option("--tracking-uri", help="MLflow tracking URI (default: SQLite under the pipeline root).")(fn)
    fn = click.option("--pipeline-root", type=click.Path(file_okay=False),
                      help=f"Pipeline root (default: ${DEFAULT_ROOT_ENV} or ./sluice_runs).")(fn)
    return fn


@cli.command()
@click.argument("pipeline")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A create_pipeline parameter.")
@click.option("--pipeline-root", type=click.Path(file_okay=False),
              help=_RUN_ROOT_HELP)
@click.option("--tracking-uri", help="MLflow tracking URI (default: SQLite under the pipeline root).")
@click.option("--no-cache", is_flag=True, help="Execute every component, ignoring the cache.")
@click.option("--max-parallel", type=click.IntRange(1, 64), default=None, help="Components run at once.")
@click.option("--resume", metavar="RUN_ID", help="Continue a failed run, reusing its completed components.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document describing the run.")
@click.option("--debug", is_flag=True, help="Show tracebacks and library logs.")
@click.pass_context
def run(ctx, pipeline, params, pipeline_root, tracking_uri, no_cache, max_parallel, resume, as_json, debug):
    """Run PIPELINE (a name under pipelines/, or a .py file) locally."""
    ctx.obj["debug"] = ctx.obj.get("debug") or debug
    stderr.quiet_libraries(ctx.obj["debug"])
    root = _run_root(pipeline_root, list(params))
    known = {"pipeline": pipeline}  # the pipeline's name, once it is built
    try:
        with stderr.stdout_to_stderr(as_json):
            result, progress = _run(known, params, root, tracking_uri, no_cache, max_parallel, resume, as_json)
    except Exception as exc:
        if as_json:  # the document says it failed, whatever failed: the pipeline module, the store...
            echo_json(failed_json(known["pipeline"], root, tracking_uri, exc))
        raise
    if as_json:
        echo_json(result.to_json())
    else:
        print_result(result, components=not progress.enabled)  # the terminal showed them already
    if not result.ok:
        failed = next((c for c in result.components if c.status == "failed"), None)
        detail = f" (log: {failed.log})" if failed is not None and failed.log else ""
        raise CliError(f"{result.error}{detail}")


def _run(known, params, root, tracking_uri, no_cache, max_parallel, resume, as_json):
    from sluice.orchestration.loader import build_pipeline
    from sluice.orchestration.local_runner import Progress, run_pipeline

    pipe = build_pipeline(known["pipeline"], list(params), pipeline_root=root)
    known["pipeline"] = pipe.name
    progress = Progress(enabled=None if not as_json else False, terminal=_STDERR_IS_TTY,
                        stream=stderr.progress_stream())
    if progress.enabled:
        echo(f"Running pipeline {pipe.name} ({len(pipe.components)} components)", err=True)
    result = run_pipeline(pipe, tracking_uri=tracking_uri, enable_cache=False if no_cache else None,
                          max_parallel=max_parallel, progress=progress, resume=resume)
    return result, progress


def _absolute(root: str) -> str:
    return root if "://" in root else os.path.abspath(root)


@cli.command()
@click.argument("pipeline")
@click.option("--cron", help="5-field cron expression, e.g. '0 3 * * *'.")
@click.option("--timezone", "timezone_name", default="UTC", show_default=True, help="IANA time zone of --cron.")
@click.option("--on-new-span", is_flag=True, help="Run when a new {SPAN} of an input lands.")
@click.option("--poll", type=click.FloatRange(0.1), default=60.0, show_default=True, help="Seconds between checks.")
@click.option("--catch-up", is_flag=True, help="Replay runs missed while the scheduler was down.")
@click.option("--once", is_flag=True, help="Print the next run times and exit.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A create_pipeline parameter.")
@click.option("--pipeline-root", type=click.Path(file_okay=False),
              help=_RUN_ROOT_HELP)
@click.option("--tracking-uri", help="MLflow tracking URI (default: SQLite under the pipeline root).")
def schedule(pipeline, cron, timezone_name, on_new_span, poll, catch_up, once, params, pipeline_root, tracking_uri):
    """Run PIPELINE on a cron schedule or when new data lands (foreground; stops on SIGTERM)."""
    import signal

    stderr.quiet_libraries(False)
    logging.getLogger("sluice.scheduler").setLevel(logging.INFO)
    from sluice.orchestration import roots
    from sluice.orchestration.loader import build_pipeline
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import compile_pipeline
    from sluice.orchestration.scheduler import CronSchedule, Scheduler, SpanWatcher

    if bool(cron) == bool(on_new_span):
        raise CliError("schedule: give exactly one of --cron or --on-new-span")
    root = _run_root(pipeline_root, list(params))
    pipe = build_pipeline(pipeline, list(params), pipeline_root=root)
    cron_schedule = CronSchedule(cron, timezone_name) if cron else None
    watcher = SpanWatcher(compile_pipeline(pipe)) if on_new_span else None
    if once:
        if cron_schedule:
            for t in cron_schedule.times_after(datetime.datetime.now(datetime.UTC), 5):
                echo(f"{t.isoformat()}  ({t.astimezone(datetime.UTC).strftime('%Y-%m-%d %H:%M')} UTC)")
        else:
            echo(f"latest span now: {watcher.latest_span()}; watching {', '.join(watcher.patterns)}")
        return

    def job():
        return run_pipeline(build_pipeline(pipeline, list(params), pipeline_root=root), tracking_uri=tracking_uri)

    scheduler = Scheduler(job, os.path.join(roots.local_root(root), ".scheduler"), pipe.name, catch_up=catch_up)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    echo(f"scheduling {pipe.name}: " + (f"cron '{cron}' in {timezone_name}" if cron else
                                        f"on new span (poll {poll:g}s)"), err=True)
    if cron_schedule:
        scheduler.run_cron(cron_schedule)
    else:
        scheduler.run_on_new_span(watcher, poll)
    echo("scheduler stopped", err=True)


@cli.group()
def runs() -> None:
    """Inspect pipeline runs recorded in the metadata store."""


@runs.command("list")
@click.argument("pipeline", required=False)
@_common_store_options
@click.option("--json", "as_json", is_flag=True)
def runs_list(pipeline, pipeline_root, tracking_uri, as_json):
    """List runs (newest first), optionally of one PIPELINE."""
    stderr.quiet_libraries(False)
    store = _store(pipeline_root, tracking_uri)
    items = store.list_pipeline_runs(pipeline)
    if as_json:
        echo_json([run_json(r, store) for r in items])
        return
    print_runs(items, store)


@runs.command("show")
@click.argument("run_id")
@_common_store_options
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id, pipeline_root, tracking_uri, as_json):
    """Show one run: every component, its status, outputs and errors."""
    stderr.quiet_libraries(False)
    from sluice.orchestration.metadata import StoreError

    store = _store(pipeline_root, tracking_uri)
    try:
        run_record = store.get_pipeline_run(run_id)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    executions = store.executions(run_id)
    if as_json:
        echo_json({**run_json(run_record), "components": [e.to_json() for e in executions]})
        return
    print_run(run_record, executions)


@cli.command()
@click.argument("artifact_uri")
@_common_store_options
@click.option("--json", "as_json", is_flag=True)
def lineage(artifact_uri, pipeline_root, tracking_uri, as_json):
    """Show the executions and artifacts upstream and downstream of ARTIFACT_URI."""
    stderr.quiet_libraries(False)
    from sluice.orchestration.lineage import walk_lineage

    store = _store(pipeline_root, tracking_uri)
    # As recorded: absolute, without a trailing slash (a shell's completion adds one to folders).
    artifact_uri = (artifact_uri if "://" in artifact_uri else os.path.abspath(artifact_uri)).rstrip("/") or "/"
    graph = walk_lineage(store, artifact_uri)
    if graph is None:
        raise CliError(f"{artifact_uri}: no artifact with this URI in {store.tracking_uri}")
    if as_json:
        echo_json(graph)
        return
    print_lineage(graph)


@cli.command()
@_common_store_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def ui(pipeline_root, tracking_uri, host, port):
    """Start the MLflow UI on the pipeline's metadata store."""
    store = _store(pipeline_root, tracking_uri)
    if "://" in store.tracking_uri and store.tracking_uri.split("://")[0] in ("http", "https"):
        from sluice.orchestration.secrets import mask_uri

        echo(f"the store is a tracking server: open {mask_uri(store.tracking_uri)}")
        return
    # The store's URI goes by environment, not argv: a password in it would show in `ps`.
    argv = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port)]
    echo(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)", err=True)
    for name, address in _experiment_addresses(store.tracking_uri, f"http://{host}:{port}"):
        echo(f"  {name}: {address}", err=True)

    # The UI only reads runs: no background job workers.
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": store.tracking_uri,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}
    _serve_until_stopped(argv, env)


def _experiment_addresses(tracking_uri: str, base: str) -> list[tuple[str, str]]:
    """Each pipeline's experiment page in the UI's model-training view. MLflow 3's UI opens in its
    GenAI (traces) view whatever the experiment says, unless the address asks; its own links keep
    the choice within an experiment."""
    from mlflow.tracking import MlflowClient

    experiments = MlflowClient(tracking_uri).search_experiments()
    return [(e.name, f"{base}/#/experiments/{e.experiment_id}?workflowType=machine_learning")
            for e in experiments if e.name != "Default"]


@cli.command()
@click.argument("model_name")
@_common_store_options
@click.option("--alias", default="champion", show_default=True, help="the registered version to serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=int)
def serve(model_name, pipeline_root, tracking_uri, alias, host, port):
    """Serve MODEL_NAME@champion (the Pusher's registered model: the pipeline's name unless its
    registered_model_name says otherwise) over HTTP with ``mlflow models serve`` (no Docker):
    POST raw rows to /invocations, e.g. {"dataframe_records": [{"island": "Biscoe", ...}]}."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from sluice.orchestration.secrets import mask_uri

    store = _store(pipeline_root, tracking_uri)
    try:
        version = MlflowClient(store.tracking_uri).get_model_version_by_alias(model_name, alias)
    except MlflowException:
        raise CliError(f"no registered model '{model_name}' with alias '{alias}' in {mask_uri(store.tracking_uri)} "
                       "(a Pusher with a tracking URI registers it)") from None
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{model_name}@{alias}",
            "--env-manager", "local", "--host", host, "--port", str(port)]
    echo(f"serving {model_name} version {version.version} (@{alias}) on http://{host}:{port}/invocations "
         "(Ctrl-C to stop)", err=True)
    # The store's URI goes by environment, not argv: a password in it would show in `ps`. MLflow
    # starts `uvicorn` by name: this environment's scripts come first on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    _serve_until_stopped(argv, {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri, "PATH": path})


def _serve_until_stopped(argv: list[str], env: dict[str, str]) -> None:
    """Runs a server in its own process group (stopping it stops its web workers too) until it
    ends, this process gets SIGTERM, or Ctrl-C."""
    import signal
    import subprocess

    server = subprocess.Popen(argv, env=env, start_new_session=True)

    def stop(*_):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)  # never orphan the server
    try:
        server.wait()
    except KeyboardInterrupt:
        stop()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors, tracebacks only with --debug; credentials masked everywhere."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    global _STDERR_IS_TTY
    _STDERR_IS_TTY = sys.stderr.isatty()  # before the filter puts a pipe on fd 2
    try:
        with stderr.masked_stdout(), stderr.filtered_stderr(quiet=not debug):
            return _main(argv, debug)
    finally:
        sys.stdout.flush()


def _main(argv: list[str], debug: bool) -> int:
    try:
        cli.main(args=argv, prog_name="sluice", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        echo("error: aborted", err=True)
        return 130
    except click.UsageError as exc:
        hint = f" (see 'sluice {exc.ctx.command_path.split(' ', 1)[-1]} --help')" if exc.ctx else ""
        echo(f"error: {exc.format_message()}{hint}".replace("\n", " "), err=True)
        return 2
    except (CliError, DefinitionError, ComponentError) as exc:
        return _fail(exc, debug)
    except Exception as exc:  # noqa: BLE001 - last resort: still one line
        return _fail(exc, debug, prefix="" if is_store_error(exc) else f"{type(exc).__name__}: ")


def _fail(exc: BaseException, debug: bool, prefix: str = "") -> int:
    if debug:
        from sluice.orchestration.runtime.log_masking import print_masked_traceback

        sys.stdout.flush()
        print_masked_traceback(exc)
    text = str(exc).strip() or type(exc).__name__
    # A failed run may carry a component's readable block (e.g. the anomalies
    # found); everything else is one line.
    message = text if isinstance(exc, CliError) else text.splitlines()[0]
    echo(f"error: {prefix}{message}", err=True)
    return 1


def entry_point() -> None:
    """The ``sluice`` console script: ``main``, then a fast exit.

    Everything is recorded by then; the exit handlers run, the interpreter's teardown
    is skipped (``runtime.exit``).
    """
    from sluice.orchestration.runtime.exit import exit_now

    exit_now(main())


if __name__ == "__main__":
    entry_point()
