"""Whole files and folders by URI (``sluice.components.io.files``) on an S3 server on loopback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sluice.components.io import files
from tests.orchestration.test_object_store import make_bucket, s3  # noqa: F401 - a fixture


@pytest.fixture
def bucket(s3):  # noqa: F811
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    endpoint, args = s3
    FileSystems.set_options(PipelineOptions(args))
    yield f"s3://{make_bucket(endpoint)}"
    FileSystems.set_options(PipelineOptions([]))


def test_a_folder_goes_up_and_comes_back_byte_for_byte(bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01graph")
    (folder / "variables" / "part.gz").write_bytes(gzip.compress(b"weights"))  # not compressed again
    (folder / "BLESSED").write_bytes(b"")
    uri = f"{bucket}/root/model/e1"
    files.makedirs(uri)  # nothing to make on a store: no local s3:/ folder
    assert sorted(os.listdir(tmp_path)) == ["model"]

    files.upload_dir(str(folder), uri)
    assert files.list_folder(uri) == files.list_folder(str(folder)) == ["BLESSED", "saved_model.pb",
                                                                        "variables/part.gz"]
    copy = files.local_copy(uri)
    assert copy != uri and files.local_copy(uri) == copy  # downloaded once per process
    for rel in files.list_folder(str(folder)):
        assert Path(copy, rel).read_bytes() == (folder / rel).read_bytes(), rel
    assert files.local_copy(str(folder)) == str(folder)

    files.remove(f"{uri}/BLESSED")
    files.remove(f"{uri}/BLESSED")  # gone already: nothing to do
    assert not files.exists(f"{uri}/BLESSED") and files.exists(f"{uri}/saved_model.pb")
    local = tmp_path / "scratch.pickle"
    local.write_bytes(b"x")
    files.remove(str(local))
    files.remove(str(local))
    assert not local.exists()


def test_local_copies_are_removed_when_the_process_exits(bucket, s3, tmp_path):  # noqa: F811
    _, args = s3
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"graph")
    files.upload_dir(str(tmp_path / "model"), f"{bucket}/model")
    script = (
        "import sys\n"
        "from apache_beam.io.filesystems import FileSystems\n"
        "from apache_beam.options.pipeline_options import PipelineOptions\n"
        "from sluice.components.io.files import local_copy\n"
        "FileSystems.set_options(PipelineOptions(sys.argv[2:]))\n"
        "print(local_copy(sys.argv[1]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, f"{bucket}/model", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    copy = proc.stdout.strip()
    assert copy.startswith(tempfile.gettempdir()) and not os.path.exists(copy)



def test_one_uri_downloads_once_while_another_downloads_beside_it(monkeypatch, tmp_path):
    """Threads asking for one folder share its one download; a slow download holds up no other folder."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    release, calls = threading.Event(), []

    def download(uri, target):
        calls.append(uri)
        if uri.endswith("slow"):
            assert release.wait(30), "never released"
        Path(target, "saved_model.pb").write_bytes(uri.encode())

    monkeypatch.setattr(files.stores, "download_dir", download)
    with ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(files.local_copy, "s3://b/slow") for _ in range(2)]
        fast = pool.submit(files.local_copy, "s3://b/fast").result(timeout=10)  # not behind the slow one
        assert Path(fast, "saved_model.pb").read_bytes() == b"s3://b/fast"
        release.set()
        copies = {future.result(timeout=10) for future in slow}
    assert len(copies) == 1 and sorted(calls) == ["s3://b/fast", "s3://b/slow"]
