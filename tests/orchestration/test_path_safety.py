"""Path safety: no name, id, split or parameter makes Sluice write outside the pipeline root
or the serving directory, and credentials in a tracking URI never reach the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.components.artifacts import Examples, Model, PushedModel
from sluice.components.sdk import ComponentError, DefinitionError, ExecutionContext, Output, component
from sluice.orchestration.local_runner import run_pipeline
from sluice.orchestration.pipeline import Pipeline
from tests.conftest import FIXTURES, REPO

sys.path.insert(0, str(FIXTURES))

EVIL_NAMES = ["../evil", "..", ".", "/abs", "a/b", "a/../../b", "", "a\\..\\b", "evil\0x", "-x", ".hidden"]


def write_marker(examples: Output[Examples]) -> None:
    Path(examples.path("marker.txt")).write_text("x")


Marker = component(write_marker, name="Marker")


def snapshot(folder: Path) -> set[str]:
    return {os.path.join(b, n) for b, ds, ns in os.walk(folder) for n in ds + ns}


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_pipeline_names_and_component_ids_cannot_be_paths(tmp_path, name):
    with pytest.raises(DefinitionError, match="invalid id"):
        Pipeline(name=name, components=[Marker()], pipeline_root=str(tmp_path))
    with pytest.raises(DefinitionError, match="invalid id"):
        Marker(id=name)
    with pytest.raises(DefinitionError, match="invalid id"):
        Marker().with_id(name)


@pytest.mark.parametrize("split", ["../evil", "..", "a/b", "/abs", "", "Split-x/../../y"])
def test_example_gen_split_names_cannot_be_paths(tmp_path, split):
    from sluice.components.example_gen import CsvExampleGen, SplitConfig, csv_example_gen

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n3,4\n")
    with pytest.raises((DefinitionError, ValueError)):
        SplitConfig(splits={split: 1})
    with pytest.raises(DefinitionError, match="output_config"):
        CsvExampleGen(input_base=str(data), output_config={"splits": {split: 1}})
    # input_config is a plain dict: checked when the component runs, before anything is written.
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ComponentError, match=r"CsvExampleGen: input_config split name"):
        csv_example_gen(examples=Examples(uri=str(out)), input_base=str(data), input_config={split: "a.csv"},
                        ctx=ExecutionContext())
    assert snapshot(tmp_path) == before


def _symlink_case(tmp_path, link_at: str) -> tuple[Path, Path]:
    """A pipeline root where ``link_at`` (relative) is a symlink to a folder outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    link = root / link_at
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    return root, outside


@pytest.mark.parametrize("link_at", ["p", "p/Marker", "p/Marker/examples", "p/Marker/.logs"])
def test_symlinked_folder_inside_the_root_pointing_outside_is_refused(tmp_path, link_at):
    root, outside = _symlink_case(tmp_path, link_at)
    pipe = Pipeline(name="p", components=[Marker()], pipeline_root=str(root))
    result = run_pipeline(pipe)
    assert not result.ok
    assert "outside the pipeline root" in result.error and "component Marker failed" in result.error
    assert os.listdir(outside) == []  # nothing written through the link


def test_symlinked_pipeline_root_itself_is_fine(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    result = run_pipeline(Pipeline(name="p", components=[Marker()], pipeline_root=str(tmp_path / "alias")))
    assert result.ok, result.error
    assert (real / "p" / "Marker" / "examples").is_dir()


def test_symlink_outside_in_the_cli_is_one_line_naming_the_component(tmp_path, toy_workspace):
    root, outside = _symlink_case(toy_workspace, "toy/Scale/model")
    proc = _cli("run", str(FIXTURES / "toy_pipeline.py"), "--param", f"data_file={toy_workspace / 'numbers.txt'}",
                "--param", f"module_file={toy_workspace / 'toy_module.py'}",
                "--pipeline-root", str(toy_workspace / "root"))
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: component Scale failed:") and "outside the pipeline root" in line, line
    assert os.listdir(outside) == []


@pytest.mark.parametrize("name", ["metadata.db", "mlflow-artifacts"])
def test_symlinked_store_or_artifact_folder_in_the_cli_is_one_line(toy_workspace, name):
    root, outside = toy_workspace / "root", toy_workspace / "outside"
    outside.mkdir()
    root.mkdir()
    (root / name).symlink_to(outside / name)
    proc = _cli("run", str(FIXTURES / "toy_pipeline.py"), "--param", f"data_file={toy_workspace / 'numbers.txt'}",
                "--param", f"module_file={toy_workspace / 'toy_module.py'}", "--pipeline-root", str(root))
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"{root / name} resolves to" in line, line
    assert "outside the pipeline root" in line, line
    assert os.listdir(outside) == []


# --- the Pusher and its serving directory -------------------------------------------------------


def _model(tmp_path) -> Model:
    serving = tmp_path / "model" / "Format-Serving"
    (serving / "variables").mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"graph")
    (serving / "variables" / "variables.index").write_text("v")
    return Model(uri=str(tmp_path / "model"))


