"""The taxi pipeline end to end, and retraining on a new data span."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA, _stop_group, start_at_module_start

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED_DATA / "chicago_taxi").is_dir(), reason="no ../shared/data")]


def sluice(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=900)


def metrics_of(doc):
    evaluator = next(c for c in doc["components"] if c["type"] == "Evaluator")
    with open(os.path.join(evaluator["outputs"]["evaluation"][0], "metrics.json")) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """(folder, the `sluice run taxi` on the whole data, still running): started at the module's start, so that
    the retraining test runs beside it (a `sluice run` keeps about one of CI's two cores busy)."""
    tmp_path = tmp_path_factory.mktemp("taxi")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    # Files, not pipes: nobody reads its output until its test.
    with open(tmp_path / "run.json", "w") as out, open(tmp_path / "run.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "sluice.orchestration.cli", "run", "taxi",
                                 "--param", f"data_root={SHARED_DATA / 'chicago_taxi'}",
                                 "--param", f"pipeline_root={tmp_path / 'root'}", "--json"],
                                stdout=out, stderr=err, cwd=tmp_path, env=env, start_new_session=True)
    yield tmp_path, proc
    if proc.poll() is None:  # its test was not selected, or failed before waiting
        _stop_group(proc)


@pytest.fixture(scope="module", autouse=True)
def _full_run_first(request):
    """Starts ``full_run`` at the module's start when its test is selected (that test is the module's last)."""
    start_at_module_start(request, "full_run")


def test_retraining_on_a_new_span_pushes_only_a_model_that_is_not_worse(tmp_path):
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    shutil.copy(SHARED_DATA / "chicago_taxi_spans" / "span-1" / "data.csv", data / "span-1" / "data.csv")
    args = ["run", "taxi", "--param", f"data_root={data}", "--param", "input_pattern=span-{SPAN}/data.csv",
            "--param", f"pipeline_root={tmp_path / 'root'}", "--param", "warm_start=true",
            "--param", "train_steps=400", "--json"]
    first = sluice(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run1 = json.loads(first.stdout)
    serving = tmp_path / "root" / "serving" / "taxi"
    assert sorted(os.listdir(serving)) == ["1"]

    # span-2 lands (it writes some integer columns as 480.0: types must not break)
    (data / "span-2").mkdir()
    shutil.copy(SHARED_DATA / "chicago_taxi_spans" / "span-2" / "data.csv", data / "span-2" / "data.csv")
    second = sluice(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    run2 = json.loads(second.stdout)
    assert {c["status"] for c in run2["components"]} == {"executed"}  # new data: everything re-runs
    gen = next(c for c in run2["components"] if c["type"] == "CsvExampleGen")
    from sluice.orchestration.metadata import MetadataStore, default_tracking_uri

    store = MetadataStore(default_tracking_uri(str(tmp_path / "root")))
    [examples] = store.executions(run2["run_id"])[0].outputs["examples"]
    assert examples.span == 2 and gen["outputs"]["examples"][0] == examples.uri

    m2 = metrics_of(run2)
    assert m2["baseline"] is not None  # compared against the blessed version-1 model, on span-2's eval data
    regression = next(t for t in m2["thresholds"] if t["kind"] == "max_regression")
    pushed = sorted(os.listdir(serving))
    if regression["passed"]:
        assert pushed == ["1", "2"]
    else:
        assert pushed == ["1"]

    listed = sluice("runs", "list", "taxi", "--pipeline-root", str(tmp_path / "root"), cwd=tmp_path)
    assert run1["run_id"] in listed.stdout and run2["run_id"] in listed.stdout
    assert "Pusher: pushed version 1" in listed.stdout
    assert ("Pusher: pushed version 2" in listed.stdout) == regression["passed"]
    if not regression["passed"]:
        assert "Pusher: not pushed:" in listed.stdout


def test_taxi_like_tfx_beats_the_one_line_rule(full_run):
    tmp_path, proc = full_run
    proc.wait(timeout=900)
    assert proc.returncode == 0, (tmp_path / "run.err").read_text()[-3000:]
    doc = json.loads((tmp_path / "run.json").read_text())
    assert len(doc["components"]) == 8 and {c["status"] for c in doc["components"]} == {"executed"}
    overall = metrics_of(doc)["overall"]
    assert overall["binary_accuracy"] >= 0.88, overall
    assert 0.5 < overall["auc"] <= 1.0
    assert "payment_type=Credit Card" in metrics_of(doc)["slices"]
    from tests.pipelines.champion import check_pyfunc_champion

    check_pyfunc_champion(doc, "taxi", "outputs")  # binary: one probability per row
