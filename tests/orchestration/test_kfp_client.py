"""`sluice kfp submit/schedule` against a loopback endpoint that records requests.

There is no cluster here: the endpoint answers like the KFP v2beta1 API, and
the recorded bodies are checked against kfp's own API models.
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kfp_server_api
import pytest

from tests.conftest import FIXTURES, REPO


class Recorder(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiments": [], "total_size": 0})
        self._reply({})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            return self._reply({**body, "experiment_id": "exp-1"})
        if self.path == "/apis/v2beta1/runs":
            return self._reply({**body, "run_id": "run-1", "state": "PENDING"})
        if self.path == "/apis/v2beta1/recurringruns":
            return self._reply({**body, "recurring_run_id": "rr-1", "status": "ENABLED"})
        self._reply({})


@pytest.fixture
def endpoint():
    Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.requests
    server.shutdown()


def sluice(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def as_model(body, model):
    return kfp_server_api.ApiClient()._ApiClient__deserialize(body, model)


def toy_args(ws):
    return ["--image", "registry.example/sluice:1", "--param", f"data_file={ws / 'numbers.txt'}",
            "--param", f"module_file={ws / 'toy_module.py'}"]


def test_submit_creates_a_run(endpoint, toy_workspace):
    url, requests = endpoint
    proc = sluice("kfp", "submit", str(FIXTURES / "toy_pipeline.py"), "--host", url, "--experiment", "nightly",
                  *toy_args(toy_workspace))
    assert proc.returncode == 0, proc.stderr
    assert "run run-1 in experiment nightly" in proc.stdout
    [exp_body] = [b for m, p, b in requests if p == "/apis/v2beta1/experiments" and m == "POST"]
    assert as_model(exp_body, "V2beta1Experiment").display_name == "nightly"
    [run_body] = [b for m, p, b in requests if p == "/apis/v2beta1/runs"]
    run = as_model(run_body, "V2beta1Run")
    assert run.experiment_id == "exp-1"
    assert run.pipeline_spec["pipelineInfo"]["name"] == "toy"
    assert len(run.pipeline_spec["root"]["dag"]["tasks"]) == 4


def test_schedule_creates_a_recurring_run_in_utc(endpoint, toy_workspace):
    url, requests = endpoint
    proc = sluice("kfp", "schedule", str(FIXTURES / "toy_pipeline.py"), "--host", url, "--cron", "0 3 * * *",
                  "--timezone", "UTC", *toy_args(toy_workspace))
    assert proc.returncode == 0, proc.stderr
    assert "KFP cron '0 0 3 * * *' (UTC)" in proc.stdout
    [body] = [b for m, p, b in requests if p == "/apis/v2beta1/recurringruns"]
    rr = as_model(body, "V2beta1RecurringRun")
    assert rr.trigger.cron_schedule.cron == "0 0 3 * * *"
    assert rr.max_concurrency == "1" or rr.max_concurrency == 1
    assert rr.no_catchup is True and rr.experiment_id == "exp-1"
    assert rr.pipeline_spec["pipelineInfo"]["name"] == "toy"


def test_schedule_converts_timezones(endpoint, toy_workspace):
    url, requests = endpoint
    proc = sluice("kfp", "schedule", str(FIXTURES / "toy_pipeline.py"), "--host", url, "--cron", "30 4 * * *",
                  "--timezone", "Asia/Kolkata", *toy_args(toy_workspace))
    assert proc.returncode == 0, proc.stderr
    [body] = [b for m, p, b in requests if p == "/apis/v2beta1/recurringruns"]
    assert as_model(body, "V2beta1RecurringRun").trigger.cron_schedule.cron == "0 0 23 * * *"


def test_invalid_cron_fails_before_any_request(endpoint, toy_workspace):
    url, requests = endpoint
    proc = sluice("kfp", "schedule", str(FIXTURES / "toy_pipeline.py"), "--host", url, "--cron", "0 25 * * *",
                  *toy_args(toy_workspace))
    assert proc.returncode == 1 and "invalid cron expression" in proc.stderr
    assert proc.stderr.count("\n") == 1 and requests == []
