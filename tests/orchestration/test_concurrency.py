"""Concurrent runs on one metadata store: same pipeline twice, two pipelines, SQLite and a server.

Every run is a ``sluice run`` subprocess; the runs start together (on a fresh
store, so they also race to create it). Both must complete, each with exactly
its own executions, parents, statuses and outputs, and nobody may see
``database is locked``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO

TOY = FIXTURES / "toy_pipeline.py"
NODES = {"ReadNumbers", "Scale", "Count", "Report"}


@pytest.fixture
def pipelines(toy_workspace):
    """The toy pipeline and a copy named toy2 (another experiment in the same store)."""
    second = toy_workspace / "toy2_pipeline.py"
    second.write_text(TOY.read_text().replace('name="toy"', 'name="toy2"'))
    return {"toy": str(TOY), "toy2": str(second)}


def start(ws: Path, pipeline_file: str, *extra: str, tracking_uri: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_FAULT", None)
    args = [sys.executable, "-m", "sluice.orchestration.cli", "run", pipeline_file,
            "--param", f"data_file={ws / 'numbers.txt'}", "--param", f"module_file={ws / 'toy_module.py'}",
            "--pipeline-root", str(ws / "root"), "--json", *extra]
    if tracking_uri:
        args += ["--tracking-uri", tracking_uri]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ws)


def finish(procs: list[subprocess.Popen]) -> list[dict]:
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert "database is locked" not in err.lower(), err
        assert proc.returncode == 0, err[-3000:]
        docs.append(json.loads(out))
    return docs


def check_runs(docs: list[dict], tracking_uri: str, allowed: set[str]) -> None:
    """Each run's records are exactly its own, complete and consistent with its JSON."""
    from sluice.orchestration.metadata import MetadataStore

    store = MetadataStore(tracking_uri)
    seen_executions: set[str] = set()
    for doc in docs:
        assert doc["status"] == "executed"
        run = store.get_pipeline_run(doc["run_id"])
        assert run.status == "executed" and run.pipeline == doc["pipeline"]
        records = store.executions(doc["run_id"])
        assert sorted(r.component_id for r in records) == sorted(NODES), [r.component_id for r in records]
        by_node = {c["id"]: c for c in doc["components"]}
        for record in records:
            assert record.pipeline_run_id == doc["run_id"] and record.pipeline == doc["pipeline"]
            reported = by_node[record.component_id]
            assert record.status == reported["status"] in allowed
            assert record.id == reported["execution_id"] or record.status == "cached"
            assert {k: [a.uri for a in v] for k, v in record.outputs.items()} == reported["outputs"]
            for uris in reported["outputs"].values():
                for uri in uris:
                    assert os.path.isdir(uri)
                    assert f"/{doc['pipeline']}/{record.component_id}/" in uri  # not another pipeline's
            assert record.id not in seen_executions
            seen_executions.add(record.id)
        weights = json.loads(Path(by_node["Scale"]["outputs"]["model"][0], "weights.json").read_text())
        assert weights == {"weights": [4.0, 6.0, 8.0]}  # not a half-written or mixed file
    assert store.running_executions(docs[0]["pipeline"]) == []


def sqlite_uri(ws: Path) -> str:
    from sluice.orchestration.metadata import default_tracking_uri

    return default_tracking_uri(str(ws / "root"))


def test_same_pipeline_twice_at_once_on_sqlite(toy_workspace, pipelines):
    procs = [start(toy_workspace, pipelines["toy"], "--no-cache") for _ in range(2)]
    docs = finish(procs)
    assert docs[0]["run_id"] != docs[1]["run_id"]
    check_runs(docs, sqlite_uri(toy_workspace), {"executed"})
    # Two publications of each component, side by side, neither lost.
    scale = toy_workspace / "root" / "toy" / "Scale" / "model"
    assert sorted(os.listdir(scale)) == sorted(c["execution_id"] for d in docs for c in d["components"]
                                              if c["id"] == "Scale")


def test_same_pipeline_twice_with_cache_on_sqlite(toy_workspace, pipelines):
    docs = finish([start(toy_workspace, pipelines["toy"]) for _ in range(2)])
    check_runs(docs, sqlite_uri(toy_workspace), {"executed", "cached"})


def test_two_pipelines_at_once_on_sqlite(toy_workspace, pipelines):
    docs = finish([start(toy_workspace, pipelines[name]) for name in ("toy", "toy2")])
    assert [d["pipeline"] for d in docs] == ["toy", "toy2"]
    check_runs(docs[:1], sqlite_uri(toy_workspace), {"executed"})
    check_runs(docs[1:], sqlite_uri(toy_workspace), {"executed"})


def test_three_runs_at_once_then_a_cached_run(toy_workspace, pipelines):
    docs = finish([start(toy_workspace, pipelines[name], "--no-cache") for name in ("toy", "toy", "toy2")])
    check_runs(docs[:2], sqlite_uri(toy_workspace), {"executed"})
    check_runs(docs[2:], sqlite_uri(toy_workspace), {"executed"})
    [again] = finish([start(toy_workspace, pipelines["toy"])])
    assert {c["status"] for c in again["components"]} == {"cached"}


def test_same_pipeline_twice_and_another_on_a_tracking_server(toy_workspace, pipelines, mlflow_server):
    # Each test gets its own pipeline names on the shared server: a fresh experiment per test.
    suffix = os.path.basename(toy_workspace).replace("_", "-")
    files = {}
    for name, path in pipelines.items():
        renamed = toy_workspace / f"{name}_{suffix}.py"
        renamed.write_text(Path(path).read_text().replace(f'name="{name}"', f'name="{name}x{suffix}"'))
        files[name] = str(renamed)
    procs = [start(toy_workspace, files[n], "--no-cache", tracking_uri=mlflow_server) for n in ("toy", "toy", "toy2")]
    docs = finish(procs)
    check_runs(docs[:2], mlflow_server, {"executed"})
    check_runs(docs[2:], mlflow_server, {"executed"})
    assert not (toy_workspace / "root" / "metadata.db").exists()  # everything went to the server
