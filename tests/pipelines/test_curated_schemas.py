"""The curated schemas under schemas/ load, and the example data validates against them."""

import pytest

from sluice.components.artifacts import ExampleAnomalies, Examples, ExampleStatistics, Schema
from sluice.components.example_gen import csv_example_gen
from sluice.components.example_validator import validate_examples
from sluice.components.import_schema_gen import import_schema
from sluice.components.sdk import ExecutionContext
from sluice.components.statistics_gen import generate_statistics
from sluice.pipelines import curated_schema
from sluice.pipelines.penguin.pipeline import create_pipeline as penguin_pipeline
from sluice.pipelines.penguin.pipeline import penguins_data_dir
from tests.conftest import SHARED_DATA


def _validate(tmp_path, data_root, pattern, schema_name, **gen):
    folders = {n: tmp_path / n for n in ("examples", "statistics", "schema", "anomalies")}
    for f in folders.values():
        f.mkdir()
    ctx = ExecutionContext()
    examples = Examples(uri=str(folders["examples"]))
    csv_example_gen(examples=examples, input_base=str(data_root), input_pattern=pattern, ctx=ctx, **gen)
    stats = ExampleStatistics(uri=str(folders["statistics"]))
    generate_statistics(examples=examples, statistics=stats, ctx=ctx)
    schema = Schema(uri=str(folders["schema"]))
    import_schema(schema=schema, schema_file=curated_schema(f"schemas/{schema_name}.pbtxt"), ctx=ctx)
    anomalies = ExampleAnomalies(uri=str(folders["anomalies"]))
    validate_examples(statistics=stats, schema=schema, anomalies=anomalies, ctx=ctx)
    anomalies.blocked = ctx.blocked  # why a runner would stop downstream ("" when it would not)
    return anomalies


@pytest.mark.skipif(not (SHARED_DATA / "chicago_taxi").is_dir(), reason="no ../shared/data")
def test_taxi_data_has_no_anomalies_against_the_curated_schema(tmp_path):
    assert _validate(tmp_path, SHARED_DATA / "chicago_taxi", "*.csv", "taxi").anomaly_count == 0


def test_penguin_data_has_no_anomalies_against_the_curated_schema(tmp_path):
    anomalies = _validate(tmp_path, penguins_data_dir(), "penguins.csv", "penguin", null_values=["", "NA"])
    assert anomalies.anomaly_count == 0


def test_an_hour_outside_the_curated_range_is_an_anomaly(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    if not (SHARED_DATA / "chicago_taxi").is_dir():
        pytest.skip("no ../shared/data")
    lines = (SHARED_DATA / "chicago_taxi" / "data.csv").read_text().splitlines()[:300]
    cols = lines[0].split(",")
    hour = cols.index("trip_start_hour")
    bad = lines[1].split(",")
    bad[hour] = "31"
    (data / "data.csv").write_text("\n".join(lines + [",".join(bad)]) + "\n")
    anomalies = _validate(tmp_path, data, "*.csv", "taxi")
    assert anomalies.blocked.startswith("blocked by anomalies: 1 column breaks the schema: 'trip_start_hour'")


def test_pipelines_use_a_curated_schema_when_asked():
    pipe = penguin_pipeline(schema_file="schemas/penguin.pbtxt")
    assert [n.component.name for n in pipe.components][2] == "ImportSchemaGen"
    assert penguin_pipeline().components[2].component.name == "SchemaGen"
