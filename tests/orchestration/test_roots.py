"""Everything a run writes stays inside its pipeline root: URIs built from odd root names, a store
shared by two roots (MLflow artifacts and cache hits), symlinks leading out of the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sluice.components.artifacts import Model
from sluice.components.sdk import DefinitionError, ExecutionContext, Output, component
from sluice.orchestration import roots
from sluice.orchestration.local_runner import run_pipeline
from sluice.orchestration.metadata import CACHED, EXECUTED, MetadataStore, default_tracking_uri
from sluice.orchestration.pipeline import Pipeline

ODD_NAME = "a#b?c%2Fd é"


def export_model(model: Output[Model], ctx: ExecutionContext, size: int = 3) -> None:
    """Writes a tiny model and logs it to MLflow, as the Trainer does."""
    Path(model.path("weights.txt")).write_text("w" * size)
    ctx.log_artifacts(model.uri, "model")


Export = component(export_model, name="Export")


def _pipeline(root: Path, name: str = "rooted") -> Pipeline:
    return Pipeline(name=name, components=[Export()], pipeline_root=str(root))


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its (mtime, size): what a run created or changed."""
    found = {}
    for base, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(base, name)
            st = os.lstat(path)
            found[path] = (st.st_mtime_ns, st.st_size if not os.path.isdir(path) else 0)
    return found


def _written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[str]:
    return {p for p, stat in after.items() if before.get(p) != stat}


@pytest.mark.parametrize("name", [ODD_NAME, "sp ace", "pct%25x", "q?x=1&y", "hash#frag", "ü€"])
def test_paths_round_trip_through_file_and_sqlite_uris(tmp_path, name):
    from mlflow.utils.file_utils import local_file_uri_to_path
    from sqlalchemy.engine import make_url

    path = str(tmp_path / name / "metadata.db")
    assert roots.uri_to_path(roots.file_uri(path)) == path
    assert local_file_uri_to_path(roots.file_uri(path)) == path  # as MLflow reads it
    assert make_url(roots.sqlite_uri(path)).database == path  # as SQLAlchemy reads it
    assert roots.uri_to_path(roots.sqlite_uri(path)) == path


def test_artifact_destination_is_under_the_root_unless_a_server_owns_it(tmp_path):
    root, other = str(tmp_path / "bob"), str(tmp_path / "alice")
    elsewhere = roots.file_uri(f"{other}/mlflow-artifacts/r1/artifacts")
    ours = roots.file_uri(f"{root}/mlflow-artifacts/r1/artifacts")
    sqlite = roots.sqlite_uri(f"{other}/metadata.db")
    assert roots.artifact_destination(sqlite, elsewhere, root, "r1") == ours
    assert roots.artifact_destination("postgresql://db/team", elsewhere, root, "r1") == ours
    assert roots.artifact_destination(sqlite, ours, root, "r1") == ours
    # A server's location (proxied, or its own artifact root) and remote stores are the server's.
    assert roots.artifact_destination("http://127.0.0.1:5000", elsewhere, root, "r1") == elsewhere
    assert roots.artifact_destination(sqlite, "mlflow-artifacts:/1/r1/artifacts", root, "r1") == \
        "mlflow-artifacts:/1/r1/artifacts"
    assert roots.artifact_destination(sqlite, "s3://bucket/r1/artifacts", root, "r1") == "s3://bucket/r1/artifacts"


def fail_with_credentials(model: Output[Model]) -> None:
    raise RuntimeError("cannot reach http://alice:s3cr3t-Pw@127.0.0.1:9/ for the model")


FailWithCredentials = component(fail_with_credentials, name="FailWithCredentials")


def test_component_log_masks_credentials(tmp_path):
    pipe = Pipeline(name="leaky", components=[FailWithCredentials()], pipeline_root=str(tmp_path / "root"))
    result = run_pipeline(pipe)
    assert not result.ok
    log = Path(result.components[0].log).read_text()
    assert "RuntimeError" in log and "alice:***@127.0.0.1" in log
    assert "s3cr3t-Pw" not in log
    store = MetadataStore(default_tracking_uri(str(tmp_path / "root")))
    stored = next(e for e in store.executions(result.run_id) if e.component_id == "FailWithCredentials")
    assert "alice:***@127.0.0.1" in stored.error and "s3cr3t-Pw" not in stored.error


def test_root_with_odd_characters_keeps_store_and_artifacts_inside(tmp_path):
    root = tmp_path / "parent" / ODD_NAME
    before = _files(tmp_path)
    result = run_pipeline(_pipeline(root))
    assert result.ok, result.error
    assert result.tracking_uri == default_tracking_uri(str(root))
    written = _written(before, _files(tmp_path))
    outside = {p for p in written if not p.startswith(str(root) + os.sep) and p != str(root)}
    assert outside <= {str(tmp_path / "parent")}, outside
    assert (root / "metadata.db").is_file()
    execution_id = result.components[0].execution_id
    logged = root / "mlflow-artifacts" / execution_id / "artifacts" / "model" / "weights.txt"
    assert logged.read_text() == "www"


