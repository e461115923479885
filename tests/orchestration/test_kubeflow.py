"""Kubeflow compilation: the YAML, its resources, bad input, and a local run of it."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from sluice.components.sdk import DefinitionError
from sluice.orchestration.kubeflow import compile_kubeflow, kubeflow_resources
from tests.conftest import FIXTURES, REPO


def toy(ws):
    """The toy pipeline as `sluice compile` builds it: with its create_pipeline parameters."""
    from sluice.orchestration.loader import build_pipeline

    return build_pipeline(str(FIXTURES / "toy_pipeline.py"), [
        f"pipeline_root={ws / 'root'}", f"data_file={ws / 'numbers.txt'}", f"module_file={ws / 'toy_module.py'}"])


def compiled(ws, pipe, **kw):
    path = ws / "pipeline.yaml"
    compile_kubeflow(pipe, str(path), image=kw.pop("image", "registry.example/sluice:1"), **kw)
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    if len(docs) > 1:  # kfp-kubernetes settings come as a second document
        spec["platforms"] = docs[1]["platforms"]
    return spec


def test_each_component_is_one_task_with_artifacts_and_parameters(toy_workspace):
    spec = compiled(toy_workspace, toy(toy_workspace))
    tasks = spec["root"]["dag"]["tasks"]
    assert len(tasks) == 4
    assert {t["taskInfo"]["name"] for t in tasks.values()} == {"ReadNumbers", "Scale", "Count", "Report"}
    scale = next(t for t in tasks.values() if t["taskInfo"]["name"] == "Scale")
    assert scale["inputs"]["artifacts"]["numbers"]["taskOutputArtifact"]["outputArtifactKey"] == "numbers"
    assert scale["inputs"]["parameters"]["param_factor"]["componentInputParameter"] == "factor"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["factor"]["parameterType"] == "NUMBER_DOUBLE" and params["factor"]["defaultValue"] == 2.0
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/sluice:1"}
    # The task body is only a call into the shared executor code.
    src = next(iter(spec["deploymentSpec"]["executors"].values()))["container"]["command"][-1]
    assert "from sluice.orchestration.kubeflow_task import run_task" in src


def test_resources_accelerators_selectors_and_retries_are_compiled(toy_workspace):
    pipe = toy(toy_workspace)
    scale = next(n for n in pipe.components if n.id == "Scale")
    kubeflow_resources(scale, cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi",
                       accelerator={"type": "nvidia.com/gpu", "count": 2},
                       node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
                       tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                       retries=3, backoff_duration="10s")
    spec = compiled(toy_workspace, pipe)
    tasks = spec["root"]["dag"]["tasks"]
    name, task = next((k, t) for k, t in tasks.items() if t["taskInfo"]["name"] == "Scale")
    assert task["retryPolicy"]["maxRetryCount"] == 3 and task["retryPolicy"]["backoffDuration"] == "10s"
    executor = spec["deploymentSpec"]["executors"][task["componentRef"]["name"].replace("comp-", "exec-")]
    res = executor["container"]["resources"]
    assert res["cpuRequest"] == 2 and res["cpuLimit"] == 4
    assert res["memoryLimit"] == 8.589934592
    assert res["accelerator"]["resourceType"] == "nvidia.com/gpu" and res["accelerator"]["resourceCount"] == "2"
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    k8s = platform[task["componentRef"]["name"].replace("comp-", "exec-")]
    assert k8s["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize("settings, message", [
    ({"accelerator": {"type": "quantum-chip", "count": 1}},
     r"kubeflow setting 'accelerator.type'.*unknown accelerator type"),
    ({"accelerator": {"type": "nvidia.com/gpu", "count": 0}}, r"kubeflow setting 'accelerator.count'"),
    ({"memory_limit": "lots"}, r"kubeflow setting 'memory_limit'.*invalid memory quantity"),
    ({"gpus": 1}, r"kubeflow setting 'gpus'"),
])
def test_invalid_resource_specs_fail_at_definition(toy_workspace, settings, message):
    scale = next(n for n in toy(toy_workspace).components if n.id == "Scale")
    with pytest.raises(DefinitionError, match=message):
        kubeflow_resources(scale, **settings)


def test_missing_image_and_unknown_target(toy_workspace):
    with pytest.raises(DefinitionError, match=r"--image is required for --target kubeflow"):
        compile_kubeflow(toy(toy_workspace), str(toy_workspace / "x.yaml"), image=None)
    with pytest.raises(DefinitionError, match=r"unknown target 'airflow'"):
        compile_kubeflow(toy(toy_workspace), str(toy_workspace / "x.yaml"), image="i", target="airflow")


def test_parameter_kfp_cannot_carry(toy_workspace):
    pipe = toy(toy_workspace)
    pipe.parameters["when"] = object()
    with pytest.raises(DefinitionError, match=r"pipeline parameter 'when' of type object cannot be carried by KFP"):
        compile_kubeflow(pipe, str(toy_workspace / "x.yaml"), image="i")


def test_cli_compile_errors_are_one_line(toy_workspace):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "sluice.orchestration.cli", "compile", str(FIXTURES / "toy_pipeline.py"), "-o",
            str(toy_workspace / "p.yaml")]
    for extra, expected in ([[], "--image is required"], [["--image", "i", "--target", "argo"], "unknown target"]):
        proc = subprocess.run(base + extra, capture_output=True, text=True, env=env)
        assert proc.returncode != 0
        assert proc.stderr.strip().count("\n") == 0 and expected in proc.stderr, proc.stderr


def test_compiled_yaml_runs_with_kfp_local_like_sluice_run(toy_workspace):
    """Loads the YAML with kfp's loader and runs it with SubprocessRunner(use_venv=False)."""
    path = toy_workspace / "pipeline.yaml"
    compile_kubeflow(toy(toy_workspace), str(path), image="registry.example/sluice:1",
                     source=str(FIXTURES / "toy_pipeline.py"))
    code = (
        "import sys\n"
        "from kfp import local, components\n"
        "local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])\n"
        "components.load_component_from_file(sys.argv[1])(factor=5.0)\n"
    )
    kroot = toy_workspace / "kfp-root"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(kroot)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # KFP's run folder; beside it, the MLflow artifacts of the tasks' runs (their small outputs).
    [run_dir] = [p for p in kroot.iterdir() if p.is_dir() and p.name != "mlflow-artifacts"]
    weights = json.loads((run_dir / "sluice-scale" / "model" / "weights.json").read_text())
    assert weights == {"weights": [10.0, 15.0, 20.0]}  # the KFP parameter factor=5 reached the task
    from sluice.orchestration.metadata import MetadataStore, default_tracking_uri

    store = MetadataStore(default_tracking_uri(str(kroot)))
    [run] = store.list_pipeline_runs("toy")
    assert run.status == "executed"
    assert {e.component_id: e.status for e in store.executions(run.id)} == dict.fromkeys(
        ["ReadNumbers", "Scale", "Count", "Report"], "executed")


