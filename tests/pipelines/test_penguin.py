"""The penguin pipeline end to end: `sluice run`, and the same pipeline compiled
for Kubeflow and run with kfp.local, which must give the same kinds of
artifacts and the same blessing."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, _stop_group, start_at_module_start

pytestmark = pytest.mark.slow

COMPONENTS = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher"]


def _env():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_PIPELINE_ROOT", None)
    return env


def sluice(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=_env(), timeout=900)


@pytest.fixture(scope="module")
def local_run(penguin_golden):
    """(workspace, the run's JSON, the run): the session's ``sluice run penguin --pipeline-root ws/root --json``
    in ws, restored to how that run left it."""
    penguin_golden.checkout()
    return penguin_golden.ws, penguin_golden.doc, penguin_golden


@pytest.fixture(scope="module")
def cached_rerun(local_run):
    """The JSON of one more `sluice run penguin --json` on the same root."""
    ws = local_run[0]
    proc = sluice("run", "penguin", "--pipeline-root", str(ws / "root"), "--json", cwd=ws)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def kfp_local(tmp_path_factory):
    """(folder, the compile, the kfp.local run of the compiled pipeline, still running): started before the
    module's other tests, which run beside it (a `sluice run` keeps about one of CI's two cores busy)."""
    tmp_path = tmp_path_factory.mktemp("penguin-kfp")
    yaml_path = tmp_path / "penguin.yaml"
    compiled = sluice("compile", "penguin", "--target", "kubeflow", "-o", str(yaml_path), "--image", "sluice:test",
                      "--param", f"pipeline_root={tmp_path / 'root'}", "--param",
                      f"serving_dir={tmp_path / 'serving'}", cwd=tmp_path)
    code = (
        "import sys\n"
        "from kfp import local, components\n"
        "local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])\n"
        "components.load_component_from_file(sys.argv[1])()\n"
    )
    # Files, not pipes: nobody reads its output until its test.
    with open(tmp_path / "kfp.out", "w") as out, open(tmp_path / "kfp.err", "w") as err:
        run = subprocess.Popen([sys.executable, "-c", code, str(yaml_path), str(tmp_path / "kfp")],
                               stdout=out, stderr=err, env=_env(), cwd=tmp_path, start_new_session=True)
    yield tmp_path, compiled, run
    if run.poll() is None:  # its test was not selected, or failed before waiting
        _stop_group(run)


@pytest.fixture(scope="module", autouse=True)
def _kfp_first(request):
    """Starts ``kfp_local`` at the module's start when its test is selected (that test is the module's last)."""
    start_at_module_start(request, "kfp_local")


def test_sluice_run_penguin_runs_all_eight_components_and_pushes(local_run):
    ws, doc, run = local_run
    assert [c["type"] for c in doc["components"]] == COMPONENTS
    assert {c["status"] for c in doc["components"]} == {"executed"}
    evaluator = next(c for c in doc["components"] if c["type"] == "Evaluator")
    blessing = evaluator["outputs"]["blessing"][0]
    assert os.path.exists(os.path.join(blessing, "BLESSED"))
    metrics = json.loads(Path(evaluator["outputs"]["evaluation"][0], "metrics.json").read_text())
    assert metrics["overall"]["accuracy"] >= 0.9
    assert any(k.startswith("island=") for k in metrics["slices"])
    # --pipeline-root moves everything, the default serving folder included: nothing lands in the cwd.
    assert os.path.isdir(ws / "root" / "serving" / "penguin" / "1")
    assert run.cwd_entries == ["root"]
    # stderr carries no native-library chatter or Python warnings
    assert "oneDNN" not in run.stderr and "Warning" not in run.stderr, run.stderr[-2000:]


def test_the_run_leaves_nothing_in_its_temp_folder(local_run):
    """TensorFlow's AutoGraph writes a temporary module per traced function and removes it at exit:
    the CLI's fast exit runs the exit handlers first."""
    assert local_run[2].temp_entries == []


def test_rerun_is_fully_cached(local_run, cached_rerun):
    _, first, _ = local_run
    doc = cached_rerun
    assert {c["status"] for c in doc["components"]} == {"cached"}, [(c["id"], c["status"]) for c in doc["components"]]
    assert [c["outputs"] for c in doc["components"]] == [c["outputs"] for c in first["components"]]


