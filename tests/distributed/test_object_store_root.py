"""The penguin pipeline on an S3 root (moto's server on loopback) with Beam's portable runner: the
Beam components' workers read and write the store themselves, as on Dataflow, Flink or Spark,
where workers do not share the driver's disk (``execution._working_folders``)."""

from __future__ import annotations

import json
import os

import pytest

from sluice.orchestration import object_store
from tests.orchestration.test_object_store import (  # noqa: F401 - s3: a fixture
    KEY_ID,
    SECRET,
    cli_env,
    make_bucket,
    run_penguin,
    s3,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# The components declared ``remote_io``: handed the store's URIs on a runner with workers.
IN_PLACE = {"CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"}
# Their outputs that no component running in the driver (SchemaGen, Trainer, Pusher...) downloads: these
# never reach the driver's disk (the Pusher reads its input example from the raw examples by URI,
# ``remote_inputs``). The others are downloaded once by the driver-side component reading them.
NEVER_LOCAL = {("Evaluator", "evaluation"), ("Transform", "post_transform_schema"), ("CsvExampleGen", "examples")}


def test_beam_components_write_the_store_in_place_on_the_portable_runner(s3, portable_runner, tmp_path,  # noqa: F811
                                                                         monkeypatch):
    endpoint, s3_args = s3
    root = f"s3://{make_bucket(endpoint)}/root"
    cache = tmp_path / "cache"
    proc = run_penguin(root, [*portable_runner, *s3_args], tmp_path, cli_env(cache), tmp_path / "serving")
    assert KEY_ID not in proc.stdout + proc.stderr and SECRET not in proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    components = {c["id"]: c for c in result["components"]}
    assert {c["status"] for c in components.values()} == {"executed"}, components

    object_store.configure(s3_args)
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(cache))
    home = object_store.local_home(root)
    staged = os.listdir(os.path.join(home, "staged"))
    for component in components.values():
        for output, (uri,) in component["outputs"].items():
            assert uri.startswith(root + "/penguin/") and object_store.is_published(uri), uri
            marker = json.loads(object_store.read_bytes(object_store.join(uri, object_store.MARKER)))
            assert marker["files"] and all(not f.startswith(object_store.MARKER) for f in marker["files"])
            local = os.path.basename(object_store.staged_path(uri, home)) in staged
            # Written in place by the Beam components; the driver-side components' outputs are written
            # on the driver's disk, uploaded, and kept there as staged copies.
            assert local is ((component["type"], output) not in NEVER_LOCAL), (component["id"], output)
    assert {t for t, _ in NEVER_LOCAL} <= IN_PLACE and {c["type"] for c in components.values()} >= IN_PLACE
    (examples,) = components["CsvExampleGen"]["outputs"]["examples"]
    files = object_store.list_files(examples)
    assert any(f.endswith(".parquet") and "/Split-train/" in f for f in files), files
    assert not any("/.tmp-" in f or ".written-shards" in f for f in files), files  # shards finalized, lists removed

    (evaluation,) = components["Evaluator"]["outputs"]["evaluation"]
    metrics = json.loads(object_store.read_bytes(object_store.join(evaluation, "metrics.json")))
    assert metrics["engine"] == "beam" and metrics["overall"]["example_count"] > 0, metrics
    (graph,) = components["Transform"]["outputs"]["transform_graph"]
    graph_files = object_store.list_files(graph)
    assert any(f.endswith("transform_fn/saved_model.pb") for f in graph_files), graph_files
    assert not any("analysis-values" in f for f in graph_files), graph_files
