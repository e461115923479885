"""Multi-worker components on Kubeflow: the compiled task is marked as a worker launcher, and at run
time it creates a TFJob on a recording Kubernetes API on loopback, which plays the training operator
(it runs each replica's command here, with the TF_CONFIG the operator would inject)."""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from sluice.components.sdk import ComponentError
from sluice.orchestration import kubeflow_jobs
from sluice.orchestration.kubeflow import compile_kubeflow, decode_ir
from sluice.orchestration.kubeflow_jobs import TFJobLauncher
from sluice.orchestration.runtime import RunnerContext, processes
from tests.conftest import REPO

TOKEN = "sa-token-not-for-yaml"  # noqa: S105 - the test's service-account token
IMAGE = "registry.example/sluice:1"
POD = {"metadata": {"name": "task-pod", "uid": "uid-of-task-pod"},
       "spec": {"serviceAccountName": "pipeline-runner",
                "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "pipeline-root"}}],
                "containers": [{"name": "main", "image": IMAGE, "volumeMounts": [{"name": "root", "mountPath": "/r"}],
                                "resources": {"limits": {"cpu": "2"}}}]}}


class KubernetesApi(ThreadingHTTPServer):
    """Records every call; answers a TFJob's GETs Running, then ``final`` (or, playing the operator,
    what the replicas it started ended with)."""

    def __init__(self, final: str = "Succeeded", operator: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.final, self.operator = final, operator
        self.calls, self.jobs, self.replicas, self.gets = [], [], [], 0


class _Handler(BaseHTTPRequestHandler):
    server: KubernetesApi

    def log_message(self, *args):
        pass

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.calls.append((self.command, self.path, self.headers.get("Authorization"), body))
        return body

    def do_POST(self):
        job = self._record()
        self.server.jobs.append(job)
        if self.server.operator:
            self._start_replicas(job)
        self._answer(201, job)

    def _start_replicas(self, job: dict) -> None:
        name, spec = job["metadata"]["name"], job["spec"]["tfReplicaSpecs"]["Worker"]
        cluster = {"worker": [f"{name}-worker-{i}.{job['metadata']['namespace']}.svc:2222"
                              for i in range(spec["replicas"])]}
        command = spec["template"]["spec"]["containers"][0]["command"]
        for index in range(spec["replicas"]):
            env = {**os.environ, "PYTHONPATH": str(REPO),
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            self.server.replicas.append(subprocess.Popen(command, env=env))  # noqa: S603

    def do_GET(self):
        self._record()
        if "/pods/" in self.path:
            self._answer(200, POD)
            return
        self.server.gets += 1
        state = "Running"
        if self.server.operator and all(p.poll() is not None for p in self.server.replicas):
            state = "Succeeded" if all(p.returncode == 0 for p in self.server.replicas) else "Failed"
        elif not self.server.operator and self.server.gets > 1:
            state = self.server.final
        message = {"Failed": "TFJob team-a/x has failed because 1 Worker replica(s) failed."}.get(state, state)
        self._answer(200, {"status": {"conditions": [
            {"type": "Created", "status": "True"},
            {"type": state, "status": "True", "reason": f"TFJob{state}", "message": message}]}})

    def do_DELETE(self):
        self._record()
        self._answer(200, {})


@pytest.fixture
def kube(tmp_path, monkeypatch):
    """Starts a recording API (call ``kube(...)``) and points the task's in-cluster settings at it."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "namespace").write_text("team-a")
    servers = []

    def start(**kw) -> KubernetesApi:
        server = KubernetesApi(**kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv(kubeflow_jobs.API_ENV, f"http://127.0.0.1:{server.server_address[1]}")
        return server

    monkeypatch.setenv(kubeflow_jobs.ACCOUNT_ENV, str(account))
    monkeypatch.setenv(kubeflow_jobs.POD_ENV["name"], "task-pod")
    for name in ("KUBERNETES_SERVICE_HOST", kubeflow_jobs.POD_ENV["uid"], kubeflow_jobs.POD_ENV["namespace"]):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kubeflow_jobs, "POLL_SECONDS", 0.05)
    yield start
    for server in servers:
        server.shutdown()
        for replica in server.replicas:
            replica.wait(timeout=60)


def echo_worker(argv: list[str]) -> int:
    """A worker entry as cheap as it gets: its result is its request, TF_CONFIG and index."""
    request, result = argv
    tf_config = json.loads(os.environ["TF_CONFIG"])
    with open(request) as fh, open(result, "w") as out:
        json.dump({"request": json.load(fh), "index": tf_config["task"]["index"],
                   "cluster": tf_config["cluster"]}, out)
    return 0


def failing_worker(argv: list[str]) -> int:
    """Worker 1 fails and says why, as the Trainer's workers do."""
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    with open(argv[1], "w") as out:
        json.dump({"error": "Trainer: run_fn failed"} if index == 1 else {"index": index}, out)
    return index


def _context(tmp_path) -> RunnerContext:
    return RunnerContext(pipeline_name="penguin", component_id="Trainer",
                         execution_id="0f3a9c1e5b7d4e2f8a6b0c9d1e2f3a4b", pipeline_root=str(tmp_path / "root"))


def test_penguin_compiles_its_trainer_as_a_worker_launcher(tmp_path, monkeypatch):
    from sluice.orchestration.loader import build_pipeline

    monkeypatch.setenv(kubeflow_jobs.API_ENV, "http://10.0.0.1:6443")  # found at run time, never compiled in
    pipe = build_pipeline("penguin", [f"pipeline_root={tmp_path / 'root'}", "trainer_workers=2"])
    path = tmp_path / "penguin.yaml"
    summary = compile_kubeflow(pipe, str(path), image=IMAGE)
    assert summary["worker_launchers"] == {"Trainer": 2}
    text = path.read_text()
    assert TOKEN not in text and "10.0.0.1" not in text and "Bearer" not in text
    spec, platform = yaml.safe_load_all(text)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    launchers = {name: e for name, e in executors.items() if "podMetadata" in e}
    assert list(launchers) == ["exec-sluice-trainer"]
    trainer = launchers["exec-sluice-trainer"]
    assert trainer["podMetadata"]["labels"] == {"sluice.dev/worker-launcher": "tfjob"}
    assert trainer["podMetadata"]["annotations"] == {"sluice.dev/workers": "2"}
    assert {e["name"]: e["fieldPath"] for e in trainer["fieldPathAsEnv"]} == {
        "SLUICE_POD_NAME": "metadata.name", "SLUICE_POD_NAMESPACE": "metadata.namespace",
        "SLUICE_POD_UID": "metadata.uid"}
    # The workers' image travels in the IR each task gets.
    task = spec["root"]["dag"]["tasks"]["sluice-trainer"]
    ir = decode_ir(task["inputs"]["parameters"]["sluice_ir"]["runtimeValue"]["constant"])
    assert ir["pipeline"]["image"] == IMAGE


def test_workers_are_the_replicas_of_a_tfjob(tmp_path, kube):
    api = kube(operator=True)
    with processes.worker_launcher(TFJobLauncher(IMAGE, "run-42", timeout_seconds=60)):
        results = _context(tmp_path).run_workers(f"{__name__}:echo_worker", {"steps": 5}, 2)
    assert [r.result["index"] for r in results] == [0, 1]
    assert results[1].result["request"] == {"steps": 5}
    assert len(results[0].result["cluster"]["worker"]) == 2
    [job] = api.jobs
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    meta = job["metadata"]
    assert meta["namespace"] == "team-a" and meta["name"].startswith("sluice-trainer-0f3a9c1e5b7d")
    assert meta["labels"]["sluice.dev/run"] == "run-42" and meta["labels"]["sluice.dev/pipeline"] == "penguin"
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "task-pod",
                                        "uid": "uid-of-task-pod"}]
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2 and worker["restartPolicy"] == "Never"
    [container] = worker["template"]["spec"]["containers"]
    assert container["name"] == "tensorflow" and container["image"] == IMAGE
    # The workers see what the task sees: its volumes, mounts and resources.
    assert worker["template"]["spec"]["volumes"] == POD["spec"]["volumes"]
    assert container["volumeMounts"] == POD["spec"]["containers"][0]["volumeMounts"]
    assert TOKEN not in json.dumps(job)
    assert {auth for _, _, auth, _ in api.calls} == {f"Bearer {TOKEN}"}
    assert [(m, p.rsplit("/", 2)[-2]) for m, p, _, _ in api.calls][:3] == [
        ("GET", "pods"), ("POST", "team-a"), ("GET", "tfjobs")]
    assert not os.listdir(tmp_path / "root" / ".sluice-workers")  # the shared folder is gone after success


