"""The local runner: ordering, caching, atomic publication, crash recovery."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.components.artifacts import Examples, Model
from sluice.components.sdk import ExecutionContext, Input, Output, component
from sluice.orchestration.local_runner import run_pipeline
from sluice.orchestration.metadata import MetadataStore, default_tracking_uri
from sluice.orchestration.pipeline import Pipeline
from tests.conftest import FIXTURES, REPO
from tests.orchestration.fault_plugin import pythonpath

sys.path.insert(0, str(FIXTURES))
import toy_pipeline  # noqa: E402


def toy(ws, **kw):
    return toy_pipeline.create_pipeline(
        pipeline_root=str(ws / "root"), data_file=str(ws / "numbers.txt"),
        module_file=str(ws / "toy_module.py"), **kw,
    )


def statuses(result):
    return {c.id: c.status for c in result.components}


def published_dirs(ws, node, output):
    base = ws / "root" / "toy" / node / output
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def test_runs_in_dependency_order_and_publishes_under_the_layout(toy_workspace):
    result = run_pipeline(toy(toy_workspace))
    assert result.ok, result.error
    assert statuses(result) == dict.fromkeys(["ReadNumbers", "Scale", "Count", "Report"], "executed")
    model = result.outputs("Scale")["model"][0]
    exec_id = result.components[1].execution_id
    assert model.uri == str(toy_workspace / "root" / "toy" / "Scale" / "model" / exec_id)
    assert json.loads(Path(model.uri, "weights.json").read_text()) == {"weights": [4.0, 6.0, 8.0]}
    assert model.fingerprint and model.id == f"{exec_id}:model"


def test_unchanged_rerun_is_all_cached(toy_workspace):
    first = run_pipeline(toy(toy_workspace))
    second = run_pipeline(toy(toy_workspace))
    assert set(statuses(second).values()) == {"cached"}
    assert second.outputs("Report") == first.outputs("Report")


def test_changed_parameter_misses_only_downstream(toy_workspace):
    run_pipeline(toy(toy_workspace))
    result = run_pipeline(toy(toy_workspace, factor=3.0))
    assert statuses(result) == {"ReadNumbers": "cached", "Scale": "executed", "Count": "cached",
                                "Report": "executed"}


def test_changed_module_file_misses(toy_workspace):
    run_pipeline(toy(toy_workspace))
    (toy_workspace / "toy_module.py").write_text("def transform(v):\n    return v + 2\n")
    result = run_pipeline(toy(toy_workspace))
    assert statuses(result)["Scale"] == "executed"
    assert statuses(result)["ReadNumbers"] == "cached"


def test_changed_input_content_at_same_path_misses(toy_workspace):
    run_pipeline(toy(toy_workspace))
    (toy_workspace / "numbers.txt").write_text("1 2 4\n")
    result = run_pipeline(toy(toy_workspace))
    assert set(statuses(result).values()) == {"executed"}


def test_same_content_upstream_keeps_downstream_cached(toy_workspace):
    run_pipeline(toy(toy_workspace))
    (toy_workspace / "numbers.txt").write_text("1   2 3")  # different bytes, same parsed values
    result = run_pipeline(toy(toy_workspace))
    assert statuses(result)["ReadNumbers"] == "executed"
    assert statuses(result)["Scale"] == "cached"  # fingerprints of the new output equal the old


def test_deleted_outputs_miss(toy_workspace):
    first = run_pipeline(toy(toy_workspace))
    import shutil

    shutil.rmtree(first.outputs("Scale")["model"][0].uri)
    result = run_pipeline(toy(toy_workspace))
    assert statuses(result)["Scale"] == "executed"


def test_no_cache_forces_execution(toy_workspace):
    run_pipeline(toy(toy_workspace))
    result = run_pipeline(toy(toy_workspace), enable_cache=False)
    assert set(statuses(result).values()) == {"executed"}


def test_raising_executor_publishes_nothing_and_skips_dependents(toy_workspace, monkeypatch):
    monkeypatch.setenv("TOY_RAISE_MID_WRITE", "1")
    result = run_pipeline(toy(toy_workspace))
    assert not result.ok
    assert statuses(result) == {"ReadNumbers": "executed", "Scale": "failed", "Count": "executed",
                                "Report": "skipped"}
    assert "component Scale failed: scale: refusing values" in result.error
    assert published_dirs(toy_workspace, "Scale", "model") == []
    store = MetadataStore(default_tracking_uri(str(toy_workspace / "root")))
    recs = {e.component_id: e for e in store.executions(result.run_id)}
    assert recs["Scale"].status == "failed" and "refusing" in recs["Scale"].error
    assert os.path.isfile(recs["Scale"].log)
    assert store.get_pipeline_run(result.run_id).status == "failed"
    monkeypatch.delenv("TOY_RAISE_MID_WRITE")
    again = run_pipeline(toy(toy_workspace))
    assert statuses(again)["Scale"] == "executed" and statuses(again)["ReadNumbers"] == "cached"


def _cli(ws, *args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    env["PYTHONPATH"] = pythonpath(REPO)  # the fault injector, for SLUICE_FAULT
    return subprocess.run(
        [sys.executable, "-m", "sluice.orchestration.cli", "run", str(FIXTURES / "toy_pipeline.py"),
         "--param", f"pipeline_root={ws / 'root'}", "--param", f"data_file={ws / 'numbers.txt'}",
         "--param", f"module_file={ws / 'toy_module.py'}", "--json", "--max-parallel", "1", *args],
        capture_output=True, text=True, env=env, cwd=ws, timeout=300,
    )


@pytest.mark.parametrize("fault", [
    {"TOY_KILL_MID_WRITE": "1"},
    {"SLUICE_FAULT": "Scale:after_executor"},
    {"SLUICE_FAULT": "Scale:during_publish"},
])
def test_sigkilled_execution_publishes_nothing_and_is_recovered(toy_workspace, fault):
    killed = _cli(toy_workspace, env_extra=fault)
    assert killed.returncode == -9, killed.stderr
    store = MetadataStore(default_tracking_uri(str(toy_workspace / "root")))
    [scale] = [e for e in store.find_abandoned("toy") if e[0].component_id == "Scale"]
    assert store.find_cached("toy", "Scale", scale[0].cache_key) == []
    again = _cli(toy_workspace)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    by_id = {c["id"]: c for c in doc["components"]}
    assert by_id["ReadNumbers"]["status"] == "cached"
    assert by_id["Scale"]["status"] == "executed"
    assert store.get_execution(scale[0].id).status == "failed"
    # Only the re-run's output exists: nothing of the killed execution is left.
    assert published_dirs(toy_workspace, "Scale", "model") == [by_id["Scale"]["execution_id"]]


def test_independent_components_run_in_parallel(tmp_path):
    import threading
    import time

    barrier = threading.Barrier(2, timeout=20)

    def wait_for_peer(examples: Output[Examples], tag: str = "") -> None:
        barrier.wait()  # only returns if both run at the same time

    Wait = component(wait_for_peer, name="Wait")
    pipe = Pipeline(name="par", components=[Wait(id="a", tag="a"), Wait(id="b", tag="b")],
                    pipeline_root=str(tmp_path))
    start = time.monotonic()
    result = run_pipeline(pipe, max_parallel=2)
    assert result.ok and time.monotonic() - start < 20


def test_resume_continues_a_failed_run_from_its_last_good_component(toy_workspace, monkeypatch):
    monkeypatch.setenv("TOY_RAISE_MID_WRITE", "1")
    failed = run_pipeline(toy(toy_workspace, enable_cache=False))
    assert statuses(failed)["Scale"] == "failed"
    monkeypatch.delenv("TOY_RAISE_MID_WRITE")
    resumed = run_pipeline(toy(toy_workspace, enable_cache=False), resume=failed.run_id)
    assert statuses(resumed) == {"ReadNumbers": "cached", "Count": "cached", "Scale": "executed",
                                 "Report": "executed"}
    assert resumed.outputs("ReadNumbers") == failed.outputs("ReadNumbers")


def test_resume_rejects_a_run_of_another_pipeline(toy_workspace, tmp_path):
    from sluice.orchestration.metadata import StoreError

    first = run_pipeline(toy(toy_workspace))
    store = MetadataStore(default_tracking_uri(str(toy_workspace / "root")))
    other = store.start_pipeline_run("other")
    with pytest.raises(StoreError, match=r"--resume .*: that is a run of pipeline other, not toy"):
        run_pipeline(toy(toy_workspace), resume=other, store=store)
    assert first.ok


def test_heavy_imports_of_later_components_are_warmed_in_the_background(tmp_path, monkeypatch):
    import time

    (tmp_path / "sluice_warm_probe.py").write_text("import time\nLOADED_AT = time.monotonic()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = {}

    def first(examples: Output[Examples]) -> None:
        deadline = time.monotonic() + 10
        while "sluice_warm_probe" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["warmed_while_first_ran"] = "sluice_warm_probe" in sys.modules

    def second(examples: Input[Examples], model: Output[Model]) -> None:
        pass

    First = component(first, name="First")
    Second = component(second, name="Second", warm_imports=("sluice_warm_probe",))
    a = First()
    pipe = Pipeline(name="warm", components=[a, Second(examples=a.outputs["examples"])],
                    pipeline_root=str(tmp_path / "root"))
    assert run_pipeline(pipe).ok
    assert seen["warmed_while_first_ran"]


def test_progress_shows_running_components_with_elapsed_time_and_results(toy_workspace):
    import io

    from sluice.orchestration.local_runner import Progress

    stream = io.StringIO()
    result = run_pipeline(toy(toy_workspace), progress=Progress(enabled=True, stream=stream))
    text = stream.getvalue()
    assert result.ok
    assert "… running: ReadNumbers" in text
    for node in ("ReadNumbers", "Scale", "Count", "Report"):
        assert f"✓ {node}" in text
    quiet = io.StringIO()
    run_pipeline(toy(toy_workspace), progress=Progress(stream=quiet))  # not a terminal: silent
    assert quiet.getvalue() == ""


def slow_examples(examples: Output[Examples]) -> None:
    import time

    time.sleep(1.5)  # still running when its sibling fails


def failing_examples(examples: Output[Examples]) -> None:
    from sluice.components.errors import ComponentError

    raise ComponentError("Failing: no rows today")


def join_examples(first: Input[Examples], second: Input[Examples], model: Output[Model]) -> None:
    raise AssertionError("never runs: an upstream failed")


def test_a_failure_while_a_sibling_still_runs_skips_their_common_child(tmp_path):
    # Ids sort "Slow" before "Failing" ("A..." < "B..."): the child's upstream list names the running one first.
    slow, failing = component(slow_examples, name="ASlow")(), component(failing_examples, name="BFailing")()
    join = component(join_examples, name="Join")(first=slow.outputs["examples"], second=failing.outputs["examples"])
    result = run_pipeline(Pipeline(name="siblings", components=[slow, failing, join], pipeline_root=str(tmp_path)),
                          max_parallel=2)
    assert not result.ok and "Failing: no rows today" in result.error
    assert statuses(result) == {"ASlow": "executed", "BFailing": "failed", "Join": "skipped"}
    join_result = next(c for c in result.components if c.id == "Join")
    assert "upstream BFailing did not complete" in join_result.error


RACE_PIPELINE = '''
import os, sys, time
from sluice import Input, ModuleFile, Output, Pipeline, component
from sluice.components.artifacts import Examples, Model
from sluice.components.sdk import module_function
from sluice.orchestration.local_runner import run_pipeline
from sluice.orchestration.runtime import imports


def first(examples: Output[Examples]) -> None:
    time.sleep(0.3)
    print("in flight as First ends:", sorted(imports._IN_FLIGHT), flush=True)


def declared(examples: Input[Examples], model: Output[Model], module_file: ModuleFile) -> None:
    module_function(module_file, "run_fn", "Declared")()


def undeclared(examples: Input[Examples], model: Output[Model], module_file: ModuleFile) -> None:
    module_function(module_file, "run_fn", "Undeclared")()


First = component(first, name="First")
Declared = component(declared, name="Declared", warm_imports=("tensorflow",))  # as Transform and Trainer
Undeclared = component(undeclared, name="Undeclared")  # only the import finder protects it
a = First()
module = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tuner_first.py")
pipe = Pipeline(name="race", pipeline_root=sys.argv[1], components=[
    a, Declared(examples=a.outputs["examples"], module_file=module),
    Undeclared(examples=a.outputs["examples"], module_file=module)])
result = run_pipeline(pipe, max_parallel=2)
print("status:", result.status, result.error)
'''


def test_a_module_file_importing_keras_tuner_first_waits_for_the_background_tensorflow_import(tmp_path):
    # Fresh process: the runner's warm-up thread is still importing TensorFlow when the module
    # files import keras_tuner. Before the fix: "module 'tensorflow.python.data.ops.dataset_ops'
    # has no attribute 'DatasetV2'", or a deadlock.
    (tmp_path / "tuner_first.py").write_text(
        "import keras_tuner\nimport tensorflow as tf\n\n\ndef run_fn():\n"
        "    return keras_tuner.HyperParameters(), tf.constant(1)\n")
    (tmp_path / "race.py").write_text(RACE_PIPELINE)
    done = subprocess.run([sys.executable, str(tmp_path / "race.py"), str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=300)
    assert "in flight as First ends: ['tensorflow']" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "status: executed" in done.stdout, done.stdout + done.stderr[-3000:]


def test_editing_a_helper_beside_the_module_file_re_executes_what_uses_it(toy_workspace):
    (toy_workspace / "helper.py").write_text("OFFSET = 1\n")
    first = run_pipeline(toy(toy_workspace))
    (toy_workspace / "helper.py").write_text("OFFSET = 2\n")
    again = run_pipeline(toy(toy_workspace))
    assert first.ok and again.ok
    assert statuses(again)["Scale"] == "executed" and statuses(again)["ReadNumbers"] == "cached"


def test_the_cache_key_of_a_dotted_function_covers_its_package(tmp_path, monkeypatch):
    from sluice.orchestration.cache_keys import _package_sources, cache_key

    package = tmp_path / "sluice_user_pkg"
    (package / "sub").mkdir(parents=True)
    for name, text in (("__init__.py", ""), ("train.py", "def run_fn():\n    pass\n"),
                       ("sub/__init__.py", ""), ("sub/helper.py", "X = 1\n")):
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    node = {"type": "Trainer", "code_version": "1", "parameters": {"run_fn": "sluice_user_pkg.train.run_fn"},
            "fingerprinted_parameters": ["run_fn"]}
    first = cache_key(node, {})
    assert cache_key(node, {}) == first
    (package / "sub" / "helper.py").write_text("X = 2\n")
    assert cache_key(node, {}) != first
    assert _package_sources("json.decoder.JSONDecoder") == ([], "")  # installed code: versioned, not hashed
    assert _package_sources("sluice_no_such_package.fn") == ([], "")


def gate_examples(examples: Output[Examples], ctx: ExecutionContext = None) -> None:
    Path(examples.path("report.html")).write_text("<p>2 anomalies</p>")
    ctx.block("blocked by anomalies: 2 columns break the schema\n  - a: New column\n  - b: missing")


def train_after_gate(examples: Input[Examples], model: Output[Model]) -> None:
    raise AssertionError("never runs: its input's component blocked the run")


def test_a_blocking_component_publishes_its_outputs_and_stops_what_depends_on_it(tmp_path):
    Gate, Train = component(gate_examples, name="Gate"), component(train_after_gate, name="Train")
    gate = Gate()
    pipe = Pipeline(name="gated", components=[gate, Train(examples=gate.outputs["examples"])],
                    pipeline_root=str(tmp_path / "root"))
    result = run_pipeline(pipe)
    assert not result.ok and result.error.startswith("Gate: blocked by anomalies: 2 columns break the schema\n")
    assert statuses(result) == {"Gate": "blocked", "Train": "skipped"}
    assert result.components[1].error == "blocked by Gate"
    [published] = result.outputs("Gate")["examples"]
    assert Path(published.uri, "report.html").read_text() == "<p>2 anomalies</p>"
    store = MetadataStore(result.tracking_uri)
    recorded = {e.component_id: e for e in store.executions(result.run_id)}
    assert recorded["Gate"].status == "blocked" and recorded["Gate"].error.endswith("  - b: missing")
    assert recorded["Gate"].outputs["examples"][0].uri == published.uri
    assert run_pipeline(pipe).components[0].status == "blocked"  # a blocked execution is never a cache hit