def test_credentials_in_the_tracking_uri_are_refused(toy_workspace):
    with pytest.raises(DefinitionError, match=r"^--tracking-uri http://alice:\*\*\*@mlflow:5000 must not contain "
                                              r"credentials: they would be stored in plain text") as info:
        compile_kubeflow(toy(toy_workspace), str(toy_workspace / "x.yaml"), image="i",
                         tracking_uri="http://alice:s3cret@mlflow:5000")
    assert "s3cret" not in str(info.value)
    assert not (toy_workspace / "x.yaml").exists()


def test_tasks_log_under_the_mlflow_run_kfp_injects(toy_workspace):
    """KFP's MLflow integration injects MLFLOW_TRACKING_URI and MLFLOW_RUN_ID into each task."""
    from sluice.orchestration.metadata import MetadataStore

    path = toy_workspace / "pipeline.yaml"
    compile_kubeflow(toy(toy_workspace), str(path), image="i", source=str(FIXTURES / "toy_pipeline.py"))
    uri = f"sqlite:///{toy_workspace / 'team-store.db'}"
    store = MetadataStore(uri)
    parent = store.start_pipeline_run("toy")
    code = (
        "import sys\n"
        "from kfp import local, components\n"
        "local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])\n"
        "components.load_component_from_file(sys.argv[1])()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": parent}
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(toy_workspace / "kfp-root")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    executions = store.executions(parent)
    assert sorted(e.component_id for e in executions) == ["Count", "ReadNumbers", "Report", "Scale"]
    assert {e.status for e in executions} == {"executed"}
    assert not (toy_workspace / "kfp-root" / "metadata.db").exists()  # nothing went to a default store


