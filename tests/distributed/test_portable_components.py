"""CsvExampleGen and Transform on Beam's portable runner: a local job server and an external worker
pool on loopback, two SDK workers a job (``conftest.portable_runner``).

Each run's outputs must equal the in-process run's: CsvExampleGen's rows, in order, with its CSV
cut into byte ranges that both workers parse; Transform's analysis, vocabularies and transformed
rows, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sluice.components.example_gen import config as eg_config
from sluice.components.sdk import ExecutionContext
from sluice.components.transform import run_transform
from tests.components.test_example_gen_ranges import RANGES, ROWS, _csv_text, _run, _split_rows, _write
from tests.components.test_transform import TWO_PATHS_MODULE, output_artifacts, taxi_splits, taxi_table, write_examples

# A worker that cannot start leaves the job waiting: fail well before the suite's 900 s.
pytestmark = pytest.mark.timeout(240)


def test_csv_example_gen_ranges_on_the_portable_runner_give_the_in_process_rows(portable_runner, tmp_path,
                                                                                monkeypatch):
    data = _write(tmp_path / "in", _csv_text())
    monkeypatch.setattr(eg_config, "CSV_RANGE_BYTES", data.stat().st_size // RANGES + 1)
    expected = _split_rows(_run(data.parent, tmp_path / "in-process", [])[0])[0]
    examples, ctx = _run(data.parent, tmp_path / "portable", portable_runner)
    got, shards = _split_rows(examples)
    assert sum(len(rows) for rows in got.values()) == ctx.metrics["rows"] == ROWS
    assert all(count >= RANGES - 1 for count in shards.values()), shards  # parsed as ranges, not one file
    assert got == expected
    assert ctx.metrics["workers"] == 2, ctx.metrics  # both SDK workers parsed ranges


def _transform(examples, schema, module: Path, out: Path, args: list[str]) -> dict:
    outs = output_artifacts(out)
    run_transform(examples=examples, schema=schema, module_file=str(module),
                  ctx=ExecutionContext(beam_pipeline_args=list(args)), **outs)
    graph = Path(outs["transform_graph"].uri)
    return {
        "analysis": json.loads((graph / "analysis.json").read_text()),
        "vocabularies": {p.name: p.read_bytes() for p in sorted((graph / "transform_fn" / "assets").glob("*"))},
        **{split: pq.read_table(outs["transformed_examples"].split_uri(split)) for split in ("train", "eval")},
    }


def test_transform_on_the_portable_runner_writes_the_in_process_results(portable_runner, tmp_path):
    table = taxi_table().slice(0, 3000)
    examples, schema = write_examples(tmp_path, taxi_splits(table))
    module = tmp_path / "portable_module.py"
    module.write_text(TWO_PATHS_MODULE)
    expected = _transform(examples, schema, module, tmp_path / "in-process", [])
    got = _transform(examples, schema, module, tmp_path / "portable", portable_runner)
    assert got["analysis"]["analyzers"] == expected["analysis"]["analyzers"]
    assert got["analysis"]["vocabularies"] == expected["analysis"]["vocabularies"]
    assert expected["vocabularies"] and got["vocabularies"] == expected["vocabularies"]
    for split in ("train", "eval"):
        assert got[split].num_rows == taxi_splits(table)[split].num_rows
        assert got[split].sort_by("fare_z").equals(expected[split].sort_by("fare_z")), split
