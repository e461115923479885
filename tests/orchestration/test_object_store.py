"""Pipeline roots on an object store: moto's S3 server on loopback as the store, Beam's S3
filesystem pointed at it through the pipeline's options (``object_store``)."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import boto3
import pytest

from sluice.components.artifacts import Model
from sluice.components.io import stores
from sluice.components.sdk import ComponentError, DefinitionError, Input, Output, component
from sluice.orchestration import execution, object_store, roots
from sluice.orchestration.cache_keys import fingerprint_path
from tests.conftest import REPO, free_port

KEY_ID, SECRET = "AKIDLOOPBACK7Q2", "loopbackSecretKey9Zx"


@contextlib.contextmanager
def s3_server():
    """moto's S3 server on loopback: its endpoint, and the Beam options reaching it."""
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, [f"--s3_endpoint_url={endpoint}", f"--s3_access_key_id={KEY_ID}",
                         f"--s3_secret_access_key={SECRET}", "--s3_region_name=us-east-1"]
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def s3():
    """The endpoint of an S3 server on loopback, and the Beam options reaching it."""
    with s3_server() as found:
        yield found


def make_bucket(endpoint: str) -> str:
    name = f"sluice-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name


def cli_env(cache) -> dict[str, str]:
    """The environment of a ``sluice`` command on a remote root: its local folder under ``cache``,
    no tracking URI, root or AWS credentials of the caller's."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLUICE_CACHE_DIR": str(cache)}
    for name in ("MLFLOW_TRACKING_URI", "SLUICE_PIPELINE_ROOT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name, None)
    return env


def penguin_params(beam_args: list[str], serving_dir) -> list[str]:
    """The penguin pipeline's parameters for a short run with these Beam options."""
    return ["train_steps=10", "eval_steps=2", "min_accuracy=0", f"serving_dir={serving_dir}",
            "beam_pipeline_args=" + json.dumps(beam_args)]


