"""Tests of the Pusher: TF Serving versions, atomic copies, blessing checks, symlinks, MLflow registry."""

from __future__ import annotations

import json
import os

import pytest

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
        "registered_model": None}
    (serving / "7").mkdir()          # an older version pushed by someone else
    (serving / "notes").mkdir()      # not a version
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


def test_registers_pushed_versions_in_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("pusher-test")).info.run_id
    ctx = ExecutionContext(pipeline_name="taxi", tracking_uri=tracking_uri, mlflow_run_id=run_id)
    model = _fake_model(tmp_path)
    serving = tmp_path / "serving"
    _push(tmp_path, model, serving, "p1", model_blessing=_blessing(tmp_path, model), ctx=ctx)
    _push(tmp_path, model, serving, "p2", model_blessing=_blessing(tmp_path, model), ctx=ctx,
          registered_model_name="taxi-model")
    record = json.loads((tmp_path / "p2" / "push.json").read_text())
    assert record["registered_model"] == {"name": "taxi-model", "version": 1, "alias": "champion"}
    champion = client.get_model_version_by_alias("taxi-model", "champion")
    assert champion.source == str(serving / "2") and champion.run_id == run_id
    assert client.get_model_version_by_alias("taxi", "champion").source == str(serving / "1")
