"""Object stores through Beam's filesystems (``sluice.components.io.stores``), on an S3 server on loopback."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from sluice.components.io import stores
from tests.conftest import free_port
from tests.orchestration.test_object_store import make_bucket, s3  # noqa: F401 - a fixture


@pytest.fixture
def bucket(s3):  # noqa: F811
    endpoint, args = s3
    stores.set_options(args)
    yield f"s3://{make_bucket(endpoint)}"
    stores.set_options([])


def test_objects_are_written_listed_and_deleted_with_the_options_beam_holds(bucket, s3, tmp_path):  # noqa: F811
    _, args = s3
    stores.write_bytes(f"{bucket}/a/x.txt", b"x")
    stores.write_bytes(f"{bucket}/a/sub/EMPTY", b"")  # one request: a multipart upload of no part fails
    assert stores.list_folder(f"{bucket}/a") == ["sub/EMPTY", "x.txt"]
    assert stores.read_bytes(f"{bucket}/a/sub/EMPTY") == b""
    assert [(uri, size) for uri, size, _ in stores.listing(f"{bucket}/a/")] == [
        (f"{bucket}/a/sub/EMPTY", 0), (f"{bucket}/a/x.txt", 1)]
    stores.download_dir(f"{bucket}/a", str(tmp_path / "copy"), skip=("x.txt",))
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*")) == ["EMPTY", "sub"]
    stores.delete([f"{bucket}/a/x.txt"])
    assert not stores.exists(f"{bucket}/a/x.txt") and stores.exists(f"{bucket}/a/sub/EMPTY")
    assert stores.list_folder(f"{bucket}/nothing-here") == []

    # The same options again: the same client (a boto3 client per call cost most of a small request).
    first = stores._s3io()
    stores.set_options(list(args))
    assert stores._s3io() is first


def test_a_store_that_does_not_answer_fails_within_seconds(bucket):
    closed = f"http://127.0.0.1:{free_port()}"
    stores.set_options([f"--s3_endpoint_url={closed}", "--s3_access_key_id=k", "--s3_secret_access_key=s",
                        "--s3_region_name=us-east-1"])
    started = time.monotonic()
    with pytest.raises(Exception, match="127.0.0.1"):
        stores.exists(f"{bucket}/a/x.txt")
    assert time.monotonic() - started < 30


def test_no_options_to_set_imports_no_beam():
    script = ("import sys\nfrom sluice.components.io import stores\nstores.set_options([])\n"
              "print('apache_beam' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