def run_penguin(root: str, beam_args: list[str], cwd, env: dict[str, str], serving_dir) -> subprocess.CompletedProcess:
    """``sluice run penguin --json`` on ``root``, trained briefly; asserts it succeeded."""
    params = penguin_params(beam_args, serving_dir)
    argv = [sys.executable, "-m", "sluice.orchestration.cli", "run", "penguin", "--pipeline-root", root, "--json"]
    proc = subprocess.run(argv + [a for p in params for a in ("--param", p)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_publish_writes_the_marker_last_and_only_marked_prefixes_count(s3, tmp_path):
    endpoint, args = s3
    object_store.configure(args + ["--runner=DirectRunner"])
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "BLESSED").write_bytes(b"")  # empty objects: Beam's S3 writer cannot make them
    base = f"s3://{make_bucket(endpoint)}/root/p/Node/out"
    uri = object_store.join(base, "e1")

    stores.upload_dir(str(folder), uri)  # a publication cut short: every file, no marker
    assert not object_store.is_published(uri)
    assert not execution.outputs_exist({"out": [roots_artifact(uri)]})
    with pytest.raises(FileNotFoundError, match="_SLUICE_PUBLISHED"):
        object_store.stage_in(uri, str(tmp_path / "home"))

    object_store.publish(str(folder), uri, "e1")
    assert object_store.list_files(uri) == [f"{uri}/_SLUICE_PUBLISHED", f"{uri}/a.txt", f"{uri}/sub/BLESSED"]
    marker = json.loads(object_store.read_bytes(f"{uri}/_SLUICE_PUBLISHED"))
    assert marker == {"execution_id": "e1", "files": ["a.txt", "sub/BLESSED"]}
    assert execution.outputs_exist({"out": [roots_artifact(uri)]})

    staged = object_store.stage_in(uri, str(tmp_path / "home"))
    assert sorted(os.listdir(staged)) == ["a.txt", "sub"]  # the marker is not part of the payload
    assert (tmp_path / staged / "a.txt").read_text() == "A"
    assert os.path.getsize(os.path.join(staged, "sub", "BLESSED")) == 0

    before = fingerprint_path(uri)
    object_store.write_bytes(f"{uri}/a.txt", b"changed")
    assert fingerprint_path(uri) != before
    assert object_store.delete_prefix(uri) and object_store.list_files(uri) == []
    with pytest.raises(Exception, match="escapes"):
        object_store.join(base, "../other")
    assert not roots.is_inside(f"{base}x/e1", base) and roots.is_inside(uri, base)


def roots_artifact(uri):
    from sluice.components.artifacts import Artifact

    return Artifact(uri=uri)


@pytest.mark.slow
def test_penguin_runs_on_an_s3_root_publishes_with_markers_and_caches(s3, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sluice.orchestration import records
    from sluice.orchestration.loader import build_pipeline
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.metadata import MetadataStore, default_tracking_uri

    endpoint, args = s3
    root = f"s3://{make_bucket(endpoint)}/root"
    cache, ws = tmp_path / "cache", tmp_path / "ws"
    ws.mkdir()
    env, params = cli_env(cache), penguin_params(args, tmp_path / "serving")
    proc = run_penguin(root, args, ws, env, tmp_path / "serving")
    first = json.loads(proc.stdout)
    assert {c["status"] for c in first["components"]} == {"executed"}
    uris = [u for c in first["components"] for us in c["outputs"].values() for u in us]
    assert len(uris) >= 8 and all(u.startswith(root + "/penguin/") for u in uris)
    object_store.configure(args)
    assert all(object_store.is_published(u) for u in uris)

    # Nothing local is named like the root; the store, logs and staged copies live in the cache folder.
    assert os.listdir(ws) == []
    assert not [d for d, dirs, files in os.walk(tmp_path) if "s3:" in dirs + files]
    assert os.path.isfile(os.path.join(object_store.local_home(root), "metadata.db")) is False  # not under ~/.cache
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(cache))
    assert os.path.isfile(os.path.join(object_store.local_home(root), "metadata.db"))
    # The credentials are nowhere: not in the output, nor in any file the run kept.
    assert KEY_ID not in proc.stdout + proc.stderr and SECRET not in proc.stdout + proc.stderr
    for where, _, files in os.walk(cache):
        for file in files:
            with open(os.path.join(where, file), "rb") as fh:
                data = fh.read()
            assert KEY_ID.encode() not in data and SECRET.encode() not in data, os.path.join(where, file)

    # The CLI finds the root's store in its local folder.
    listed = subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "runs", "list", "--pipeline-root", root],
                            capture_output=True, text=True, cwd=ws, env=env, timeout=120)
    assert listed.returncode == 0 and first["run_id"] in listed.stdout, listed.stderr[-2000:]

    # A process killed mid-publication: a RUNNING record, its upload without marker. The next run deletes it.
    store = MetadataStore(default_tracking_uri(root), artifact_root=root)
    base = f"{root}/penguin/Trainer/model"
    eid = store.start_execution("penguin", first["run_id"], "Trainer", "Trainer", {}, {}, "key",
                                planned_outputs={"model": base})
    object_store.write_bytes(object_store.join(base, eid, "saved_model.pb"), b"half")
    object_store.write_bytes(object_store.join(base, eid, "variables", "variables.index"), b"")
    MlflowClient(store.tracking_uri).set_tag(eid, records.PID_START, "a process long gone")

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    again = run_pipeline(build_pipeline("penguin", params, pipeline_root=root))
    assert {c.status for c in again.components} == {"cached"}, [(c.id, c.status) for c in again.components]
    assert object_store.list_files(object_store.join(base, eid)) == []

    # A publication cut short (the marker never written) is not a cache hit: the Pusher runs again.
    pusher = next(c for c in first["components"] if c["id"] == "Pusher")
    pushed = pusher["outputs"]["pushed_model"][0]
    stores.delete([pushed + "/_SLUICE_PUBLISHED"])
    third = run_pipeline(build_pipeline("penguin", params, pipeline_root=root))
    assert {c.id: c.status for c in third.components if c.status != "cached"} == {"Pusher": "executed"}
    assert object_store.is_published(third.outputs("Pusher")["pushed_model"][0].uri)


def _write_in_place(model: Output[Model], fail: bool = False) -> None:
    from sluice.components.io.files import write_bytes

    handed.append(model.uri)
    write_bytes(model.path("weights.json"), b'{"w": 1}')
    write_bytes(model.path("sub", "BLESSED"), b"")  # an empty object: Beam's S3 writer cannot make it
    if fail:
        raise ComponentError("WriteInPlace: asked to fail")


def _read_staged(model: Input[Model], copy: Output[Model]) -> None:
    handed.append(model.uri)
    shutil.copyfile(os.path.join(model.uri, "weights.json"), copy.path("weights.json"))


