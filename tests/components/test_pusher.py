"""Tests of the Pusher: TF Serving versions, atomic copies, blessing checks, symlinks, MLflow registry."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from sluice.components import pusher
from sluice.components.artifacts import Model, ModelBlessing, PushedModel
from sluice.components.pusher import push_model, rename_no_replace
from sluice.components.sdk import ComponentError, ExecutionContext


def _fake_model(root, name="model", marker="v1") -> Model:
    """A model folder laid out like a SavedModel (the Pusher only copies it)."""
    serving = root / name / "Format-Serving"
    (serving / "variables").mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"graph")
    (serving / "variables" / "variables.index").write_text(marker)
    return Model(uri=str(root / name))


def _blessing(root, model: Model, blessed=True, reason="") -> ModelBlessing:
    folder = root / f"blessing-{blessed}"
    folder.mkdir(exist_ok=True)
    (folder / ("BLESSED" if blessed else "NOT_BLESSED")).touch()
    return ModelBlessing(uri=str(folder), blessed=blessed, model_uri=model.uri, reason=reason)


def _push(tmp_path, model, serving_dir, name, **kwargs) -> PushedModel:
    out = tmp_path / name
    out.mkdir()
    pushed = PushedModel(uri=str(out))
    push_model(model=model, pushed_model=pushed, serving_dir=str(serving_dir), **kwargs)
    return pushed


def test_pushes_blessed_models_as_increasing_versions(tmp_path):
    model = _fake_model(tmp_path)
    serving = tmp_path / "serving"
    first = _push(tmp_path, model, serving, "p1", model_blessing=_blessing(tmp_path, model),
                  ctx=ExecutionContext())
    assert (first.pushed, first.version, first.destination) == (True, 1, str(serving / "1"))
    assert (serving / "1" / "variables" / "variables.index").read_text() == "v1"
    assert json.loads((tmp_path / "p1" / "push.json").read_text()) == {
        "pushed": True, "version": 1, "destination": str(serving / "1"), "reason": "blessed",
        "registered_model": None, "reused": False}
    (serving / "7").mkdir()          # an older version pushed by someone else
    (serving / "notes").mkdir()      # not a version
    # The newest version is not this model any more: pushing it again makes it the newest.
    second = _push(tmp_path, model, serving, "p2", model_blessing=_blessing(tmp_path, model))
    assert second.version == 8
    assert sorted(os.listdir(serving)) == ["1", "7", "8", "notes"]  # no staging folders left


def test_unblessed_model_is_not_pushed_and_says_why(tmp_path):
    model = _fake_model(tmp_path)
    serving = tmp_path / "serving"
    pushed = _push(tmp_path, model, serving, "p", model_blessing=_blessing(
        tmp_path, model, blessed=False, reason="auc 0.61 violates lower_bound 0.7"))
    assert not pushed.pushed and pushed.version is None
    record = json.loads((tmp_path / "p" / "push.json").read_text())
    assert record["pushed"] is False
    assert record["reason"] == "model not blessed: auc 0.61 violates lower_bound 0.7"
    assert os.listdir(serving) == []


def test_blessing_of_another_model_is_not_enough(tmp_path):
    model = _fake_model(tmp_path)
    other = _fake_model(tmp_path, "other")
    pushed = _push(tmp_path, model, tmp_path / "serving", "p", model_blessing=_blessing(tmp_path, other))
    assert not pushed.pushed
    assert "blessing is for another model" in json.loads((tmp_path / "p" / "push.json").read_text())["reason"]


def test_no_blessing_input_pushes(tmp_path):
    pushed = _push(tmp_path, _fake_model(tmp_path), tmp_path / "serving", "p")
    assert pushed.pushed and pushed.version == 1


def test_an_object_store_serving_dir_is_one_line_and_nothing_is_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ComponentError, match=r"'serving_dir' s3://bucket/serving is not a local folder"):
        _push(tmp_path, _fake_model(tmp_path), "s3://bucket/serving", "p")
    assert not (tmp_path / "s3:").exists()


def test_symlinks_out_of_the_serving_dir_are_rejected(tmp_path):
    model = _fake_model(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "serving-link"
    link.symlink_to(elsewhere)
    with pytest.raises(ComponentError, match=r"'serving_dir' .*serving-link is a symlink"):
        _push(tmp_path, model, link, "p1")
    serving = tmp_path / "serving"
    serving.mkdir()
    (serving / "3").symlink_to(elsewhere)
    with pytest.raises(ComponentError, match=r"version folder .*serving/3 is a symlink"):
        _push(tmp_path, model, serving, "p2")
    assert os.listdir(elsewhere) == []
    assert os.listdir(serving) == ["3"]


def test_a_failed_copy_leaves_no_version_folder(tmp_path):
    model = _fake_model(tmp_path)
    # A dangling symlink inside the model makes the copy fail half-way.
    (tmp_path / "model" / "Format-Serving" / "variables" / "zz-broken").symlink_to(tmp_path / "missing")
    serving = tmp_path / "serving"
    with pytest.raises(ComponentError, match=r"Pusher: copying .*Format-Serving into .*serving failed"):
        _push(tmp_path, model, serving, "p")
    assert os.listdir(serving) == []


def test_a_version_folder_made_meanwhile_is_never_replaced(tmp_path):
    # Another process has just made version 1 and not filled it yet: os.rename would replace
    # the empty folder; the push's rename must refuse, and the push takes the next version.
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "saved_model.pb").write_bytes(b"model")
    (tmp_path / "1").mkdir()
    with pytest.raises(FileExistsError):
        rename_no_replace(str(tmp_path / "payload"), str(tmp_path / "1"))
    assert os.listdir(tmp_path / "1") == [] and os.listdir(tmp_path / "payload") == ["saved_model.pb"]
    rename_no_replace(str(tmp_path / "payload"), str(tmp_path / "2"))
    assert os.listdir(tmp_path / "2") == ["saved_model.pb"] and not (tmp_path / "payload").exists()


def test_model_without_savedmodel_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ComponentError, match=r"model has no SavedModel at .*empty/Format-Serving"):
        _push(tmp_path, Model(uri=str(tmp_path / "empty")), tmp_path / "serving", "p")


def test_the_newest_model_is_not_pushed_again_without_a_registry(tmp_path):
    a, b = _fake_model(tmp_path, "a", "A"), _fake_model(tmp_path, "b", "B")
    serving = tmp_path / "serving"
    assert _push(tmp_path, a, serving, "p1").version == 1
    again = _push(tmp_path, a, serving, "p2")  # e.g. a re-run after a kill: reused
    assert (again.pushed, again.version) == (True, 1)
    assert json.loads((tmp_path / "p2" / "push.json").read_text())["reused"] is True
    assert _push(tmp_path, b, serving, "p3").version == 2
    assert _push(tmp_path, a, serving, "p4").version == 3  # a roll-back: served again as the newest
    assert sorted(os.listdir(serving)) == ["1", "2", "3"]
    markers = {v: pusher.read_marker(str(serving / v)) for v in ("1", "2", "3")}
    assert markers["1"]["fingerprint"] == markers["3"]["fingerprint"] != markers["2"]["fingerprint"]
    assert markers["1"]["model_uri"] == a.uri and markers["1"]["registered"] == {}


def _store(kind: str, tmp_path, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/mlflow.db"
    if kind == "file":
        request.getfixturevalue("monkeypatch").setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return (tmp_path / "mlruns").as_uri()
    if kind == "server":  # --default-artifact-root: runs' artifacts are a folder on this machine
        return request.getfixturevalue("mlflow_server")
    return request.getfixturevalue("team_server")[0]  # PostgreSQL, proxied artifacts (mlflow-artifacts:)


def _run_ctx(client, tracking_uri: str, experiment: str, name: str = "taxi") -> ExecutionContext:
    """A context as the runner makes it: the execution id is the MLflow run's id."""
    exp = client.get_experiment_by_name(experiment)
    run_id = client.create_run(exp.experiment_id if exp else client.create_experiment(experiment)).info.run_id
    return ExecutionContext(pipeline_name=name, execution_id=run_id, tracking_uri=tracking_uri, mlflow_run_id=run_id)