def test_a_failed_tfjob_fails_the_trainer_in_one_line(tmp_path, kube, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sluice.components.artifacts import Examples, Model, ModelRun
    from sluice.components.trainer import run_trainer

    monkeypatch.delenv("TF_CONFIG", raising=False)
    api = kube(final="Failed")
    for split in ("train", "eval"):
        os.makedirs(tmp_path / "examples" / f"Split-{split}")
        pq.write_table(pa.table({"x": [1.0]}), tmp_path / "examples" / f"Split-{split}" / "part.parquet")
    module = tmp_path / "model.py"
    module.write_text("def run_fn(fn_args):\n    pass\n")
    launcher = TFJobLauncher(IMAGE, "run-42", timeout_seconds=60)
    with processes.worker_launcher(launcher), pytest.raises(ComponentError) as info:
        run_trainer(examples=Examples(uri=str(tmp_path / "examples"), split_names=["train", "eval"]),
                    model=Model(uri=str(tmp_path / "model")), model_run=ModelRun(uri=str(tmp_path / "run")),
                    module_file=str(module), train_steps=5, distribution="multi_worker", num_workers=2,
                    ctx=_context(tmp_path))
    name = api.jobs[0]["metadata"]["name"]
    assert str(info.value) == (f"Trainer: TFJob team-a/{name} failed: "
                               f"TFJob team-a/x has failed because 1 Worker replica(s) failed.")
    assert api.gets == 2  # Running, then Failed


def test_a_refused_tfjob_an_object_store_root_and_no_image_are_one_line(tmp_path, kube, monkeypatch):
    kube()
    monkeypatch.setenv(kubeflow_jobs.API_ENV, "http://127.0.0.1:9")  # nothing listens there
    unreachable = r"^Trainer: TFJob team-a/sluice-trainer-\S+: cannot reach the Kubernetes API at http://127.0.0.1:9: "
    with processes.worker_launcher(TFJobLauncher(IMAGE, "run-42")), pytest.raises(ComponentError, match=unreachable):
        _context(tmp_path).run_workers(f"{__name__}:echo_worker", {}, 2)
    ctx = _context(tmp_path)
    ctx.pipeline_root = "s3://bucket/root"
    with processes.worker_launcher(TFJobLauncher(IMAGE, "run-42")), pytest.raises(ComponentError, match=(
            r"^Trainer: its workers need a pipeline root on a filesystem they mount too, not s3://$")):
        ctx.run_workers(f"{__name__}:echo_worker", {}, 2)
    no_image = r"^Trainer: the compiled pipeline names no image for its workers"
    with processes.worker_launcher(TFJobLauncher(None, "run-42")), pytest.raises(ComponentError, match=no_image):
        _context(tmp_path).run_workers(f"{__name__}:echo_worker", {}, 2)


def test_a_worker_that_says_why_it_failed_is_heard_over_the_tfjob(tmp_path, kube):
    api = kube(operator=True)
    with processes.worker_launcher(TFJobLauncher(IMAGE, "run-42", timeout_seconds=60)):
        results = _context(tmp_path).run_workers(f"{__name__}:failing_worker", {}, 2)
    assert [r.result for r in results] == [{"index": 0}, {"error": "Trainer: run_fn failed"}]
    assert api.gets >= 1 and [p.returncode for p in api.replicas] == [0, 1]
    [kept] = os.listdir(tmp_path / "root" / ".sluice-workers")  # kept: it holds the failed worker's result
    assert sorted(os.listdir(tmp_path / "root" / ".sluice-workers" / kept)) == [
        "request.json", "result-0.json", "result-1.json"]
