"""Multi-worker training launched from a pipeline: the penguin pipeline with 2 Trainer workers
on loopback (MultiWorkerMirroredStrategy), and the one-line errors of bad settings."""

import json
import os
from pathlib import Path

import pytest

from sluice.components.sdk import ComponentError
from sluice.components.trainer.workers import launches_workers
from tests.pipelines.test_penguin import sluice


def test_settings_that_clash_are_one_line(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not launches_workers("auto", None, 1)
    assert launches_workers("multi_worker", None, 2)
    with pytest.raises(ComponentError, match=r"^Trainer: parameter 'num_workers' is 2, which needs "
                                             r"distribution='multi_worker' \(got 'auto'\)$"):
        launches_workers("auto", None, 2)
    with pytest.raises(ComponentError, match=r"not both$"):
        launches_workers("multi_worker", {"cluster": {}}, 2)
    with pytest.raises(ComponentError, match=r"must be at least 1, got 0$"):
        launches_workers("multi_worker", None, 0)


@pytest.mark.slow
def test_penguin_trains_with_two_local_workers(tmp_path):
    from mlflow.tracking import MlflowClient

    proc = sluice("run", "penguin", "--pipeline-root", str(tmp_path / "root"), "--json",
                  "--param", "trainer_workers=2", "--param", "train_steps=200", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    statuses = {c["type"]: c["status"] for c in doc["components"]}
    assert set(statuses.values()) == {"executed"}
    trainer = next(c for c in doc["components"] if c["type"] == "Trainer")
    # Both workers took part: two replicas in sync, recorded on the Trainer's MLflow run.
    client = MlflowClient(doc["tracking_uri"])
    params = client.get_run(trainer["execution_id"]).data.params
    assert params["distribution"] == "multi_worker" and params["num_replicas"] == "2"
    assert os.path.isfile(Path(trainer["outputs"]["model"][0], "Format-Serving", "saved_model.pb"))
    evaluator = next(c for c in doc["components"] if c["type"] == "Evaluator")
    metrics = json.loads(Path(evaluator["outputs"]["evaluation"][0], "metrics.json").read_text())
    assert metrics["overall"]["accuracy"] >= 0.9
    assert not [p for p in os.listdir("/tmp") if p.startswith("sluice-workers-") and
                os.path.getmtime(os.path.join("/tmp", p)) > os.path.getmtime(tmp_path / "root")]


def test_a_failing_worker_is_one_line_naming_it(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sluice.components.artifacts import Examples, Model, ModelRun
    from sluice.components.sdk import ExecutionContext
    from sluice.components.trainer import run_trainer

    monkeypatch.delenv("TF_CONFIG", raising=False)
    for split in ("train", "eval"):
        os.makedirs(tmp_path / "examples" / f"Split-{split}")
        pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "examples" / f"Split-{split}" / "part.parquet")
    module = tmp_path / "broken.py"
    module.write_text("def run_fn(fn_args):\n    raise RuntimeError('no data for ' + str(fn_args.train_steps))\n")
    for name in ("model", "run"):
        os.makedirs(tmp_path / name)
    with pytest.raises(ComponentError, match=r"^Trainer \(worker 0 of 2\): run_fn in .*broken\.py, line 2 failed: "
                                             r"RuntimeError: no data for 5$"):
        run_trainer(examples=Examples(uri=str(tmp_path / "examples"), split_names=["train", "eval"]),
                    model=Model(uri=str(tmp_path / "model")), model_run=ModelRun(uri=str(tmp_path / "run")),
                    module_file=str(module), train_steps=5, distribution="multi_worker", num_workers=2,
                    ctx=ExecutionContext())