@pytest.mark.parametrize("kind", ["sqlite", "file", "server", pytest.param("team", marks=pytest.mark.slow)])
def test_registers_the_model_uploaded_to_the_runs_artifact_store(tmp_path, request, kind):
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    tracking_uri = _store(kind, tmp_path, request)
    client = MlflowClient(tracking_uri)
    name = f"pusher-{tmp_path.name}"  # the servers are shared by the whole session
    a, b = _fake_model(tmp_path, "a", "A"), _fake_model(tmp_path, "b", "B")
    serving = tmp_path / "serving"
    first = _run_ctx(client, tracking_uri, name)
    _push(tmp_path, a, serving, "p1", model_blessing=_blessing(tmp_path, a), ctx=first, registered_model_name=name)
    record = json.loads((tmp_path / "p1" / "push.json").read_text())
    assert record["registered_model"] == {"name": name, "version": 1, "alias": "champion"}
    version = client.get_model_version_by_alias(name, "champion")
    run = client.get_run(first.mlflow_run_id)
    assert version.source == run.info.artifact_uri + "/serving_model" and version.run_id == first.mlflow_run_id
    assert version.tags[pusher.FINGERPRINT_TAG] == pusher.model_fingerprint(a)
    assert version.tags[pusher.SERVING_TAG] == str(serving / "1")
    fetched = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path / "fetched"),
                                                  tracking_uri=tracking_uri)
    assert (tmp_path / "fetched" / "serving_model" / "variables" / "variables.index").read_text() == "A", fetched

    # The same model from a later execution: no second copy, no second version; it names the new execution.
    second = _run_ctx(client, tracking_uri, name)
    _push(tmp_path, a, serving, "p2", model_blessing=_blessing(tmp_path, a), ctx=second, registered_model_name=name)
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [1]
    assert client.get_model_version(name, "1").tags[pusher.EXECUTION_TAG] == second.execution_id
    assert os.listdir(serving) == ["1"]

    _push(tmp_path, b, serving, "p3", model_blessing=_blessing(tmp_path, b), ctx=_run_ctx(client, tracking_uri, name),
          registered_model_name=name)
    assert int(client.get_model_version_by_alias(name, "champion").version) == 2
    assert sorted(os.listdir(serving)) == ["1", "2"]