def _push(tmp_path, serving_dir, name="pushed"):
    from sluice.components.pusher import push_model

    out = tmp_path / name
    out.mkdir()
    pushed = PushedModel(uri=str(out))
    push_model(model=_model(tmp_path) if not (tmp_path / "model").exists() else Model(uri=str(tmp_path / "model")),
               pushed_model=pushed, serving_dir=str(serving_dir), ctx=ExecutionContext())
    return pushed


@pytest.mark.parametrize("dangling", [False, True])
def test_pusher_refuses_a_version_folder_that_is_a_symlink(tmp_path, dangling):
    serving, outside = tmp_path / "serving", tmp_path / "outside"
    serving.mkdir()
    if not dangling:
        outside.mkdir()
    (serving / "3").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ComponentError, match=r"Pusher: version folder .*/3 is a symlink"):
        _push(tmp_path, serving)
    assert not outside.exists() or os.listdir(outside) == []
    assert sorted(os.listdir(serving)) == ["3"]  # no staging folder left either


def test_pusher_refuses_a_serving_dir_that_is_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "serving").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ComponentError, match=r"serving_dir.* is a symlink"):
        _push(tmp_path, tmp_path / "serving")
    assert os.listdir(outside) == []


def test_pusher_ignores_other_symlinks_and_never_writes_through_them(tmp_path):
    serving, outside = tmp_path / "serving", tmp_path / "outside"
    serving.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (serving / "latest").symlink_to(outside, target_is_directory=True)
    # A stale staging name that is a symlink, "left by" a dead process: never followed nor emptied.
    (serving / ".push-999999999.1-abc").symlink_to(outside, target_is_directory=True)
    pushed = _push(tmp_path, serving)
    assert pushed.version == 1 and (serving / "1" / "saved_model.pb").is_file()
    assert sorted(os.listdir(outside)) == ["keep.txt"]


def test_pusher_removes_staging_folders_of_dead_pushes_only(tmp_path):
    from sluice.components.pusher.component import _process_tag

    serving = tmp_path / "serving"
    (serving / ".push-999999999.1-dead" / "model").mkdir(parents=True)  # its process is gone
    alive = serving / f".push-{_process_tag(os.getppid())}-alive"          # a push still going
    alive.mkdir()
    _push(tmp_path, serving)
    assert sorted(os.listdir(serving)) == [".push-" + alive.name[len(".push-"):], "1"]


# --- credentials in the tracking URI -------------------------------------------------------------


def _cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_mask_uri_hides_passwords_only():
    from sluice.orchestration.secrets import mask_uri

    assert mask_uri("http://user:secret@127.0.0.1:5999") == "http://user:***@127.0.0.1:5999"
    assert mask_uri("https://u:p%40ss@host/path?x=1") == "https://u:***@host/path?x=1"
    assert mask_uri("sqlite:////tmp/x/metadata.db") == "sqlite:////tmp/x/metadata.db"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_credentials_never_printed_by_run_runs_and_errors(toy_workspace, mlflow_server):
    secret = "s3cr3t-Pw"
    uri = mlflow_server.replace("http://", f"http://alice:{secret}@")
    base = [str(FIXTURES / "toy_pipeline.py"), "--param", f"data_file={toy_workspace / 'numbers.txt'}",
            "--param", f"module_file={toy_workspace / 'toy_module.py'}", "--pipeline-root",
            str(toy_workspace / "root"), "--tracking-uri", uri]
    seen = []
    ok = _cli("run", *base, "--json", cwd=toy_workspace)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["tracking_uri"] == mlflow_server.replace("http://", "http://alice:***@")
    seen += [ok.stdout, ok.stderr]
    text = _cli("run", *base, cwd=toy_workspace)
    seen += [text.stdout, text.stderr]
    assert "alice:***@" in text.stdout
    for command in (["runs", "list"], ["runs", "show", doc["run_id"]], ["runs", "show", "nonexistent-run"],
                    ["lineage", "/no/such/artifact"]):
        proc = _cli(*command, "--tracking-uri", uri, cwd=toy_workspace)
        seen += [proc.stdout, proc.stderr]
    # A failing component under that store: the error line and its log.
    failed = _cli("run", *base, "--no-cache", env_extra={"TOY_RAISE_MID_WRITE": "1"}, cwd=toy_workspace)
    assert failed.returncode == 1
    seen += [failed.stdout, failed.stderr]
    # A store that rejects the requests (wrong path on the server): the error names it masked.
    bad = _cli("run", *base[:-1], uri + "/no-such-prefix", cwd=toy_workspace,
               env_extra={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert bad.returncode != 0
    seen += [bad.stdout, bad.stderr]
    logs = [p.read_text() for p in (toy_workspace / "root").rglob("*.log")]
    assert logs
    for output in seen + logs:
        assert secret not in output, output[-2000:]
