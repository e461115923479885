"""The penguin pipeline end to end: `sluice run`, and the same pipeline compiled
for Kubeflow and run with kfp.local, which must give the same kinds of
artifacts and the same blessing."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

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
def local_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("penguin")
    proc = sluice("run", "penguin", "--pipeline-root", str(ws / "root"), "--json", cwd=ws)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, json.loads(proc.stdout), proc


def test_sluice_run_penguin_runs_all_eight_components_and_pushes(local_run):
    ws, doc, proc = local_run
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
    assert os.listdir(ws) == ["root"]
    # stderr carries no native-library chatter or Python warnings
    assert "oneDNN" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr[-2000:]


def test_rerun_is_fully_cached(local_run):
    ws, first, _ = local_run
    proc = sluice("run", "penguin", "--pipeline-root", str(ws / "root"), "--json", cwd=ws)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert {c["status"] for c in doc["components"]} == {"cached"}, [(c["id"], c["status"]) for c in doc["components"]]
    assert [c["outputs"] for c in doc["components"]] == [c["outputs"] for c in first["components"]]


def test_compiled_penguin_runs_on_kfp_local_with_the_same_artifacts_and_blessing(local_run, tmp_path):
    ws, doc, _ = local_run
    yaml_path = tmp_path / "penguin.yaml"
    proc = sluice("compile", "penguin", "--target", "kubeflow", "-o", str(yaml_path), "--image", "sluice:test",
                  "--param", f"pipeline_root={tmp_path / 'root'}", "--param", f"serving_dir={tmp_path / 'serving'}",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    kroot = tmp_path / "kfp"
    code = (
        "import sys\n"
        "from kfp import local, components\n"
        "local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])\n"
        "components.load_component_from_file(sys.argv[1])()\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(yaml_path), str(kroot)], capture_output=True, text=True,
                         env=_env(), timeout=1200, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    kinds = {}
    for path in glob.glob(str(kroot / "*" / "*" / "executor_output.json")):
        outputs = json.loads(Path(path).read_text()).get("artifacts", {})
        for name, group in outputs.items():
            meta = group["artifacts"][0].get("metadata", {})
            if "sluice" in meta:
                kinds[name] = meta["sluice"]["type"]
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
    assert "<section>" in Path(report).read_text()
    [evaluator_out] = glob.glob(str(kroot / "*" / "sluice-evaluator" / "executor_output.json"))
    metrics = json.loads(Path(evaluator_out).read_text())["artifacts"]["evaluation_metrics"]["artifacts"][0]["metadata"]
    assert metrics["accuracy"] >= 0.9
    # Every task logged its execution to MLflow under one pipeline run.
    kstore = MetadataStore(default_tracking_uri(str(kroot)))
    [krun] = kstore.list_pipeline_runs("penguin")
    assert sorted(e.component_type for e in kstore.executions(krun.id)) == sorted(COMPONENTS)
    assert krun.status == "executed"


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
