"""The README's team setup: pipelines against an `mlflow server` over PostgreSQL 15, on loopback.

The server (``team_server`` in ``tests/conftest.py``) serves artifacts itself
(``--artifacts-destination``). Every run is a ``sluice run`` subprocess, the
Pusher included: its model is uploaded to its run's artifacts and registered
through the server; alias ``champion`` ends on the newest pushed version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.slow

COMPONENTS = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher"]
# Taxi trained briefly and blessed whatever its accuracy: this test is about the store, not the model.
TAXI = ["--param", f"data_root={SHARED_DATA / 'chicago_taxi'}", "--param", "train_steps=60", "--param", "eval_steps=10",
        "--param", "min_accuracy=0", "--param", "max_accuracy_regression=1"]


def start(pipeline: str, root: Path, url: str, *params: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("MLFLOW_TRACKING_URI", "SLUICE_PIPELINE_ROOT", "SLUICE_FAULT"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.orchestration.cli", "run", pipeline, "--pipeline-root", str(root),
         "--tracking-uri", url, "--json", *params],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root.parent)


def finish(procs: list[subprocess.Popen]) -> list[dict]:
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        docs.append(json.loads(out))
    return docs


def push_of(doc: dict) -> tuple[dict, dict]:
    """The run's Pusher (from the JSON document) and its push record."""
    comp = next(c for c in doc["components"] if c["id"] == "Pusher")
    return comp, json.loads(Path(comp["outputs"]["pushed_model"][0], "push.json").read_text())


def check_children(url: str, docs: list[dict]) -> None:
    """Each pipeline run has exactly its eight executions, all executed, none shared."""
    from sluice.orchestration.metadata import MetadataStore

    store = MetadataStore(url)
    seen = set()
    for doc in docs:
        assert doc["status"] == "executed" and store.get_pipeline_run(doc["run_id"]).status == "executed"
        records = store.executions(doc["run_id"])
        assert sorted(r.component_id for r in records) == sorted(COMPONENTS)
        assert {r.status for r in records} == {"executed"}
        assert {r.pipeline_run_id for r in records} == {doc["run_id"]}
        seen.update(r.id for r in records)
    assert len(seen) == 8 * len(docs)


def check_registry(url: str, name: str, before: int, docs: list[dict]) -> None:
    """The pushes of ``docs`` are versions ``before + 1`` onwards, one each, champion on the newest."""
    from mlflow.tracking import MlflowClient

    from sluice.components import pusher

    client = MlflowClient(url)
    new = sorted((v for v in client.search_model_versions(f"name = '{name}'") if int(v.version) > before),
                 key=lambda v: int(v.version))
    pushes = [push_of(doc) for doc in docs]
    pushed = {comp["execution_id"]: record for comp, record in pushes if record["pushed"]}
    assert [int(v.version) for v in new] == list(range(before + 1, before + 1 + len(pushed)))
    assert {v.tags[pusher.EXECUTION_TAG] for v in new} == set(pushed)
    for version in new:
        record = pushed[version.run_id]
        assert version.tags[pusher.EXECUTION_TAG] == version.run_id  # nobody was killed
        assert record["registered_model"]["version"] == int(version.version)
        assert version.tags[pusher.SERVING_TAG] == record["destination"]
        marker = pusher.read_marker(record["destination"])
        assert marker["fingerprint"] == version.tags[pusher.FINGERPRINT_TAG]
        assert marker["registered"] == {name: int(version.version)}
        assert version.source == client.get_run(version.run_id).info.artifact_uri + "/serving_model"
    if new:
        assert int(client.get_model_version_by_alias(name, "champion").version) == int(new[-1].version)


def latest_version(url: str, name: str) -> int:
    from mlflow.tracking import MlflowClient

    return max((int(v.version) for v in MlflowClient(url).search_model_versions(f"name = '{name}'")), default=0)


def test_penguin_end_to_end_with_the_pusher_on_the_team_server(team_server, tmp_path):
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    url, artifacts = team_server
    client = MlflowClient(url)
    before = latest_version(url, "penguin")
    [doc] = finish([start("penguin", tmp_path / "root", url)])
    assert [c["id"] for c in doc["components"]] == COMPONENTS
    check_children(url, [doc])
    comp, record = push_of(doc)
    assert record["pushed"] and record["destination"] == str(tmp_path / "root" / "serving" / "penguin" / "1")
    check_registry(url, "penguin", before, [doc])
    version = client.get_model_version("penguin", str(before + 1))
    assert version.run_id == comp["execution_id"]
    fetched = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path / "fetched"),
                                                  tracking_uri=url)
    assert os.path.isfile(os.path.join(fetched, "saved_model.pb"))
    assert not (tmp_path / "root" / "metadata.db").exists()  # everything went to the server


@pytest.mark.skipif(not (SHARED_DATA / "chicago_taxi").is_dir(), reason="no ../shared/data")
def test_two_penguin_and_two_taxi_runs_at_once_two_on_one_root(team_server, tmp_path):
    from sluice.components import pusher

    url, _ = team_server
    before = {name: latest_version(url, name) for name in ("penguin", "taxi")}
    shared = tmp_path / "shared-root"
    # Without the cache: every run executes all eight components (the store holds earlier runs).
    procs = [start("penguin", shared, url, "--no-cache"), start("penguin", shared, url, "--no-cache"),
             start("taxi", tmp_path / "taxi-a", url, "--no-cache", *TAXI),
             start("taxi", tmp_path / "taxi-b", url, "--no-cache", *TAXI)]
    docs = finish(procs)
    check_children(url, docs)
    penguins, taxis = docs[:2], docs[2:]
    assert all(push_of(doc)[1]["pushed"] for doc in taxis)  # blessed whatever their accuracy
    check_registry(url, "penguin", before["penguin"], penguins)
    check_registry(url, "taxi", before["taxi"], taxis)
    # The two penguin runs on one root: their pushes side by side in one serving folder, two models.
    placed = sorted(os.listdir(shared / "serving" / "penguin"))
    assert placed == [str(v) for v in range(1, 1 + sum(push_of(d)[1]["pushed"] for d in penguins))]
    markers = [pusher.read_marker(str(shared / "serving" / "penguin" / v)) for v in placed]
    assert placed and len({m["fingerprint"] for m in markers}) == len(placed)
