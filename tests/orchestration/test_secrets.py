"""Credentials stay secret: one masking for URIs and text, used for every printed line, --json
document, log record, log file and compiled file; and failures that say what and where."""

import io
import json
import logging
import os
import subprocess
import sys
import time

import pytest

from sluice.orchestration.secrets import has_credentials, mask_text, mask_uri, masked
from tests.conftest import FIXTURES, REPO, _stop_group, free_port

SECRET = "Zq7SECRETvalue"
TOY = str(FIXTURES / "toy_pipeline.py")


@pytest.mark.parametrize("uri, expected", [
    (f"http://alice:{SECRET}@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
    (f"https://{SECRET}@mlflow.example.com/api", "https://***@mlflow.example.com/api"),
    (f"postgresql://sluice:{SECRET}@db:5432/mlflow", "postgresql://sluice:***@db:5432/mlflow"),
    (f"postgresql://sluice:p@{SECRET}@db/mlflow", "postgresql://sluice:***@db/mlflow"),  # an unescaped '@'
    (f"postgresql://db/mlflow?user=u&password={SECRET}", "postgresql://db/mlflow?user=u&password=***"),
    (f"sqlite:////srv/m.db?key={SECRET}", "sqlite:////srv/m.db?key=***"),
    (f"s3://b/k.csv?X-Amz-Date=1&X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}",
     "s3://b/k.csv?X-Amz-Date=1&X-Amz-Credential=***&X-Amz-Signature=***"),
    (f"gs://b/o?GoogleAccessId=svc&Signature={SECRET}", "gs://b/o?GoogleAccessId=svc&Signature=***"),
    (f"https://acct.blob.core.windows.net/c?sv=2020-08-04&sig={SECRET}",
     "https://acct.blob.core.windows.net/c?sv=2020-08-04&sig=***"),
    (f"http://h:5000/?TOKEN={SECRET}", "http://h:5000/?TOKEN=***"),
    (f"http://h/?Access_Token={SECRET}&api_key={SECRET}&client_secret={SECRET}&page=2",
     "http://h/?Access_Token=***&api_key=***&client_secret=***&page=2"),
    (f"https://h/cb#access_token={SECRET}&state=ok", "https://h/cb#access_token=***&state=ok"),
])
def test_mask_uri_hides_every_kind_of_credential(uri, expected):
    assert mask_uri(uri) == expected
    assert mask_text(f"store {uri} failed") == f"store {expected} failed"
    assert has_credentials(uri)


@pytest.mark.parametrize("uri", [
    "sqlite:////tmp/root/metadata.db", "http://127.0.0.1:5000", "https://h/x?page=2&keyboard=us&sort=key",
    "file:///tmp/a#b", "s3://bucket/path/with@sign/x", "gs://b/data/*.csv", "/tmp/plain/path?x=1",
])
def test_mask_uri_keeps_what_is_no_credential(uri):
    assert mask_uri(uri) == uri and mask_text(uri) == uri and not has_credentials(uri)


@pytest.mark.parametrize("text, expected", [
    (f"API request to http://alice:{SECRET}@127.0.0.1:1/api/2.0/mlflow/runs/create failed",
     "API request to http://alice:***@127.0.0.1:1/api/2.0/mlflow/runs/create failed"),
    (f"Max retries exceeded with url: /api/2.0/x?token={SECRET} (Caused by E)",
     "Max retries exceeded with url: /api/2.0/x?token=*** (Caused by E)"),
    (f"{{'uri': 'http://{SECRET}@h/'}}", "{'uri': 'http://***@h/'}"),
    (f'{{"uri": "http://u:{SECRET}@h", "n": 1}}', '{"uri": "http://u:***@h", "n": 1}'),
    (f"Authorization: Bearer {SECRET}", "Authorization: ***"),
    (f"host=db password={SECRET} user=u", "host=db password=*** user=u"),
    (f"MLFLOW_TRACKING_PASSWORD={SECRET}", "MLFLOW_TRACKING_PASSWORD=***"),
    (f"a http://x:{SECRET}@h and s3://b/k?sig={SECRET}", "a http://x:***@h and s3://b/k?sig=***"),
    ("column key=3 has sig=2 values", "column key=3 has sig=2 values"),  # prose keeps short names
])
def test_mask_text_masks_uris_pairs_and_headers_inside_text(text, expected):
    assert mask_text(text) == expected


def test_masked_documents_mask_every_string():
    doc = {"tracking_uri": f"http://u:{SECRET}@h", "runs": [{"error": f"GET /x?token={SECRET}"}], "n": 3}
    assert SECRET not in json.dumps(masked(doc)) and masked(doc)["n"] == 3


def test_log_records_are_masked_even_through_a_library_s_own_handler():
    from sluice.orchestration.runtime import log_masking

    log_masking.install()
    out = io.StringIO()
    logger = logging.getLogger("sluice-test.own-handler")  # like mlflow's: its own handler, no propagation
    logger.propagate = False
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    try:
        logger.error("request to %s failed", f"http://alice:{SECRET}@127.0.0.1:1/api")
        try:
            raise ConnectionError(f"cannot reach http://{SECRET}@h/?token={SECRET}")
        except ConnectionError:
            logger.exception("lost the server")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert SECRET not in text
    assert "http://alice:***@127.0.0.1:1/api" in text and "ConnectionError: cannot reach http://***@h/" in text


def sluice(*args, cwd=None, env_extra=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_PIPELINE_ROOT", None)
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def with_credentials(url: str, how: str) -> str:
    return url.replace("http://", f"http://alice:{SECRET}@" if how == "password" else f"http://{SECRET}@")


def toy_args(ws):
    (ws / "numbers.txt").write_text("1 2 3\n")
    (ws / "toy_module.py").write_text("def transform(v):\n    return v + 1\n")
    return ["--param", f"data_file={ws / 'numbers.txt'}", "--param", f"module_file={ws / 'toy_module.py'}",
            "--pipeline-root", str(ws / "root")]


def assert_clean(*procs):
    for proc in procs:
        assert SECRET not in proc.stdout and SECRET not in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_runs_on_a_server_with_credentials_print_none(mlflow_server, tmp_path):
    """MLflow sends the user info as basic auth, which a server without auth ignores: the run works."""
    password, token = with_credentials(mlflow_server, "password"), with_credentials(mlflow_server, "token")
    text = sluice("run", TOY, *toy_args(tmp_path), "--tracking-uri", password, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "metadata: " + mlflow_server.replace("http://", "http://alice:***@") in text.stdout
    as_json = sluice("run", TOY, *toy_args(tmp_path), "--tracking-uri", token, "--json", cwd=tmp_path)
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "executed" and doc["tracking_uri"] == mlflow_server.replace("http://", "http://***@")
    store = ["--tracking-uri", password, "--pipeline-root", str(tmp_path / "root")]
    listed, shown = sluice("runs", "list", "toy", *store), sluice("runs", "show", doc["run_id"], *store, "--json")
    numbers = doc["components"][0]["outputs"]["numbers"][0]
    lineage = sluice("lineage", numbers, *store, "--json")
    assert doc["run_id"] in listed.stdout and json.loads(shown.stdout)["run_id"] == doc["run_id"]
    assert json.loads(lineage.stdout)["upstream"][0]["component_id"] == "ReadNumbers"
    assert_clean(text, as_json, listed, shown, lineage)


LEAKY = '''
import logging

from sluice.components.artifacts import Examples
from sluice.components.sdk import ExecutionContext, Output, component
from sluice.orchestration.pipeline import Pipeline


def leak(examples: Output[Examples], ctx: ExecutionContext = None) -> None:
    print("connecting to", ctx.tracking_uri, flush=True)
    logging.getLogger("mlflow.leaky").error("lost %s", ctx.tracking_uri)
    raise RuntimeError(f"cannot reach {ctx.tracking_uri}/api/2.0/mlflow/runs/create?token=abc")


Leak = component(leak, name="Leak")


def create_pipeline(pipeline_root: str = "r") -> Pipeline:
    return Pipeline(name="leaky", components=[Leak()], pipeline_root=pipeline_root)
'''


@pytest.mark.slow
def test_a_component_quoting_the_url_leaks_nothing(mlflow_server, tmp_path):
    (tmp_path / "leaky.py").write_text(LEAKY)
    uri = with_credentials(mlflow_server, "password")
    args = ["run", str(tmp_path / "leaky.py"), "--pipeline-root", str(tmp_path / "root"), "--tracking-uri", uri]
    as_json = sluice(*args, "--json", cwd=tmp_path)
    debug = sluice(*args, "--debug", cwd=tmp_path)
    text = sluice(*args, cwd=tmp_path)
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "failed" and "cannot reach http://alice:***@" in doc["error"]
    assert "Traceback" in debug.stderr and "RuntimeError: cannot reach http://alice:***@" in debug.stderr
    assert "connecting to http://alice:***@" in text.stdout + text.stderr  # the component's own print
    assert "lost http://alice:***@" in text.stderr  # a log line through a library logger's own handler
    [error] = [line for line in text.stderr.splitlines() if line.startswith("error:")]
    assert "cannot reach http://alice:***@" in error and text.returncode == 1
    store = ["--tracking-uri", uri, "--pipeline-root", str(tmp_path / "root")]
    shown = sluice("runs", "show", doc["run_id"], *store)
    assert "error: component Leak failed: RuntimeError: cannot reach http://alice:***@" in shown.stdout
    logs = list((tmp_path / "root").rglob("*.log"))
    assert logs and all(SECRET not in p.read_text() for p in logs)
    assert_clean(as_json, debug, text, shown)


def test_compiling_refuses_any_credential(tmp_path, toy_workspace):
    from sluice.components.sdk import DefinitionError
    from sluice.orchestration.kubeflow import compile_kubeflow
    from sluice.orchestration.loader import build_pipeline

    def compile_with(params=(), tracking_uri=None):
        pipe = build_pipeline(TOY, [f"pipeline_root={tmp_path / 'root'}", *params])
        return compile_kubeflow(pipe, str(tmp_path / "p.yaml"), image="sluice:test", tracking_uri=tracking_uri)

    for uri in (f"http://{SECRET}@h:5000", f"http://h:5000/?token={SECRET}", f"https://u:{SECRET}@h"):
        with pytest.raises(DefinitionError, match=r"^--tracking-uri .* must not contain credentials") as info:
            compile_with(tracking_uri=uri)
        assert SECRET not in str(info.value)
    with pytest.raises(DefinitionError, match=r"parameter data_file = 's3://b/n\.txt\?X-Amz-Signature=\*\*\*'"):
        compile_with([f"data_file=s3://b/n.txt?X-Amz-Signature={SECRET}"])
    compile_with([f"data_file={toy_workspace / 'numbers.txt'}"], tracking_uri="http://mlflow.kubeflow:5000")
    assert "mlflow.kubeflow" in (tmp_path / "p.yaml").read_text()
    proc = sluice("compile", TOY, "-o", str(tmp_path / "q.yaml"), "--image", "sluice:test",
                  "--tracking-uri", f"http://u:{SECRET}@h")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--tracking-uri http://u:***@h" in proc.stderr
    assert_clean(proc)
    assert not (tmp_path / "q.yaml").exists()


def test_store_failure_prints_a_failed_json_document(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    proc = sluice("run", TOY, *toy_args(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}/a_file/metadata.db",
                  "--json", cwd=tmp_path)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed" and doc["pipeline"] == "toy" and doc["run_id"] is None
    assert "a_file" in doc["error"] and "\n" not in doc["error"]
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [f"error: {doc['error']}"]


@pytest.mark.parametrize("body, line, what", [
    ("import sys\nsys.exit(3)\n", 2, "the module called sys.exit(3) while being imported"),
    ("import sys\n\ndef create_pipeline():\n    sys.exit(3)\n", 4, "create_pipeline called sys.exit(3)"),
])
def test_a_pipeline_module_that_exits_is_reported(tmp_path, body, line, what):
    (tmp_path / "exits.py").write_text(body)
    proc = sluice("run", str(tmp_path / "exits.py"), "--pipeline-root", str(tmp_path / "root"))
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'exits.py'}:{line}: {what}"
    as_json = sluice("run", str(tmp_path / "exits.py"), "--pipeline-root", str(tmp_path / "root"), "--json")
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "failed" and doc["error"].endswith(what)


KILLER = '''
import os
import signal

from sluice.components.artifacts import Examples
from sluice.components.sdk import ExecutionContext, Output, component
from sluice.orchestration.pipeline import Pipeline


def kill_server(examples: Output[Examples], ctx: ExecutionContext = None) -> None:
    os.killpg(int(os.environ["KILL_PGID"]), signal.SIGKILL)
    ctx.log_metric("rows", 1)


KillServer = component(kill_server, name="KillServer")


def create_pipeline(pipeline_root: str = "r") -> Pipeline:
    return Pipeline(name="killer", components=[KillServer()], pipeline_root=pipeline_root)
'''


@pytest.mark.slow
def test_tracking_server_dying_mid_run_leaks_nothing(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--default-artifact-root",
         str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        import urllib.request

        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(0.5)
        (tmp_path / "killer.py").write_text(KILLER)
        proc = sluice("run", str(tmp_path / "killer.py"), "--pipeline-root", str(tmp_path / "root"), "--json",
                      "--debug", "--tracking-uri", f"http://alice:{SECRET}@127.0.0.1:{port}", cwd=tmp_path,
                      env_extra={"KILL_PGID": str(server.pid)})
    finally:
        _stop_group(server)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["status"] == "failed" and "alice:***@" in doc["error"]
    assert "Traceback" in proc.stderr and "alice:***@" in proc.stderr
    assert_clean(proc)
    assert all(SECRET not in p.read_text() for p in (tmp_path / "root").rglob("*.log"))


TASK = """
import sys

from kfp.dsl import Artifact

from sluice.orchestration.kubeflow import encode_ir
from sluice.orchestration.kubeflow_task import run_task
from sluice.orchestration.loader import build_pipeline
from sluice.orchestration.pipeline import compile_pipeline

pipeline_file, root, examples = sys.argv[1:]
ir = compile_pipeline(build_pipeline(pipeline_file, pipeline_root=root))
run_task(encode_ir(ir), "Leak", "run-1", {"pipeline_root": root}, {},
         {"examples": Artifact(name="examples", uri=examples, metadata={})}, {})
"""


def test_a_kubeflow_task_fails_with_a_masked_message(mlflow_server, tmp_path):
    """A task's stdout and stderr are its pod log: what it prints and raises there is masked."""
    (tmp_path / "leaky.py").write_text(LEAKY)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": with_credentials(mlflow_server, "password")}
    proc = subprocess.run([sys.executable, "-c", TASK, str(tmp_path / "leaky.py"), str(tmp_path / "root"),
                           str(tmp_path / "kfp" / "run-1" / "leak" / "examples")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "connecting to http://alice:***@" in proc.stdout  # the component's own print
    assert "RuntimeError: cannot reach http://alice:***@" in proc.stderr  # the masked traceback we print
    last = proc.stderr.strip().splitlines()[-1]  # then KFP's (Python's here) of what the task raised
    assert "TaskFailed: component Leak failed: RuntimeError: cannot reach http://alice:***@" in last
    assert_clean(proc)
