"""A Pusher killed at each of its steps: the next run completes that push, it never pushes the model twice.

The session's penguin run is restored with its push undone (``unpushed``: no Pusher
outputs, no serving folder, no registered model). Then runs follow, each
SIGKILLed right after one more Pusher step (``SLUICE_FAULT``, read by the test
plugin ``tests/orchestration/fault_plugin``), each checked for what it left,
and a last run completes: one version folder, one registered version, the alias
on it, recorded by an execution that completed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.orchestration.test_fault_injection import leftovers, sluice_run, store_of

pytestmark = pytest.mark.slow

PUSHER = "sluice.components.pusher.component"
STEPS = {  # the Pusher's steps in order, and the fault that kills right after each
    "after_staging": f"Pusher:after_call={PUSHER}:stage_copy",
    "after_registering": f"Pusher:after_call={PUSHER}:Registry.register",
    "after_rename": f"Pusher:after_call={PUSHER}:place_version",
    "before_recording": "Pusher:after_executor",
}


def registry_of(root: Path):
    from mlflow.tracking import MlflowClient

    from sluice.orchestration.metadata import default_tracking_uri

    return MlflowClient(default_tracking_uri(str(root)))


@pytest.fixture
def unpushed(penguin_golden):
    """(work root, the Trainer's model): the session's penguin run, its push undone."""
    work = penguin_golden.checkout()
    trainer = next(c for c in penguin_golden.doc["components"] if c["id"] == "Trainer")
    for entry in (work / "penguin" / "Pusher").iterdir():
        if entry.name != ".logs":
            shutil.rmtree(entry)  # the Pusher misses the cache
    shutil.rmtree(work / "serving")
    registry_of(work).delete_registered_model("penguin")
    return work, trainer["outputs"]["model"][0]


def versions(root: Path) -> list:
    return sorted(registry_of(root).search_model_versions("name = 'penguin'"), key=lambda v: int(v.version))


def test_a_pusher_killed_after_each_step_in_turn_is_completed_by_the_next_run(unpushed):
    """Run after run, each killed one step further, then one that completes: each picks up the push."""
    from sluice.components import pusher
    from sluice.components.artifacts import Model

    root, model_uri = unpushed
    serving = root / "serving" / "penguin"
    killed_ids = []
    for step, fault in STEPS.items():
        killed = sluice_run(root, fault)
        assert killed.returncode == -9, (step, killed.stderr[-3000:])
        # What the kill left: nothing, or one complete version; never a half one, never a second one.
        placed = [name for name in os.listdir(serving) if not name.startswith(".push-")]
        assert placed == ([] if step in ("after_staging", "after_registering") else ["1"]), (step, placed)
        assert len(versions(root)) == (0 if step == "after_staging" else 1), step
        [running] = [e for e in store_of(root).running_executions("penguin") if e.component_id == "Pusher"]
        killed_ids.append(running.id)

    final = sluice_run(root)
    assert final.returncode == 0, final.stderr[-3000:]
    pusher_run = next(c for c in json.loads(final.stdout)["components"] if c["id"] == "Pusher")
    assert pusher_run["status"] == "executed"
    store = store_of(root)
    assert [store.get_execution(i).status for i in killed_ids] == ["failed"] * len(STEPS)

    # One version folder, one registered version: the same model, pointing at each other.
    assert os.listdir(serving) == ["1"] and leftovers(root) == []
    fingerprint = pusher.model_fingerprint(Model(uri=model_uri))
    assert pusher.read_marker(str(serving / "1")) == {
        "fingerprint": fingerprint, "model_uri": model_uri, "registered": {"penguin": 1}}
    [version] = versions(root)
    assert version.tags[pusher.FINGERPRINT_TAG] == fingerprint
    assert version.tags[pusher.SERVING_TAG] == str(serving / "1")
    assert int(registry_of(root).get_model_version_by_alias("penguin", "champion").version) == 1
    # Registered (and uploaded) by the execution killed after registering; it names the one that completed it.
    assert version.run_id == killed_ids[1]
    assert version.tags[pusher.EXECUTION_TAG] == pusher_run["execution_id"]
    assert store.get_execution(pusher_run["execution_id"]).status == "executed"
    record = json.loads(Path(pusher_run["outputs"]["pushed_model"][0], "push.json").read_text())
    assert (record["version"], record["registered_model"], record["reused"]) == (
        1, {"name": "penguin", "version": 1, "alias": "champion"}, True)
    uploaded = registry_of(root).download_artifacts(version.run_id, "serving_model", str(root.parent))
    assert os.path.isfile(os.path.join(uploaded, "saved_model.pb"))
