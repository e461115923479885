"""Content fingerprints for the cache: a file, a folder or a glob, hashed by what they hold."""

import os

from sluice.orchestration.cache_keys import READ_CHUNK, fingerprint_path


def _write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def test_one_byte_changed_past_the_first_chunk_changes_a_files_fingerprint(tmp_path):
    data = bytearray(os.urandom(READ_CHUNK + 4096))
    path = _write(tmp_path / "data.csv", bytes(data))
    before = fingerprint_path(path)
    data[READ_CHUNK + 100] ^= 1
    _write(tmp_path / "data.csv", bytes(data))
    assert fingerprint_path(path) != before
    data[READ_CHUNK + 100] ^= 1
    _write(tmp_path / "data.csv", bytes(data))
    assert fingerprint_path(path) == before


def test_a_folders_fingerprint_is_its_files_names_and_contents_wherever_it_lies(tmp_path):
    first = tmp_path / "a" / "examples"
    _write(first / "Split-train" / "part-0.parquet", b"rows")
    _write(first / "Split-eval" / "part-0.parquet", b"more rows")
    second = tmp_path / "b" / "examples"
    _write(second / "Split-train" / "part-0.parquet", b"rows")
    _write(second / "Split-eval" / "part-0.parquet", b"more rows")
    assert fingerprint_path(str(first)) == fingerprint_path(str(second))
    os.rename(second / "Split-eval" / "part-0.parquet", second / "Split-eval" / "part-1.parquet")
    assert fingerprint_path(str(first)) != fingerprint_path(str(second))


def test_a_glob_covers_the_files_it_matches_and_a_missing_path_its_name(tmp_path):
    _write(tmp_path / "span-1" / "data.csv", b"x\n1\n")
    pattern = str(tmp_path / "span-*" / "*.csv")
    before = fingerprint_path(pattern)
    _write(tmp_path / "span-2" / "data.csv", b"x\n2\n")
    assert fingerprint_path(pattern) != before
    assert fingerprint_path(str(tmp_path / "gone")) != fingerprint_path(str(tmp_path / "also-gone"))
