import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from sluice.components.artifacts import ExampleStatistics, Schema
from sluice.components.schema_gen import SchemaGen, generate_schema
from sluice.components.sdk import ComponentError, ExecutionContext
from sluice.components.tfdv import infer_schema, update_schema
from tests.components.test_example_validator import categorical, numeric, penguin_like, stats_list, write_split_stats

REPO = Path(__file__).resolve().parents[2]


def features_by_name(schema):
    return {f.name: f for f in schema.feature}


def test_infers_types_presence_shape_and_string_domain():
    schema = infer_schema(penguin_like())
    features = features_by_name(schema)

    species = features["species"]
    assert species.type == schema_pb2.BYTES
    assert species.presence.min_fraction == 1.0 and species.presence.min_count == 1
    assert [d.size for d in species.shape.dim] == [1]
    assert species.domain == "species"
    (domain,) = schema.string_domain
    assert domain.name == "species" and list(domain.value) == ["Adelie", "Chinstrap", "Gentoo"]

    mass = features["body_mass_g"]  # sometimes missing: no shape, no min_fraction
    assert mass.type == schema_pb2.FLOAT
    assert not mass.presence.HasField("min_fraction") and mass.presence.min_count == 1
    assert not mass.HasField("shape")
    assert (mass.value_count.min, mass.value_count.max) == (1, 1)

    year = features["year"]
    assert year.type == schema_pb2.INT and year.WhichOneof("domain_info") is None
    assert [d.size for d in year.shape.dim] == [1]


def test_matches_tfdv_text_for_a_small_case():
    expected = """
feature { name: "color" type: BYTES domain: "color" presence { min_fraction: 1.0 min_count: 1 }
          shape { dim { size: 1 } } }
feature { name: "size" value_count { min: 1 max: 1 } type: FLOAT presence { min_count: 1 } }
string_domain { name: "color" value: "blue" value: "red" }
"""
    stats = stats_list(10, categorical("color", {"red": 7, "blue": 3}),
                       numeric("size", 10, low=1, high=3, num_missing=2))
    assert infer_schema(stats) == text_format.Parse(expected, schema_pb2.Schema())


def test_infer_feature_shape_false_uses_value_count():
    schema = infer_schema(penguin_like(), infer_feature_shape=False)
    for feature in schema.feature:
        assert not feature.HasField("shape")
        assert (feature.value_count.min, feature.value_count.max) == (1, 1)


def test_large_string_vocabulary_gets_no_domain():
    counts = {f"v{i:03d}": 1 for i in range(30)}
    schema = infer_schema(stats_list(30, categorical("id", counts)), max_string_domain_size=20)
    (feature,) = schema.feature
    assert feature.type == schema_pb2.BYTES and feature.WhichOneof("domain_info") is None
    assert not schema.string_domain
    assert infer_schema(stats_list(30, categorical("id", counts)), max_string_domain_size=30).string_domain


def test_domains_for_bools_numeric_strings_and_bytes():
    stats = stats_list(
        10,
        numeric("flag", 10, low=0, high=1, is_int=True),
        categorical("answer", {"true": 6, "false": 4}),
        categorical("zip", {"60601": 5, "60602": 5}),
        categorical("blob", {"x": 10}, kind="BYTES"),
        categorical("broken", {"__BYTES_VALUE__": 10}),
    )
    features = features_by_name(infer_schema(stats))
    assert features["flag"].HasField("bool_domain") and features["flag"].type == schema_pb2.INT
    assert features["answer"].bool_domain.true_value == "true"
    assert features["answer"].bool_domain.false_value == "false"
    assert features["zip"].HasField("int_domain") and features["zip"].type == schema_pb2.BYTES
    assert features["blob"].WhichOneof("domain_info") is None
    assert features["broken"].WhichOneof("domain_info") is None


def test_update_schema_relaxes_for_another_split():
    schema = infer_schema(penguin_like())
    other = stats_list(
        50,
        categorical("species", {"Adelie": 20, "Emperor": 25}, num_missing=5),
        numeric("body_mass_g", 50, low=2000, high=5000),
        numeric("year", 50, low=2007, high=2010, is_int=True),
        numeric("extra", 50, low=0, high=5),
    )
    updated = update_schema(schema, other)
    features = features_by_name(updated)
    assert list(updated.string_domain[0].value) == ["Adelie", "Chinstrap", "Gentoo", "Emperor"]
    assert not features["species"].HasField("shape")
    assert features["species"].presence.min_fraction == pytest.approx(0.9)
    assert "extra" in features
    assert infer_schema(penguin_like()) == schema  # the input is not modified