def test_tune_adds_a_tuner_whose_best_values_the_trainer_trains_with(tmp_path):
    from mlflow.tracking import MlflowClient

    proc = sluice("run", "penguin", "--pipeline-root", str(tmp_path / "root"), "--param", "tune=true",
                  "--param", "tuner_trials=2", "--param", "tuner_steps=20", "--param", "train_steps=100",
                  "--param", "min_accuracy=0.5", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert [c["type"] for c in doc["components"]] == [*COMPONENTS[:5], "Tuner", *COMPONENTS[5:]]
    tuner = next(c for c in doc["components"] if c["type"] == "Tuner")
    best = json.loads(Path(tuner["outputs"]["best_hyperparameters"][0], "best_hyperparameters.txt").read_text())
    client = MlflowClient(doc["tracking_uri"])
    runs = {r.info.run_name: r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
    trainer = runs["Trainer"]
    assert {k: trainer.data.params[f"hp.{k}"] for k in best["values"]} == {k: str(v) for k, v in best["values"].items()}
    trials = [r for name, r in runs.items() if name.startswith("trial ")]
    assert len(trials) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {runs["Tuner"].info.run_id}


def test_the_champion_is_an_mlflow_model_and_sluice_serve_answers_http(local_run):
    import socket
    import time
    import urllib.request

    from tests.pipelines.champion import check_pyfunc_champion

    ws, doc, _ = local_run
    table, expected = check_pyfunc_champion(doc, "penguin", "probabilities")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "sluice.orchestration.cli", "serve", "penguin",
                               "--pipeline-root", str(ws / "root"), "--port", str(port)],
                              cwd=ws, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()[-3000:]
                time.sleep(0.5)
        records = json.loads(table.to_pandas().to_json(orient="records"))  # NaN as null, as a client sends
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                         data=json.dumps({"dataframe_records": records}).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.terminate()
        server.wait(30)
    np.testing.assert_allclose(np.array(answer["predictions"]), expected, rtol=1e-5, atol=1e-6)


def test_serve_without_a_registered_model_is_one_line(local_run, tmp_path):
    ws, _, _ = local_run
    proc = sluice("serve", "nothing", "--pipeline-root", str(ws / "root"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: no registered model 'nothing' with alias 'champion' in sqlite:///"), proc.stderr


def test_mlflow_shows_the_pipeline_run_its_parameters_metrics_and_cached_children(local_run, cached_rerun):
    from mlflow.tracking import MlflowClient

    ws, doc, _ = local_run
    second = cached_rerun
    client = MlflowClient(doc["tracking_uri"])
    experiment = client.get_experiment_by_name("penguin")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view
    parent = client.get_run(doc["run_id"])
    assert parent.data.params["train_steps"] == "300" and parent.data.params["min_accuracy"] == "0.9"
    assert parent.data.params["pipeline_root"] == str(ws / "root")  # relative paths recorded absolute
    assert 0.9 <= parent.data.metrics["Evaluator.accuracy"] <= 1.0
    note = parent.data.tags["mlflow.note.content"]
    assert "- **Pusher** executed: pushed version 1" in note and "- **Trainer** executed" in note
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{second['run_id']}'")
    assert sorted(r.info.run_name for r in children) == sorted(f"{c} (cached)" for c in COMPONENTS)
    assert all(r.data.tags["mlflow.note.content"].startswith("Cached: reuses the outputs of [execution ")
               for r in children)
    # Each execution's description: its inputs linked to the runs that made them, and its outputs.
    run_of = {c["id"]: c["execution_id"] for c in doc["components"]}
    trainer_note = client.get_run(run_of["Trainer"]).data.tags["mlflow.note.content"]
    assert (f"- `transform_graph`: TransformGraph `{doc['components'][4]['outputs']['transform_graph'][0]}` "
            f"from [run {run_of['Transform']}](#/experiments/{experiment.experiment_id}/runs/{run_of['Transform']})"
            ) in trainer_note
    assert "**Outputs**\n- `model`: Model `" in trainer_note


def test_each_components_reports_and_small_outputs_are_mlflow_artifacts(local_run):
    from mlflow.tracking import MlflowClient

    _, doc, _ = local_run
    client = MlflowClient(doc["tracking_uri"])
    run_of = {c["id"]: c["execution_id"] for c in doc["components"]}

    def files(component: str, path: str = "outputs") -> set[str]:
        found, stack = set(), [path]
        while stack:
            for item in client.list_artifacts(run_of[component], stack.pop()):
                (stack.append(item.path) if item.is_dir else found.add(item.path))
        return found

    assert {"outputs/statistics/Split-train/FeatureStats.pb", "outputs/statistics/report.html"} \
        <= files("StatisticsGen")
    assert "outputs/schema/schema.pbtxt" in files("SchemaGen")
    assert {"outputs/evaluation/metrics.json", "outputs/blessing/BLESSED"} <= files("Evaluator")
    assert "outputs/transform_graph/analysis.json" in files("Transform")
    assert not any("saved_model.pb" in f for f in files("Trainer") | files("Transform"))  # models stay put
    evaluator = client.get_run(run_of["Evaluator"]).data.metrics
    assert 0.0 <= evaluator["slice/island: Biscoe/accuracy"] <= 1.0


def test_the_terminal_says_what_happened(local_run):
    ws, doc, _ = local_run
    rerun = sluice("run", "penguin", "--pipeline-root", str(ws / "root"), cwd=ws)  # cached, plain text
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    lines = rerun.stdout.splitlines()
    assert any(line.startswith("Evaluator: blessed: accuracy ") and ">= 0.9" in line for line in lines), lines
    assert "Pusher: nothing new to push (cached; version 1 stays)" in lines
    reports = lines[lines.index("reports:") + 1:]
    assert any(line.strip().startswith("evaluation: ") and line.endswith("report.html") for line in reports)
    shown = sluice("runs", "show", doc["run_id"], "--pipeline-root", str(ws / "root"), cwd=ws)
    assert "registered as penguin version 1 @champion" in shown.stdout
    assert "      metrics: accuracy " in shown.stdout
    trainer = next(c for c in doc["components"] if c["type"] == "Trainer")
    relative = os.path.relpath(trainer["outputs"]["model"][0], ws) + "/"  # as a shell completes it
    lineage = sluice("lineage", relative, "--pipeline-root", str(ws / "root"), cwd=ws)
    assert lineage.returncode == 0, lineage.stderr
    assert lineage.stdout.startswith(f"artifact Model {trainer['outputs']['model'][0]}\n")


def test_compiled_penguin_runs_on_kfp_local_with_the_same_artifacts_and_blessing(local_run, kfp_local):
    ws, doc, _ = local_run
    tmp_path, compiled, run = kfp_local
    assert compiled.returncode == 0, compiled.stderr
    run.wait(timeout=1200)
    assert run.returncode == 0, (tmp_path / "kfp.out").read_text()[-3000:] + (tmp_path / "kfp.err").read_text()[-3000:]
    kroot = tmp_path / "kfp"

    kinds = {}
    for path in glob.glob(str(kroot / "*" / "*" / "executor_output.json")):
        outputs = json.loads(Path(path).read_text()).get("artifacts", {})
        for name, group in outputs.items():
            meta = group["artifacts"][0].get("metadata", {})
            if "sluice" in meta:
                kinds[name] = meta["sluice"]["type"]
                assert meta["sluice_type"] == f"sluice.{kinds[name]}"  # what KFP's UI lists
    local_kinds = {}
    from sluice.orchestration.metadata import MetadataStore, default_tracking_uri

    store = MetadataStore(default_tracking_uri(str(ws / "root")))
    for execution in store.executions(doc["run_id"]):
        for name, arts in execution.outputs.items():
            local_kinds[name] = arts[0].TYPE_NAME
    assert kinds == local_kinds
    [blessing] = glob.glob(str(kroot / "*" / "sluice-evaluator" / "blessing" / "*BLESSED"))
    local_evaluator = next(c for c in doc["components"] if c["type"] == "Evaluator")
    local_blessing = os.listdir(local_evaluator["outputs"]["blessing"][0])
    assert os.path.basename(blessing) in local_blessing
    assert os.path.isdir(tmp_path / "serving" / "1")
    # The Kubeflow UI gets HTML reports and the evaluation's metrics.
    [report] = glob.glob(str(kroot / "*" / "sluice-statisticsgen" / "statistics_report"))
    assert "<h1>Statistics</h1>" in Path(report).read_text()  # the side-by-side page, as it is
    [evaluator_out] = glob.glob(str(kroot / "*" / "sluice-evaluator" / "executor_output.json"))
    metrics = json.loads(Path(evaluator_out).read_text())["artifacts"]["evaluation_metrics"]["artifacts"][0]["metadata"]
    assert metrics["accuracy"] >= 0.9
    # Every task logged its execution to MLflow under one pipeline run.
    kstore = MetadataStore(default_tracking_uri(str(kroot)))
    [krun] = kstore.list_pipeline_runs("penguin")
    assert sorted(e.component_type for e in kstore.executions(krun.id)) == sorted(COMPONENTS)
    assert krun.status == "executed"
