"""ExampleGen under retried bundles: every row written once, counts from the shards written.

``--direct_runner_bundle_repeat=1`` makes the in-process runner run every bundle twice and keep
one attempt's outputs, as Dataflow, Flink and Spark do when they retry a task: the shards the
other attempt wrote must neither be published nor counted.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sluice.components.artifacts import Examples
from sluice.components.example_gen import csv_example_gen, import_example_gen, parquet_example_gen
from sluice.components.sdk import ExecutionContext

REPLAY = ["--direct_runner_bundle_repeat=1"]
FILES, ROWS_PER_FILE = 4, 250


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("csv")
    for number in range(FILES):
        ids = list(range(number * ROWS_PER_FILE, (number + 1) * ROWS_PER_FILE))
        table = pa.table({"id": ids, "x": [i * 0.5 for i in ids], "label": ["yes" if i % 3 else "no" for i in ids]})
        pacsv.write_csv(table, folder / f"part-{number}.csv")
    return folder


def _run(fn, tmp_path: Path, name: str, **params) -> tuple[Examples, ExecutionContext]:
    out = tmp_path / name
    out.mkdir()
    examples, ctx = Examples(uri=str(out)), ExecutionContext(beam_pipeline_args=list(REPLAY))
    fn(examples=examples, ctx=ctx, **params)
    return examples, ctx


def _parquet_ids(examples: Examples, split: str) -> list[int]:
    files = sorted(Path(examples.split_uri(split)).glob("part-*-of-*.parquet"))
    assert files, f"no shards in {examples.split_uri(split)}"
    return [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]


def _only_final_shards(examples: Examples) -> None:
    leftovers = [p.name for p in Path(examples.uri).rglob("*") if p.is_file() and not p.name.startswith("part-")]
    assert leftovers == []


def _check_parquet(examples: Examples, ctx: ExecutionContext) -> None:
    ids = {split: _parquet_ids(examples, split) for split in examples.split_names}
    every = sorted(i for found in ids.values() for i in found)
    assert every == list(range(FILES * ROWS_PER_FILE))  # each row once
    assert {s: ctx.metrics[f"rows_{s}"] for s in ids} == {s: len(found) for s, found in ids.items()}
    assert ctx.metrics["rows"] == FILES * ROWS_PER_FILE
    _only_final_shards(examples)


def test_csv_example_gen_writes_each_row_once_under_replayed_bundles(tmp_path, csv_folder):
    examples, ctx = _run(csv_example_gen, tmp_path, "csv", input_base=str(csv_folder))
    _check_parquet(examples, ctx)


def test_parquet_and_import_example_gen_write_each_row_once_under_replayed_bundles(tmp_path, csv_folder):
    first, _ = _run(csv_example_gen, tmp_path, "csv", input_base=str(csv_folder))
    from_parquet, ctx = _run(parquet_example_gen, tmp_path, "parquet", input_base=first.split_uri("train"))
    ids = _parquet_ids(from_parquet, "train") + _parquet_ids(from_parquet, "eval")
    assert sorted(ids) == sorted(_parquet_ids(first, "train"))
    assert ctx.metrics["rows"] == len(ids)
    _only_final_shards(from_parquet)

    as_tfrecord, ctx = _run(csv_example_gen, tmp_path, "tfrecord", input_base=str(csv_folder),
                            output_format="tfrecord")
    assert ctx.metrics["rows"] == FILES * ROWS_PER_FILE
    _only_final_shards(as_tfrecord)
    imported, ctx = _run(import_example_gen, tmp_path, "imported", input_base=as_tfrecord.uri)
    _check_parquet(imported, ctx)


PREPROCESSING = '''
from sluice import tft


def preprocessing_fn(inputs):
    return {"x_z": tft.scale_to_z_score(inputs["x"]), "id": inputs["id"],
            "label_id": tft.compute_and_apply_vocabulary(inputs["label"])}
'''


def test_statistics_and_transform_under_replayed_bundles_equal_a_plain_run(tmp_path, csv_folder):
    from sluice.components.artifacts import ExampleStatistics, Schema, TransformGraph
    from sluice.components.schema_gen import generate_schema
    from sluice.components.statistics_gen import generate_statistics
    from sluice.components.transform import run_transform

    examples, _ = _run(csv_example_gen, tmp_path, "csv", input_base=str(csv_folder))
    module = tmp_path / "preprocessing.py"
    module.write_text(PREPROCESSING)
    found = {}
    for label, args in (("plain", ["--direct_num_workers=1"]), ("replayed", REPLAY)):
        ctx = ExecutionContext(beam_pipeline_args=args)
        assert not ctx.beam_default_runner  # Transform's Beam pipelines, not its in-process path
        outs = {name: cls(uri=str(tmp_path / label / name)) for name, cls in (
            ("statistics", ExampleStatistics), ("schema", Schema), ("transform_graph", TransformGraph),
            ("transformed_examples", Examples), ("post_transform_schema", Schema))}
        for artifact in outs.values():
            Path(artifact.uri).mkdir(parents=True)
        generate_statistics(examples=examples, statistics=outs["statistics"], ctx=ctx)
        generate_schema(statistics=outs["statistics"], schema=outs["schema"])
        run_transform(examples=examples, schema=outs["schema"], module_file=str(module), ctx=ctx,
                      transform_graph=outs["transform_graph"], transformed_examples=outs["transformed_examples"],
                      post_transform_schema=outs["post_transform_schema"])
        stats = {split: Path(outs["statistics"].uri, f"Split-{split}", "FeatureStats.pb").read_bytes()
                 for split in examples.split_names}
        rows = {split: sorted(_parquet_ids(outs["transformed_examples"], split)) for split in examples.split_names}
        found[label] = stats, rows
    assert found["replayed"] == found["plain"]
    assert sorted(found["plain"][1]["train"] + found["plain"][1]["eval"]) == list(range(FILES * ROWS_PER_FILE))


def test_a_runner_that_dropped_the_shard_list_gets_one_line_naming_the_component(tmp_path):
    from sluice.components.example_gen import shards
    from sluice.components.sdk import ComponentError

    with pytest.raises(ComponentError, match=r"^CsvExampleGen: the Beam runner finished without recording the "
                                             r"shards it wrote \(.*\.written-shards\.json is missing\)"):
        shards.read_written(str(tmp_path), "CsvExampleGen")