handed: list[str] = []
WriteInPlace = component(_write_in_place, name="WriteInPlace", remote_io=True)
ReadStaged = component(_read_staged, name="ReadStaged")


def test_a_remote_io_component_on_workers_writes_in_place_and_others_stay_staged(s3, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    endpoint, args = s3
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path / "cache"))
    root = f"s3://{make_bucket(endpoint)}/root"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # A runner whose workers may not share this disk (none runs: the components use no Beam).
    elsewhere = [*args, "--runner=PortableRunner", "--job_endpoint=localhost:1"]

    def pipeline(fail: bool, beam_args: list[str] = elsewhere) -> Pipeline:
        first = WriteInPlace(fail=fail)
        return Pipeline("inplace", [first, ReadStaged(model=first.outputs["model"])], root,
                        beam_pipeline_args=beam_args)

    handed.clear()
    result = run_pipeline(pipeline(fail=False), tracking_uri=tracking)
    assert result.ok, result.error
    (written,), (copied,) = result.outputs("WriteInPlace")["model"], result.outputs("ReadStaged")["copy"]
    # Handed its final URI (no local folder, no upload); the other component got a staged local copy.
    assert handed == [written.uri, object_store.staged_path(written.uri, object_store.local_home(root))]
    object_store.configure(args)
    marker = json.loads(object_store.read_bytes(object_store.join(written.uri, object_store.MARKER)))
    assert marker == {"execution_id": written.uri.rsplit("/", 1)[1], "files": ["sub/BLESSED", "weights.json"]}
    assert object_store.is_published(copied.uri) and written.fingerprint
    assert object_store.read_bytes(object_store.join(copied.uri, "weights.json")) == b'{"w": 1}'
    # Its small files reach the execution's MLflow run as a local output's do.
    logged = MlflowClient(tracking).list_artifacts(result.components[0].execution_id, "outputs/model")
    assert [a.path for a in logged] == ["outputs/model/sub", "outputs/model/weights.json"]

    # The DirectRunner's worker processes share this disk and get none of the pipeline's filesystem
    # options: staged, the component writes a local folder.
    local_workers = [*args, "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    handed.clear()
    staged = run_pipeline(pipeline(fail=False, beam_args=local_workers), tracking_uri=tracking, enable_cache=False)
    assert staged.ok and not object_store.is_remote(handed[0]) and os.path.isabs(handed[0])
    published = [written.uri, staged.outputs("WriteInPlace")["model"][0].uri]

    failed = run_pipeline(pipeline(fail=True), tracking_uri=tracking, enable_cache=False)
    assert not failed.ok and "WriteInPlace: asked to fail" in failed.error
    base = object_store.join(root, "inplace", "WriteInPlace", "model")
    left = [uri for uri in object_store.list_files(base) if not uri.startswith(tuple(p + "/" for p in published))]
    assert left == []  # what the failed execution wrote in place is gone


def _read_by_uri(model: Input[Model], copy: Output[Model]) -> None:
    from sluice.components.io.files import read_bytes

    handed.append(model.uri)
    with open(copy.path("weights.json"), "wb") as fh:
        fh.write(read_bytes(model.path("weights.json")))


ReadByUri = component(_read_by_uri, name="ReadByUri", remote_inputs=("model",))


def test_an_input_read_by_uri_is_handed_over_unstaged(s3, tmp_path, monkeypatch):
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    endpoint, args = s3
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path / "cache"))
    root = f"s3://{make_bucket(endpoint)}/root"
    first = WriteInPlace(fail=False)  # in process: staged, uploaded
    handed.clear()
    result = run_pipeline(Pipeline("byuri", [first, ReadByUri(model=first.outputs["model"])], root,
                                   beam_pipeline_args=args), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.ok, result.error
    (written,) = result.outputs("WriteInPlace")["model"]
    assert object_store.is_remote(written.uri) and handed[1] == written.uri  # the store's URI, no local copy
    (copied,) = result.outputs("ReadByUri")["copy"]
    assert object_store.read_bytes(object_store.join(copied.uri, "weights.json")) == b'{"w": 1}'


def test_remote_inputs_must_name_inputs():
    with pytest.raises(DefinitionError, match=r"^component Bad: remote_inputs names no input: modle$"):
        component(_read_by_uri, name="Bad", remote_inputs=("modle",))
