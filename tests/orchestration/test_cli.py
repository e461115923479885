"""The sluice CLI: commands, --json, and one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, REPO

TOY = str(FIXTURES / "toy_pipeline.py")


def sluice(*args, cwd=None, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def toy_params(ws):
    return ["--param", f"data_file={ws / 'numbers.txt'}", "--param", f"module_file={ws / 'toy_module.py'}",
            "--pipeline-root", str(ws / "root")]


def one_line_error(proc, pattern):
    import re

    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_help_lists_every_command():
    out = sluice("--help")
    assert out.returncode == 0
    for command in ("run", "runs", "lineage", "ui"):
        assert f"  {command}" in out.stdout


def test_run_json_runs_list_show_and_lineage(toy_workspace):
    proc = sluice("run", TOY, *toy_params(toy_workspace), "--json", cwd=toy_workspace)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"pipeline", "run_id", "status", "seconds", "pipeline_root", "tracking_uri", "components"}
    assert doc["status"] == "executed" and doc["pipeline"] == "toy"
    comp = doc["components"][0]
    assert set(comp) >= {"id", "type", "status", "seconds", "outputs"}
    assert comp["status"] == "executed" and comp["outputs"]["numbers"][0].startswith(str(toy_workspace))

    again = json.loads(sluice("run", TOY, *toy_params(toy_workspace), "--json", cwd=toy_workspace).stdout)
    assert {c["status"] for c in again["components"]} == {"cached"}
    forced = json.loads(sluice("run", TOY, *toy_params(toy_workspace), "--json", "--no-cache",
                               cwd=toy_workspace).stdout)
    assert {c["status"] for c in forced["components"]} == {"executed"}

    root = ["--pipeline-root", str(toy_workspace / "root")]
    listed = sluice("runs", "list", "toy", *root)
    assert listed.returncode == 0 and doc["run_id"] in listed.stdout and again["run_id"] in listed.stdout
    shown = json.loads(sluice("runs", "show", doc["run_id"], *root, "--json").stdout)
    order = [c["component_id"] for c in shown["components"]]
    assert order[0] == "ReadNumbers" and order[-1] == "Report" and set(order[1:3]) == {"Scale", "Count"}
    assert all(c["cache_key"] for c in shown["components"])

    numbers = comp["outputs"]["numbers"][0]
    lin = json.loads(sluice("lineage", numbers, *root, "--json").stdout)
    assert lin["upstream"][0]["component_id"] == "ReadNumbers"
    downstream = {s["component_id"] for s in lin["downstream"]}
    assert {"Scale", "Count", "Report"} <= downstream
    report = doc["components"][3]["outputs"]["evaluation"][0]
    lin_up = json.loads(sluice("lineage", report, *root, "--json").stdout)
    assert [s["component_id"] for s in lin_up["upstream"]] == ["Report", "Scale", "ReadNumbers"]
    text = sluice("lineage", report, *root)
    assert "upstream:" in text.stdout and "ReadNumbers" in text.stdout


def test_failed_run_is_one_line_naming_the_component_and_log(toy_workspace):
    proc = sluice("run", TOY, *toy_params(toy_workspace), cwd=toy_workspace,
                  env_extra={"TOY_RAISE_MID_WRITE": "1"})
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "component Scale failed: scale: refusing values" in err[0] and "(log: " in err[0]
    assert "Traceback" not in proc.stderr
    run_id = sluice("runs", "list", "toy", "--pipeline-root", str(toy_workspace / "root"), "--json").stdout
    [record] = json.loads(run_id)
    shown = sluice("runs", "show", record["run_id"], "--pipeline-root", str(toy_workspace / "root")).stdout
    assert "error: component Scale failed: scale: refusing values" in shown
    assert "Scale" in shown and "failed" in shown and "log: " in shown


def test_missing_pipeline_file(tmp_path):
    one_line_error(sluice("run", str(tmp_path / "nope.py")), r"nope\.py: pipeline file does not exist")


def test_unknown_example_pipeline():
    one_line_error(sluice("run", "no_such_pipeline"), r"no_such_pipeline: no such pipeline")


def test_file_without_create_pipeline(tmp_path):
    f = tmp_path / "empty.py"
    f.write_text("x = 1\n")
    one_line_error(sluice("run", str(f)), r"empty\.py: defines no create_pipeline")


def test_create_pipeline_that_raises_names_file_and_line(tmp_path):
    f = tmp_path / "raises.py"
    f.write_text("def create_pipeline():\n    raise ValueError('bad config')\n")
    one_line_error(sluice("run", str(f)), r"raises\.py:2: create_pipeline raised ValueError: bad config")


def test_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("def create_pipeline(:\n    pass\n")
    one_line_error(sluice("run", str(f)), r"broken\.py:1: SyntaxError")


def test_definition_error_in_pipeline_names_component(tmp_path):
    f = tmp_path / "typo.py"
    f.write_text(f"import sys; sys.path.insert(0, {str(FIXTURES)!r})\n"
                 "from toy_pipeline import ReadNumbers\n"
                 "from sluice.orchestration.pipeline import Pipeline\n"
                 "def create_pipeline():\n"
                 "    return Pipeline(name='t', pipeline_root='r', components=[ReadNumbers(data_fil='x')])\n")
    one_line_error(sluice("run", str(f)), r"component ReadNumbers: unknown parameter 'data_fil' \(valid: data_file\)")


def test_unknown_param_lists_valid_ones(toy_workspace):
    one_line_error(sluice("run", TOY, "--param", "facter=2"),
                   r"--param facter: unknown parameter of .*toy_pipeline\.py \(valid: pipeline_root, data_file, "
                   r"module_file, factor, enable_cache\)")


def test_param_of_wrong_type(toy_workspace):
    one_line_error(sluice("run", TOY, "--param", "factor=lots"), r"--param factor='lots': ")


def test_unknown_option_is_one_line():
    one_line_error(sluice("run", TOY, "--bogus"), r"No such option '--bogus'")


def test_debug_shows_traceback(tmp_path):
    f = tmp_path / "raises.py"
    f.write_text("def create_pipeline():\n    raise ValueError('bad config')\n")
    proc = sluice("run", str(f), "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_runs_show_unknown_id(toy_workspace):
    assert sluice("run", TOY, *toy_params(toy_workspace), cwd=toy_workspace).returncode == 0
    one_line_error(sluice("runs", "show", "deadbeef", "--pipeline-root", str(toy_workspace / "root")),
                   r"no run 'deadbeef'")


def test_runs_list_without_a_store(tmp_path):
    one_line_error(sluice("runs", "list", "--pipeline-root", str(tmp_path / "none")), r"no metadata store at")


def test_ui_serves_the_mlflow_ui_on_the_pipeline_store(toy_workspace):
    import time
    import urllib.request

    from tests.conftest import free_port

    assert sluice("run", TOY, *toy_params(toy_workspace), cwd=toy_workspace).returncode == 0
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    said = toy_workspace / "ui.txt"
    with open(said, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sluice.orchestration.cli", "ui", "--pipeline-root",
                                 str(toy_workspace / "root"), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=out, env=env, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=toy",
                    timeout=2).read()
                break
            except Exception:
                assert time.time() < deadline and proc.poll() is None, "mlflow ui did not start"
                time.sleep(0.5)
        assert json.loads(body)["experiment"]["name"] == "toy"
        # The pipeline's page, as printed, opens in the model-training view with the run listed.
        [address] = [line.split(": ", 1)[1] for line in said.read_text().splitlines() if line.startswith("  toy: ")]
        assert address.endswith("?workflowType=machine_learning")
        _page_shows_the_runs(address)
        # The store's URI (a password, on a team's database) never shows in a command line.
        command_lines = subprocess.run(["pgrep", "-af", "--", f"--port {port}"], capture_output=True, text=True).stdout
        assert "mlflow" in command_lines and "metadata.db" not in command_lines, command_lines
        proc.terminate()  # sluice ui stops its server's whole process group
        proc.wait(30)
        time.sleep(1)
        leftovers = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True).stdout
        assert leftovers.strip() == "", f"server processes left behind: {leftovers}"
    finally:
        from tests.conftest import _stop_group

        _stop_group(proc)


def _page_shows_the_runs(address: str) -> None:
    """Headless Chromium on the UI's address: the runs table with the pipeline's run, no GenAI overview."""
    from tests.components.test_reports_browser import CHROMIUM_FLAGS, _chromium

    if _chromium() is None and not os.environ.get("CI"):
        return  # the browser part needs Chromium; .ci/run installs it
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(address)
            page.get_by_text("toy-", exact=False).first.wait_for(timeout=60000)  # the parent run's name
            assert page.get_by_text("Detect Issues").count() == 0  # GenAI's traces overview
        finally:
            browser.close()


def test_run_summaries_are_what_the_artifacts_say_of_themselves():
    from sluice.components.artifacts import Examples, PushedModel

    assert Examples(uri="/x").summary() is None
    assert PushedModel(uri="/x", pushed=True, version=3, reason="better").summary() == "pushed version 3 (better)"
    assert PushedModel(uri="/x", pushed=True, version=3).summary(cached=True) == (
        "nothing new to push (cached; version 3 stays)")
    assert PushedModel(uri="/x", reason="not blessed").summary() == "not pushed: not blessed"


ROOTED = '''
import os

from sluice.components.artifacts import Examples
from sluice.components.sdk import Output, component
from sluice.orchestration.pipeline import Pipeline


def place(examples: Output[Examples], serving_dir: str = "") -> None:
    os.makedirs(serving_dir, exist_ok=True)
    open(os.path.join(serving_dir, "model"), "w").close()


Place = component(place, name="Place")


def create_pipeline(pipeline_root: str = "elsewhere", serving_dir: str = "") -> Pipeline:
    serving_dir = serving_dir or os.path.join(pipeline_root, "serving", "rooted")
    return Pipeline(name="rooted", components=[Place(serving_dir=serving_dir)], pipeline_root=pipeline_root)
'''


@pytest.mark.slow
def test_the_cli_root_is_the_one_root_defaults_under_it_included(tmp_path):
    """--pipeline-root, else $SLUICE_PIPELINE_ROOT, else ./sluice_runs: create_pipeline gets it, so a
    folder the pipeline places under its root by default (a serving folder) moves with it."""
    (tmp_path / "rooted.py").write_text(ROOTED)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    pipe = str(tmp_path / "rooted.py")
    assert sluice("run", pipe, "--pipeline-root", str(tmp_path / "opt"), cwd=cwd).returncode == 0
    assert (tmp_path / "opt" / "serving" / "rooted" / "model").is_file()
    assert list(cwd.iterdir()) == []  # nothing written in the current directory
    assert sluice("run", pipe, cwd=cwd, env_extra={"SLUICE_PIPELINE_ROOT": str(tmp_path / "env")}).returncode == 0
    assert (tmp_path / "env" / "serving" / "rooted" / "model").is_file() and list(cwd.iterdir()) == []
    assert sluice("run", pipe, cwd=cwd).returncode == 0
    assert sorted(p.name for p in cwd.iterdir()) == ["sluice_runs"]
    assert (cwd / "sluice_runs" / "serving" / "rooted" / "model").is_file()
    assert not (cwd / "elsewhere").exists() and not (tmp_path / "elsewhere").exists()
    assert "rooted" in sluice("runs", "list", cwd=cwd).stdout  # the store is found where the run put it
    one_line_error(sluice("run", pipe, "--param", f"pipeline_root={tmp_path / 'a'}", "--pipeline-root",
                          str(tmp_path / "b"), cwd=cwd),
                   r"--param pipeline_root=.*/a disagrees with the pipeline root .*/b: give the root once")
