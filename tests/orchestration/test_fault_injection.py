"""Crash safety: SIGKILL the penguin pipeline inside every standard component; recovery from the CLI.

One full run of the penguin pipeline is prepared once (the session's
``penguin_golden``; a second one at a second path, so that two components' cases
run at once: ``matrix``). For each
component, the test restores that pipeline root at its fixed path, deletes the
component's published outputs (so it misses the cache and executes), then kills
the run several times in a row inside that component (``SLUICE_FAULT``, read by
the test plugin ``tests/orchestration/fault_plugin``), and finally runs it to completion.

After every kill: nothing of the killed execution is published. After the next
run: the killed execution is recorded failed (abandoned), its temporary and
half-moved folders are gone. The final run reuses (cached) every upstream
component and leaves no temporary folder, in the pipeline root or in the
serving directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.conftest import REPO, restore
from tests.orchestration.fault_plugin import pythonpath

ORDER = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
         "Evaluator", "Pusher"]
UPSTREAM = {name: ORDER[:i] for i, name in enumerate(ORDER)}
TALLY = {"kills": 0, "landed": 0}


def sluice_run(root: Path, fault: str | None = None, watch: str | None = None):
    env = {**os.environ, "PYTHONPATH": pythonpath(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_FAULT", None)
    if fault:
        env["SLUICE_FAULT"] = fault
    if watch:
        env["SLUICE_FAULT_WATCH"] = watch
    return subprocess.run(
        [sys.executable, "-m", "sluice.orchestration.cli", "run", "penguin", "--param", f"pipeline_root={root}",
         "--json", "--max-parallel", "1"],
        capture_output=True, text=True, env=env, cwd=root.parent, timeout=300,
    )


# Two roots take the cases in turn, longest first: a `sluice run` keeps about one of CI's two cores busy.
LONGEST_FIRST = ["Trainer", "Transform", "Evaluator", "CsvExampleGen", "StatisticsGen", "SchemaGen", "Pusher",
                 "ExampleValidator"]


@pytest.fixture(scope="module")
def matrix(penguin_golden, tmp_path_factory, request):
    """The kill sequences of the selected components, run in two threads, each on its own pipeline root.

    A saved root is only valid at its own path (its URIs are absolute), so the second
    thread first makes its own completed run. Each test case waits for its component's result.
    """
    name = test_kill_inside_component_publishes_nothing_and_recovers.__name__
    selected = [item.callspec.params["component"] for item in request.session.items
                if item.module is request.module and item.originalname == name]
    pending = [c for c in LONGEST_FIRST if c in selected]
    results = {c: Future() for c in pending}
    lock = threading.Lock()

    def second_golden():
        work = tmp_path_factory.mktemp("faults") / "work" / "root"
        work.parent.mkdir()
        proc = sluice_run(work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        saved = work.parent.parent / "golden"
        shutil.copytree(work, saved, symlinks=True)
        return saved, work, json.loads(proc.stdout)

    def worker(make_golden):
        try:
            golden, failure = make_golden(), None
        except BaseException as exc:  # noqa: BLE001 - reported by each case this thread takes
            golden, failure = None, exc
        while True:
            with lock:
                if not pending:
                    return
                component = pending.pop(0)
            try:
                if failure is not None:
                    raise failure
                kill_and_recover(*golden, component)
                results[component].set_result(None)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the component's test case
                results[component].set_exception(exc)

    makers = [lambda: (penguin_golden.saved, penguin_golden.root, penguin_golden.doc)]
    if len(pending) > 1:
        makers.append(second_golden)
    threads = [threading.Thread(target=worker, args=(make,), daemon=True) for make in makers]
    for thread in threads:
        thread.start()
    yield results
    for thread in threads:
        thread.join()
    print(f"\nfault injection: {TALLY['kills']} kill points tried, {TALLY['landed']} landed inside the component")


def store_of(root: Path):
    from sluice.orchestration.metadata import MetadataStore, default_tracking_uri

    return MetadataStore(default_tracking_uri(str(root)))


def files_under(path: str) -> int:
    return sum(len(names) for _, _, names in os.walk(path))


def leftovers(root: Path) -> list[str]:
    """Temporary folders of executions or pushes anywhere under the root."""
    found = []
    for base, dirs, _ in os.walk(root):
        found += [os.path.join(base, d) for d in dirs if d.startswith((".tmp-", ".push-"))]
    return found


def kill_points(component: str, doc: dict) -> list[tuple[str, bool]]:
    """Where to kill ``component``: (SLUICE_FAULT value, whether to watch the serving directory)."""
    comp = next(c for c in doc["components"] if c["id"] == component)
    outputs = [uri for uris in comp["outputs"].values() for uri in uris]
    total = sum(files_under(u) for u in outputs)
    points = [(f"{component}:after_writes=1", False)]
    if total >= 4:
        points.append((f"{component}:after_writes={total // 2}", False))
    if component == "Pusher":
        # The Pusher's real work is the copy into the serving directory: kill mid-copy there.
        points = [(f"{component}:after_writes=1", True), (f"{component}:after_writes=3", True)] + points
    if len(outputs) > 1:
        points.append((f"{component}:during_publish", False))
    # Timed kill last: a fast executor may finish first, and then nothing is left to kill.
    points.append((f"{component}:after_seconds={max(0.02, comp['seconds'] / 3):.3f}", False))
    return points


@pytest.mark.slow
@pytest.mark.parametrize("component", ORDER)
def test_kill_inside_component_publishes_nothing_and_recovers(matrix, component):
    matrix[component].result(timeout=1800)  # raises what failed in kill_and_recover


def kill_and_recover(saved: Path, root: Path, doc: dict, component: str) -> None:
    """Kills a run inside ``component`` at each of its kill points, then checks the run that recovers."""
    restore(saved, root)
    comp_dir = root / "penguin" / component
    outputs = [p for p in comp_dir.iterdir() if p.name != ".logs"]
    for out in outputs:  # make the component miss the cache (its outputs are gone)
        shutil.rmtree(out)
    serving = root / "serving" / "penguin"
    if component == "Pusher":  # a push of the model already served is reused, not copied: nothing to kill
        shutil.rmtree(serving)
        serving.mkdir()
    versions_before = sorted(os.listdir(serving))

    killed_ids: list[str] = []
    for fault, watch in kill_points(component, doc):
        proc = sluice_run(root, fault, str(serving) if watch else None)
        TALLY["kills"] += 1
        store = store_of(root)
        if killed_ids:  # this run cleaned up after the previous kill
            _assert_cleaned_up(store, root, outputs, killed_ids[-1], fault)
        if proc.returncode == 0:
            assert "after_seconds" in fault, proc.stderr  # only a timed kill may come too late
            break
        assert proc.returncode == -9, (fault, proc.stderr[-3000:])
        TALLY["landed"] += 1
        killed_ids.append(_killed_execution(store, component, fault, outputs, proc))

    final = sluice_run(root)
    assert final.returncode == 0, final.stderr[-3000:]
    _assert_recovered(root, component, outputs, killed_ids, json.loads(final.stdout))
    for version in sorted(os.listdir(serving)):
        assert version.isdigit() and (serving / version / "saved_model.pb").is_file(), version
    if component != "Pusher":
        assert len(os.listdir(serving)) >= len(versions_before)


def _assert_cleaned_up(store, root: Path, outputs: list[Path], killed_id: str, fault: str) -> None:
    """The run after a kill marked the killed execution abandoned and removed what it left."""
    previous = store.get_execution(killed_id)
    assert previous.status == "failed" and "abandoned" in previous.error, (fault, previous)
    assert not any(killed_id in p for p in leftovers(root)), leftovers(root)
    for out in outputs:
        assert not (out / killed_id).exists()


def _killed_execution(store, component: str, fault: str, outputs: list[Path], proc) -> str:
    """The id of the execution the kill left RUNNING; checks it is neither cached nor published."""
    running_now = store.running_executions("penguin")
    [running] = [e for e in running_now if e.component_id == component] or [None]
    assert running is not None, (fault, [(e.component_id, e.status) for e in running_now], proc.stderr[-2000:])
    assert running.id not in {e.id for e in store.find_cached("penguin", component, running.cache_key)}
    if not fault.endswith("during_publish"):
        for out in outputs:
            assert not (out / running.id).exists(), f"{fault}: {out / running.id} published"
    return running.id


def _assert_recovered(root: Path, component: str, outputs: list[Path], killed_ids: list[str], run: dict) -> None:
    """The clean run after the kills: upstream cached, every kill abandoned, only successful outputs left."""
    statuses = {c["id"]: c["status"] for c in run["components"]}
    for upstream in UPSTREAM[component]:
        assert statuses[upstream] == "cached", (upstream, statuses)
    assert statuses[component] in ("executed", "cached")
    store = store_of(root)
    for killed in killed_ids:
        record = store.get_execution(killed)
        assert record.status == "failed" and "abandoned" in record.error
    assert store.running_executions("penguin") == []
    assert leftovers(root) == []
    for out in outputs:  # every folder left is an execution recorded as successful
        for name in os.listdir(out):
            assert name not in killed_ids, f"{out / name} of a killed execution"
            assert store.get_execution(name).status == "executed", out / name


# --- recovery from the command line (toy pipeline: fast) -----------------------------------------


def toy_cli(ws: Path, *args: str, fault: str | None = None, env_extra: dict | None = None):
    from tests.conftest import FIXTURES

    env = {**os.environ, "PYTHONPATH": pythonpath(REPO), **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_FAULT", None)
    if fault:
        env["SLUICE_FAULT"] = fault
    if args and args[0] == "run":
        args = (*args, str(FIXTURES / "toy_pipeline.py"), "--param", f"data_file={ws / 'numbers.txt'}",
                "--param", f"module_file={ws / 'toy_module.py'}", "--max-parallel", "1")
    command = [sys.executable, "-m", "sluice.orchestration.cli", *args, "--pipeline-root", str(ws / "root")]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ws, timeout=300)


@pytest.mark.parametrize("fault", ["Scale:after_writes=1", "Scale:after_seconds=0"])
def test_mid_executor_kill_of_the_toy_pipeline_is_recovered(toy_workspace, fault):
    killed = toy_cli(toy_workspace, "run", fault=fault)
    assert killed.returncode == -9, killed.stderr
    [listed] = json.loads(toy_cli(toy_workspace, "runs", "list", "--json").stdout)
    assert listed["status"] == "running"  # nobody has noticed yet
    model = toy_workspace / "root" / "toy" / "Scale" / "model"
    assert [p.name for p in model.iterdir() if not p.name.startswith(".tmp-")] == []
    again = toy_cli(toy_workspace, "run", "--json")
    assert again.returncode == 0, again.stderr
    assert {c["id"]: c["status"] for c in json.loads(again.stdout)["components"]}["ReadNumbers"] == "cached"
    shown = toy_cli(toy_workspace, "runs", "show", listed["run_id"])
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"Scale +Scale +failed", shown.stdout), shown.stdout
    assert re.search(r"error: abandoned: its process \(pid \d+ on \S+\) died while running it", shown.stdout)
    assert [p.name for p in model.iterdir()] == [json.loads(again.stdout)["components"][1]["execution_id"]]


def test_runs_show_names_the_failed_component_its_error_and_log_then_resume(toy_workspace):
    failed = toy_cli(toy_workspace, "run", "--no-cache", env_extra={"TOY_RAISE_MID_WRITE": "1"})
    assert failed.returncode == 1
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("error: component Scale failed: scale: refusing values") and "(log: " in line
    [listed] = json.loads(toy_cli(toy_workspace, "runs", "list", "--json").stdout)
    run_id = listed["run_id"]
    assert listed["status"] == "failed" and "component Scale failed" in listed["error"]

    shown = toy_cli(toy_workspace, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert re.search(r"Scale +Scale +failed", text) and re.search(r"Report +Report +skipped", text), text
    assert "error: scale: refusing values" in text and "error: upstream Scale did not complete" in text
    log = re.search(r"log: (\S+)", text).group(1)
    assert "ComponentError: scale: refusing values" in Path(log).read_text()  # the traceback is in the log
    doc = json.loads(toy_cli(toy_workspace, "runs", "show", run_id, "--json").stdout)
    scale = next(c for c in doc["components"] if c["component_id"] == "Scale")
    assert scale["status"] == "failed" and scale["log"] == log

    resumed = toy_cli(toy_workspace, "run", "--no-cache", "--json", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    statuses = {c["id"]: c["status"] for c in json.loads(resumed.stdout)["components"]}
    assert statuses == {"ReadNumbers": "cached", "Count": "cached", "Scale": "executed", "Report": "executed"}
    # Resuming a run of another pipeline, or an unknown run, is one clear line.
    unknown = toy_cli(toy_workspace, "run", "--resume", "0123456789abcdef")
    [line] = unknown.stderr.strip().splitlines()
    assert unknown.returncode == 1 and "no run '0123456789abcdef'" in line