def test_a_push_killed_after_registering_is_completed_not_repeated(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri)
    model, serving = _fake_model(tmp_path), tmp_path / "serving"
    killed = _run_ctx(client, tracking_uri, "taxi")

    def killed_before_the_rename(payload, serving_dir):
        shutil.rmtree(os.path.dirname(payload))  # what the next push does with a dead process's staging
        raise KeyboardInterrupt

    monkeypatch.setattr(pusher.component, "place_version", killed_before_the_rename)  # where push_model looks
    with pytest.raises(KeyboardInterrupt):
        _push(tmp_path, model, serving, "p1", ctx=killed)
    [registered] = client.search_model_versions("name = 'taxi'")
    assert os.listdir(serving) == [] and pusher.SERVING_TAG not in registered.tags
    monkeypatch.undo()

    rerun = _run_ctx(client, tracking_uri, "taxi")
    pushed = _push(tmp_path, model, serving, "p2", ctx=rerun)
    assert (pushed.version, os.listdir(serving)) == (1, ["1"])
    [version] = client.search_model_versions("name = 'taxi'")
    assert version.run_id == killed.mlflow_run_id  # registered (and uploaded) by the killed execution,
    assert version.tags[pusher.EXECUTION_TAG] == rerun.execution_id  # completed by the re-run
    assert client.get_model_version("taxi", "1").aliases == ["champion"]
    assert pusher.read_marker(str(serving / "1"))["registered"] == {"taxi": 1}


def test_a_tracking_uri_without_a_run_is_one_clear_error(tmp_path):
    ctx = ExecutionContext(pipeline_name="taxi", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(ComponentError, match=r"^Pusher: tracking URI set but no MLflow run to upload model 'taxi' to$"):
        _push(tmp_path, _fake_model(tmp_path), tmp_path / "serving", "p", ctx=ctx)


def test_concurrent_pushes_get_one_version_each_and_champion_ends_on_the_newest(tmp_path, mlflow_server):
    import threading

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    name = f"pusher-{tmp_path.name}"
    serving = tmp_path / "serving"
    models = [_fake_model(tmp_path, f"m{i}", f"M{i}") for i in range(4)]
    contexts = [_run_ctx(client, mlflow_server, name) for _ in models]
    barrier = threading.Barrier(len(models))
    errors = []

    def push(i):
        barrier.wait()
        try:
            _push(tmp_path, models[i], serving, f"p{i}", ctx=contexts[i], registered_model_name=name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(os.listdir(serving)) == ["1", "2", "3", "4"]
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{name}'")}
    assert sorted(versions) == [1, 2, 3, 4]
    for folder in os.listdir(serving):  # each folder and its registered version name each other
        marker = pusher.read_marker(str(serving / folder))
        version = versions[marker["registered"][name]]
        assert version.tags[pusher.SERVING_TAG] == str(serving / folder)
        assert version.tags[pusher.FINGERPRINT_TAG] == marker["fingerprint"]
    assert {v.tags[pusher.EXECUTION_TAG] for v in versions.values()} == {c.execution_id for c in contexts}
    assert int(client.get_model_version_by_alias(name, "champion").version) == 4
