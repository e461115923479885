"""One conformance suite for every metadata-store backend.

Each test runs against embedded SQLite and against a real `mlflow server`
process started on loopback by the `mlflow_server` fixture.
"""

import subprocess
import sys
import uuid

import pytest

from sluice.components.artifacts import Examples, Model, ModelBlessing
from sluice.orchestration.metadata import (
    CACHED,
    EXECUTED,
    FAILED,
    RUNNING,
    SKIPPED,
    MetadataStore,
    default_tracking_uri,
)


@pytest.fixture(params=["sqlite", "server"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return MetadataStore(default_tracking_uri(str(tmp_path)), artifact_root=str(tmp_path))
    return MetadataStore(request.getfixturevalue("mlflow_server"))


@pytest.fixture
def pipeline():
    return f"p{uuid.uuid4().hex[:8]}"  # the server store is shared between tests


def _publish(store, pipeline, run_id, node, inputs, outputs, key="k", metrics=None):
    exec_id = store.start_execution(pipeline, run_id, node, node.title(), {"rows": 3, "opts": {"a": 1}},
                                    inputs, key, planned_outputs={"out": "/nowhere"})
    for name, arts in outputs.items():
        for i, art in enumerate(arts):
            art.id = f"{exec_id}:{name}"
            art.fingerprint = f"fp-{node}-{i}"
    store.publish_execution(pipeline, exec_id, inputs, outputs, metrics or {"m": 1.5}, 0.25)
    return exec_id


def test_pipeline_runs_are_recorded_per_pipeline_experiment(store, pipeline):
    run_a = store.start_pipeline_run(pipeline)
    other = store.start_pipeline_run(pipeline + "x")
    store.end_pipeline_run(run_a, EXECUTED, seconds=1.5)
    store.end_pipeline_run(other, FAILED, error="boom")
    assert store.experiment_id(pipeline) != store.experiment_id(pipeline + "x")
    runs = store.list_pipeline_runs(pipeline)
    assert [r.id for r in runs] == [run_a]
    assert runs[0].status == EXECUTED and runs[0].seconds == 1.5
    failed = store.get_pipeline_run(other)
    assert failed.status == FAILED and failed.error == "boom"


def test_execution_record_holds_everything(store, pipeline):
    run_id = store.start_pipeline_run(pipeline)
    ex = Examples(uri="/root/p/Gen/examples/1", split_names=["train"], span=2, id="up:examples", fingerprint="f0")
    model = Model(uri="/root/p/Train/model/1")
    exec_id = _publish(store, pipeline, run_id, "train", {"examples": [ex]}, {"model": [model]}, key="key1")
    rec = store.get_execution(exec_id)
    assert rec.status == EXECUTED and rec.component_id == "train" and rec.component_type == "Train"
    assert rec.pipeline_run_id == run_id and rec.cache_key == "key1" and rec.seconds == 0.25
    assert rec.parameters == {"rows": "3", "opts": '{"a": 1}'}
    assert rec.metrics["m"] == 1.5 and rec.metrics["sluice.duration_seconds"] == 0.25
    assert rec.inputs["examples"][0].span == 2 and rec.inputs["examples"][0].id == "up:examples"
    assert rec.outputs["model"][0].uri == model.uri and rec.outputs["model"][0].fingerprint == "fp-train-0"
    assert [e.id for e in store.executions(run_id)] == [exec_id]
    # Its description in the MLflow UI: the inputs it was started with, linked to their producers' runs.
    note = store.client.get_run(exec_id).data.tags["mlflow.note.content"]
    experiment = store.experiment_id(pipeline)
    assert note == (f"**Inputs**\n- `examples`: Examples `{ex.uri}` from [run up](#/experiments/{experiment}/runs/up)\n"
                    f"**Outputs**\n- `model`: Model `{model.uri}`")


def test_cache_lookup_by_key_only_finds_successes(store, pipeline):
    run_id = store.start_pipeline_run(pipeline)
    good = _publish(store, pipeline, run_id, "gen", {}, {"examples": [Examples(uri="/x/1")]}, key="same")
    bad = store.start_execution(pipeline, run_id, "gen", "Gen", {}, {}, "same")
    store.fail_execution(bad, "ValueError: nope", 0.1)
    assert [e.id for e in store.find_cached(pipeline, "gen", "same")] == [good]
    assert store.find_cached(pipeline, "gen", "other") == []
    assert store.find_cached(pipeline, "other-node", "same") == []
    assert store.get_execution(bad).status == FAILED and store.get_execution(bad).error == "ValueError: nope"


def test_cached_and_skipped_records(store, pipeline):
    run1 = store.start_pipeline_run(pipeline)
    src = _publish(store, pipeline, run1, "gen", {}, {"examples": [Examples(uri="/x/2")]}, key="kk")
    run2 = store.start_pipeline_run(pipeline)
    source = store.get_execution(src)
    cached = store.record_cached(pipeline, run2, "gen", "Gen", {"rows": 3}, {}, "kk", source)
    skipped = store.record_skipped(pipeline, run2, "train", "Train", "upstream gen did not complete")
    recs = {e.id: e for e in store.executions(run2)}
    assert recs[cached].status == CACHED and recs[cached].cached_from == src
    assert recs[cached].outputs["examples"][0].uri == "/x/2"
    assert recs[skipped].status == SKIPPED
    # Only real executions count for the cache.
    assert [e.id for e in store.find_cached(pipeline, "gen", "kk")] == [src]


def test_lineage_both_ways(store, pipeline):
    run_id = store.start_pipeline_run(pipeline)
    examples = Examples(uri=f"/root/{pipeline}/Gen/examples/e1")
    gen = _publish(store, pipeline, run_id, "gen", {}, {"examples": [examples]})
    model = Model(uri=f"/root/{pipeline}/Train/model/m1")
    train = _publish(store, pipeline, run_id, "train", {"examples": [examples]}, {"model": [model]})
    assert store.producer_of(examples.uri).id == gen
    assert store.producer_of(examples.uri + "/").id == gen
    assert store.producer_of(model.uri).id == train
    assert [e.id for e in store.consumers_of(examples.id)] == [train]
    assert store.consumers_of(model.id) == []
    assert store.producer_of(f"/root/{pipeline}/nothing") is None


def test_find_artifacts_by_type_and_property(store, pipeline):
    run_id = store.start_pipeline_run(pipeline)
    blessed = ModelBlessing(uri="/b/1", blessed=True, model_uri="/m/1")
    not_blessed = ModelBlessing(uri="/b/2", blessed=False, model_uri="/m/2")
    _publish(store, pipeline, run_id, "eval1", {}, {"blessing": [blessed]})
    _publish(store, pipeline, run_id, "eval2", {}, {"blessing": [not_blessed]})
    found = store.find_artifacts(pipeline, "ModelBlessing", lambda a: a.blessed)
    assert [a.model_uri for a, _ in found] == ["/m/1"]
    assert len(store.find_artifacts(pipeline, "ModelBlessing")) == 2
    assert store.find_artifacts(pipeline + "-none", "ModelBlessing") == []


def test_abandoned_executions_of_dead_processes_are_found(store, pipeline):
    run_id = store.start_pipeline_run(pipeline)
    # A separate process records a RUNNING execution, then dies without ending it.
    code = (
        "import os, sys\n"
        "from sluice.orchestration.metadata import MetadataStore\n"
        "s = MetadataStore(sys.argv[1])\n"
        "print(s.start_execution(sys.argv[2], sys.argv[3], 'gen', 'Gen', {}, {}, 'k', {'examples': '/base'}))\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, store.tracking_uri, pipeline, run_id],
                         capture_output=True, text=True, check=True)
    dead_id = out.stdout.strip().splitlines()[-1]
    live_id = store.start_execution(pipeline, run_id, "live", "Live", {}, {}, "k2")
    abandoned = {rec.id: planned for rec, planned in store.find_abandoned(pipeline)}
    assert dead_id in abandoned and abandoned[dead_id] == {"examples": "/base"}
    assert live_id not in abandoned
    assert store.get_execution(dead_id).status == RUNNING
    store.mark_abandoned(store.get_execution(dead_id))
    assert store.get_execution(dead_id).status == FAILED
    assert dead_id not in {rec.id for rec, _ in store.find_abandoned(pipeline)}


def test_credentials_are_masked():
    from sluice.orchestration.secrets import mask_uri

    assert mask_uri("postgresql://user:s3cret@db:5432/mlflow") == "postgresql://user:***@db:5432/mlflow"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