def test_generate_schema_component_over_splits(tmp_path):
    stats_uri = tmp_path / "stats"
    write_split_stats(stats_uri, "train", penguin_like())
    write_split_stats(stats_uri, "eval", stats_list(10, categorical("species", {"Macaroni": 10})))
    out = Schema(uri=str(tmp_path / "schema"))
    (tmp_path / "schema").mkdir()
    ctx = ExecutionContext()

    generate_schema(statistics=ExampleStatistics(uri=str(stats_uri), split_names=["train", "eval"]),
                    schema=out, exclude_splits=["eval"], ctx=ctx)
    parsed = text_format.Parse(Path(out.file).read_text(), schema_pb2.Schema())
    assert parsed == infer_schema(penguin_like())
    assert ctx.metrics["num_features"] == 3

    generate_schema(statistics=ExampleStatistics(uri=str(stats_uri), split_names=["train", "eval"]),
                    schema=out, ctx=ctx)
    parsed = text_format.Parse(Path(out.file).read_text(), schema_pb2.Schema())
    assert "Macaroni" in parsed.string_domain[0].value


def test_generate_schema_errors_name_the_problem(tmp_path):
    statistics = ExampleStatistics(uri=str(tmp_path / "stats"), split_names=["train"])
    out = Schema(uri=str(tmp_path))
    with pytest.raises(ComponentError,
                       match=r"SchemaGen: statistics file .*Split-train/FeatureStats.pb does not exist"):
        generate_schema(statistics=statistics, schema=out)
    with pytest.raises(ComponentError, match="no split left"):
        generate_schema(statistics=statistics, schema=out, exclude_splits=["train"])
    bad = tmp_path / "stats" / "Split-train"
    bad.mkdir(parents=True)
    (bad / "FeatureStats.pb").write_bytes(b"\xff\xff not a proto")
    with pytest.raises(ComponentError, match="not a binary DatasetFeatureStatisticsList"):
        generate_schema(statistics=statistics, schema=out)


def test_component_definition():
    assert set(SchemaGen.inputs) == {"statistics"} and set(SchemaGen.outputs) == {"schema"}
    assert SchemaGen.parameters["max_string_domain_size"].default == 100
    assert SchemaGen.parameters["infer_feature_shape"].default is True


def test_component_modules_import_nothing_heavy():
    code = (
        "import sys, sluice.components.schema_gen, sluice.components.import_schema_gen, "
        "sluice.components.example_validator\n"
        "heavy = [m for m in ('tensorflow', 'apache_beam', 'pyarrow', 'mlflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_list_columns_get_tfdv_shapes_and_value_counts(tmp_path):
    """StatisticsGen's statistics of list columns -> what tfdv.infer_schema infers (as the TFDV parity
    test checks): a fixed length always present is a shape, a varying one a value_count."""
    import pyarrow.parquet as pq

    from sluice.components.artifacts import Examples
    from sluice.components.statistics_gen import generate_statistics
    from sluice.components.tfdv import load_statistics
    from tests.oracle.tfdv_lists import list_table

    (tmp_path / "examples" / "Split-train").mkdir(parents=True)
    pq.write_table(list_table(40), tmp_path / "examples" / "Split-train" / "part-00000-of-00001.parquet")
    statistics = ExampleStatistics(uri=str(tmp_path / "stats"))
    generate_statistics(examples=Examples(uri=str(tmp_path / "examples"), split_names=["train"]),
                        statistics=statistics)
    stats = load_statistics(str(Path(statistics.split_uri("train")) / "FeatureStats.pb"), "test")
    features = features_by_name(infer_schema(stats))
    assert [d.size for d in features["image"].shape.dim] == [784]
    assert features["image"].type == schema_pb2.FLOAT and features["image"].presence.min_fraction == 1.0
    # Empty lists (0 values) leave no value_count, as TFDV; nulls leave no min_fraction.
    tokens = features["tokens"]
    assert tokens.type == schema_pb2.BYTES and tokens.domain == "tokens" and not tokens.HasField("value_count")
    assert not tokens.presence.HasField("min_fraction")
    assert not features["scores"].HasField("shape") and features["scores"].value_count.min == 1
    assert [d.size for d in features["x"].shape.dim] == [1]
    image = features_by_name(infer_schema(stats, infer_feature_shape=False))["image"]
    assert (image.value_count.min, image.value_count.max) == (784, 784)