def test_ui_outputs_come_from_the_artifact_types(toy_workspace, tmp_path):
    import dataclasses
    from typing import ClassVar

    from sluice.components.artifacts import Artifact, ModelEvaluation
    from sluice.orchestration.kubeflow import ui_outputs
    from sluice.orchestration.kubeflow_task import _emit_ui

    spec = compiled(toy_workspace, toy(toy_workspace))
    count = next(c for name, c in spec["components"].items() if name.endswith("count"))
    assert set(count["outputDefinitions"]["artifacts"]) == {
        "evaluation", "evaluation_report", "evaluation_metrics", "evaluation_classification"}

    @dataclasses.dataclass(kw_only=True)
    class Dashboard(Artifact):
        TYPE_NAME: ClassVar[str] = "SluiceTestDashboard"

        @classmethod
        def ui_outputs(cls):
            return {"board": "Markdown"}

    assert ui_outputs({"outputs": {"d": {"type": "SluiceTestDashboard"}, "m": {"type": "Model"}}}) == {
        "d_board": "Markdown"}

    class Logged:
        def __init__(self, path=""):
            self.path, self.calls = path, []

        def __getattr__(self, name):
            return lambda *args: self.calls.append((name, *args))

    evaluation = ModelEvaluation(uri=str(tmp_path))
    (tmp_path / "report.html").write_text("<p>fine</p>")
    (tmp_path / "metrics.json").write_text(json.dumps({"overall": {"auc": 0.5, "ok": True}, "slices": {
        "a=1": {"auc": 0.25}, "a=2": {"auc": 1.0}}, "small_slices": ["a=2"], "plots": {
        "confusion_matrix": {"labels": [0, 1], "matrix": [[1, 0], [0, 1]]}}}))
    ui = {"e_report": Logged(str(tmp_path / "ui.html")), "e_metrics": Logged(), "e_classification": Logged()}
    _emit_ui(evaluation, "e", ui)
    assert (tmp_path / "ui.html").read_text() == "<p>fine</p>"  # one report: the page itself
    assert ui["e_metrics"].calls == [("log_metric", "auc", 0.5), ("log_metric", "slice/a=1/auc", 0.25)]
    assert ui["e_classification"].calls == [("log_confusion_matrix", ["0", "1"], [[1, 0], [0, 1]])]


def test_examples_and_models_are_kfp_datasets_and_models(toy_workspace):
    spec = compiled(toy_workspace, toy(toy_workspace))
    titles = {(name.rsplit("-", 1)[-1], output): definition["artifactType"]["schemaTitle"]
              for name, component in spec["components"].items()
              for output, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()}
    assert titles[("readnumbers", "numbers")] == "system.Dataset"
    assert titles[("scale", "model")] == "system.Model"
    assert titles[("count", "evaluation")] == "system.Artifact"
    # KFP's compiler takes no schema title of our own: the Sluice type is each artifact's description.
    count = next(c for name, c in spec["components"].items() if name.endswith("count"))
    assert count["outputDefinitions"]["artifacts"]["evaluation"]["description"] == "sluice.ModelEvaluation"
    scale = next(c for name, c in spec["components"].items() if name.endswith("scale"))
    assert scale["inputDefinitions"]["artifacts"]["numbers"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert scale["inputDefinitions"]["artifacts"]["numbers"]["description"] == "sluice.Examples"