def _second_root_on_a_shared_store(tmp_path: Path, shared: str | None, name: str) -> tuple[Path, set[str], str]:
    """Alice runs in her root, then Bob in his on the same store; Bob's root, what he wrote, his execution."""
    root_a, root_b = tmp_path / "alice", tmp_path / "bob"
    assert run_pipeline(_pipeline(root_a, name), tracking_uri=shared).ok
    shared = shared or default_tracking_uri(str(root_a))  # the team's store: Alice's file, used by Bob too
    before = _files(tmp_path)

    result = run_pipeline(_pipeline(root_b, name), tracking_uri=shared)

    assert result.ok, result.error
    # Same cache key as Alice's execution, but her outputs are under her root: not a hit.
    assert [c.status for c in result.components] == [EXECUTED]
    again = run_pipeline(_pipeline(root_b, name), tracking_uri=shared)
    assert [c.status for c in again.components] == [CACHED]
    assert again.components[0].outputs["model"][0].uri.startswith(str(root_b) + os.sep)
    written = {p for p in _written(before, _files(tmp_path)) if not p.startswith(str(root_b) + os.sep)}
    return root_b, written, result.components[0].execution_id


def test_shared_sqlite_store_keeps_each_run_in_its_root_and_caches_per_root(tmp_path):
    root_b, written, execution_id = _second_root_on_a_shared_store(tmp_path, None, "rooted")
    root_a = tmp_path / "alice"
    # Outside Bob's root only the shared store changed (its folder's mtime too, for SQLite's journal).
    store_files = {str(root_a / "metadata.db") + suffix for suffix in ("", "-journal", "-wal", "-shm")}
    assert written <= store_files | {str(tmp_path), str(root_a), str(root_b)}
    logged = root_b / "mlflow-artifacts" / execution_id / "artifacts" / "model" / "weights.txt"
    assert logged.read_text() == "www"
    tags = MetadataStore(default_tracking_uri(str(root_a))).client.get_run(execution_id).data.tags
    assert tags[roots.ARTIFACT_URI_TAG] == roots.file_uri(str(logged.parents[1]))


def test_shared_postgres_store_keeps_each_run_in_its_root(tmp_path, postgres):
    root_b, written, execution_id = _second_root_on_a_shared_store(tmp_path, postgres, "rooted_pg")
    assert written <= {str(tmp_path), str(root_b)}
    logged = root_b / "mlflow-artifacts" / execution_id / "artifacts" / "model" / "weights.txt"
    assert logged.read_text() == "www"


def test_tracking_server_keeps_its_own_artifact_location(tmp_path, team_server):
    url, server_artifacts = team_server
    root = tmp_path / "root"
    before = _files(tmp_path)
    result = run_pipeline(_pipeline(root, "rooted_server"), tracking_uri=url)
    assert result.ok, result.error
    execution_id = result.components[0].execution_id
    assert list(server_artifacts.rglob(f"{execution_id}/artifacts/model/weights.txt"))
    written = _written(before, _files(tmp_path))
    assert {p for p in written if not p.startswith(str(root) + os.sep)} <= {str(tmp_path), str(root)}
    assert not (root / "mlflow-artifacts").exists()


def _link_out(root: Path, name: str, outside: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).symlink_to(outside)


def test_symlinked_store_file_leading_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere.db"
    _link_out(root, "metadata.db", outside)
    with pytest.raises(DefinitionError, match="outside the pipeline root") as caught:
        run_pipeline(_pipeline(root))
    assert "\n" not in str(caught.value) and "metadata.db" in str(caught.value)
    assert not outside.exists()


def test_symlinked_artifact_folder_leading_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    outside.mkdir()
    _link_out(root, "mlflow-artifacts", outside)
    with pytest.raises(DefinitionError, match="outside the pipeline root") as caught:
        run_pipeline(_pipeline(root))  # a new store: refused when the experiment is created
    assert "\n" not in str(caught.value) and "mlflow-artifacts" in str(caught.value)
    assert not os.listdir(outside)


def test_artifact_folder_replaced_by_a_symlink_later_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    outside.mkdir()
    assert run_pipeline(_pipeline(root)).ok
    os.rename(root / "mlflow-artifacts", tmp_path / "moved")
    _link_out(root, "mlflow-artifacts", outside)

    result = run_pipeline(_pipeline(root), enable_cache=False)

    assert not result.ok
    assert "outside the pipeline root" in result.components[0].error
    assert "\n" not in result.components[0].error
    assert not os.listdir(outside)
