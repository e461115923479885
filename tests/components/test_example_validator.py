"""ExampleValidator: every anomaly type, drift, severities and the failure message.

The statistics are built by hand in TFDV's format (the builders below are shared
with the SchemaGen / ImportSchemaGen tests); the parity with real TFDV is in
test_tfdv_parity_schema.py.
"""

import math
import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from sluice.components.artifacts import ExampleAnomalies, ExampleStatistics, Schema
from sluice.components.example_validator import ExampleValidator, read_anomalies, validate_examples
from sluice.components.sdk import ComponentError, ExecutionContext
from sluice.components.tfdv import (
    format_anomalies,
    histogram_jsd,
    infer_schema,
    linfty_distance,
    schema_to_text,
    validate_statistics,
)

Histogram = statistics_pb2.Histogram
AnomalyInfo = anomalies_pb2.AnomalyInfo

# --- statistics builders (only the fields inference and validation read) -----


def _common(common, num_examples: int, num_missing: int, values_per_example: int = 1) -> None:
    present = num_examples - num_missing
    common.num_non_missing = present
    common.num_missing = num_missing
    if present:
        common.min_num_values = values_per_example
        common.max_num_values = values_per_example
        common.avg_num_values = values_per_example
        common.tot_num_values = present * values_per_example


def numeric(name: str, num_examples: int, *, low: float, high: float, num_missing: int = 0,
            is_int: bool = False, buckets: list[tuple[float, float, float]] | None = None,
            values_per_example: int = 1):
    """A numeric feature; ``buckets`` = [(low, high, count)] for its STANDARD histogram."""
    feature = statistics_pb2.FeatureNameStatistics(type="INT" if is_int else "FLOAT")
    feature.path.step.append(name)
    _common(feature.num_stats.common_stats, num_examples, num_missing, values_per_example)
    feature.num_stats.min = low
    feature.num_stats.max = high
    if buckets is None:
        buckets = [(low, high, float(num_examples - num_missing))]
    histogram = feature.num_stats.histograms.add(type=Histogram.STANDARD)
    for lo, hi, count in buckets:
        histogram.buckets.add(low_value=lo, high_value=hi, sample_count=count)
    return feature


def categorical(name: str, counts: dict[str, int], *, num_missing: int = 0, kind: str = "STRING"):
    """A string feature with these value counts (one value per present example)."""
    feature = statistics_pb2.FeatureNameStatistics(type=kind)
    feature.path.step.append(name)
    num_examples = sum(counts.values()) + num_missing
    _common(feature.string_stats.common_stats, num_examples, num_missing)
    feature.string_stats.unique = len(counts)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    for rank, (value, count) in enumerate(ranked):
        feature.string_stats.top_values.add(value=value, frequency=count)
        feature.string_stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=value,
                                                        sample_count=count)
    return feature


def stats_list(num_examples: int, *features, name: str = "train"):
    """A DatasetFeatureStatisticsList with one dataset."""
    result = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = result.datasets.add(name=name, num_examples=num_examples)
    dataset.features.extend(features)
    return result


def write_split_stats(root, split: str, stats) -> str:
    """Writes ``<root>/Split-<split>/FeatureStats.pb`` and returns its path."""
    folder = os.path.join(str(root), f"Split-{split}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "FeatureStats.pb")
    with open(path, "wb") as f:
        f.write(stats.SerializeToString())
    return path


def penguin_like(num_examples: int = 100, *, species=None, mass_missing: int = 10, year_high: float = 2009):
    """A small penguins-shaped dataset: species (string), body_mass_g (float, some missing), year (int)."""
    species = species or {"Adelie": 45, "Gentoo": 35, "Chinstrap": 20}
    return stats_list(
        num_examples,
        categorical("species", species),
        numeric("body_mass_g", num_examples, low=2700, high=6300, num_missing=mass_missing,
                buckets=[(2700, 4500, 50), (4500, 6300, num_examples - mass_missing - 50)]),
        numeric("year", num_examples, low=2007, high=year_high, is_int=True),
    )


# --- helpers -------------------------------------------------------------------


def penguin_schema(**domains):
    """The schema inferred from penguin_like(), plus optional edits."""
    schema = infer_schema(penguin_like())
    features = {f.name: f for f in schema.feature}
    if "year_range" in domains:
        features["year"].int_domain.min, features["year"].int_domain.max = domains["year_range"]
    if "mass_range" in domains:
        features["body_mass_g"].float_domain.min, features["body_mass_g"].float_domain.max = domains["mass_range"]
    return schema


def reason_types(anomalies, feature):
    return [AnomalyInfo.Type.Name(r.type) for r in anomalies.anomaly_info[feature].reason]


def only_anomalies(anomalies):
    return {name: reason_types(anomalies, name) for name in anomalies.anomaly_info}


# --- anomaly types ---------------------------------------------------------------


def test_conforming_statistics_have_no_anomalies():
    result = validate_statistics(penguin_like(), penguin_schema())
    assert not result.anomaly_info
    assert result.baseline == penguin_schema()
    assert result.anomaly_name_format == anomalies_pb2.Anomalies.SERIALIZED_PATH


def test_missing_and_new_columns():
    stats = stats_list(100, categorical("species", {"Adelie": 100}),
                       numeric("body_mass_g", 100, low=3000, high=4000, num_missing=10),
                       numeric("island_code", 100, low=1, high=3, is_int=True))
    result = validate_statistics(stats, penguin_schema())
    assert only_anomalies(result) == {"year": ["SCHEMA_MISSING_COLUMN"], "island_code": ["SCHEMA_NEW_COLUMN"]}
    year = result.anomaly_info["year"]
    assert (year.short_description, year.description) == ("Column dropped", "Column is completely missing")
    assert year.severity == AnomalyInfo.ERROR and list(year.path.step) == ["year"]
    new = result.anomaly_info["island_code"]
    assert (new.short_description, new.description) == ("New column", "New column (column in data but not in schema)")


def test_optional_feature_may_be_absent():
    schema = penguin_schema()
    features = {f.name: f for f in schema.feature}
    features["body_mass_g"].presence.min_count = 0
    stats = stats_list(100, categorical("species", {"Adelie": 100}),
                       numeric("year", 100, low=2007, high=2008, is_int=True))
    assert not validate_statistics(stats, schema).anomaly_info


def test_type_mismatch():
    stats = penguin_like()
    stats.datasets[0].features[2].CopyFrom(categorical("year", {"y2007": 60, "y2008": 40}))
    result = validate_statistics(stats, penguin_schema())
    assert only_anomalies(result) == {"year": ["UNEXPECTED_DATA_TYPE"]}
    info = result.anomaly_info["year"]
    assert info.short_description == "Unexpected data type"
    assert info.description == "Expected data of type: INT but got STRING"


def test_unexpected_string_values():
    stats = penguin_like(species={"Adelie": 50, "Gentoo": 49, "Emperor": 1})
    result = validate_statistics(stats, penguin_schema())
    assert only_anomalies(result) == {"species": ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]}
    assert result.anomaly_info["species"].description == (
        "Examples contain values missing from the schema: Emperor (~1%). ")


def test_unexpected_string_values_within_min_domain_mass():
    schema = penguin_schema()
    schema.feature[0].distribution_constraints.min_domain_mass = 0.95
    stats = penguin_like(species={"Adelie": 50, "Gentoo": 48, "Emperor": 2})
    assert not validate_statistics(stats, schema).anomaly_info
    stats = penguin_like(species={"Adelie": 50, "Gentoo": 40, "Emperor": 10})
    assert only_anomalies(validate_statistics(stats, schema)) == {"species": ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]}


def test_int_domain_violations():
    schema = penguin_schema(year_range=(2007, 2009))
    result = validate_statistics(penguin_like(year_high=2012), schema)
    assert only_anomalies(result) == {"year": ["INT_TYPE_BIG_INT"]}
    assert result.anomaly_info["year"].description == "Unexpectedly large value: 2012."
    assert result.anomaly_info["year"].short_description == "Out-of-range values"
    schema = penguin_schema(year_range=(2008, 2009))
    assert only_anomalies(validate_statistics(penguin_like(), schema)) == {"year": ["INT_TYPE_SMALL_INT"]}


def test_float_domain_violations():
    low = penguin_like()
    result = validate_statistics(low, penguin_schema(mass_range=(3000, 7000)))
    assert only_anomalies(result) == {"body_mass_g": ["FLOAT_TYPE_SMALL_FLOAT"]}
    assert result.anomaly_info["body_mass_g"].description == (
        "Unexpectedly low values: 2700<3000(upto six significant digits)")
    result = validate_statistics(low, penguin_schema(mass_range=(2000, 5000)))
    assert only_anomalies(result) == {"body_mass_g": ["FLOAT_TYPE_BIG_FLOAT"]}
    assert result.anomaly_info["body_mass_g"].description == (
        "Unexpectedly high value: 6300>5000(upto six significant digits)")


def test_required_feature_partly_missing():
    stats = penguin_like()
    stats.datasets[0].features[0].CopyFrom(categorical("species", {"Adelie": 50, "Gentoo": 47}, num_missing=3))
    result = validate_statistics(stats, penguin_schema())
    assert only_anomalies(result) == {"species": ["INVALID_FEATURE_SHAPE", "FEATURE_TYPE_LOW_FRACTION_PRESENT"]}
    info = result.anomaly_info["species"]
    assert info.short_description == "Multiple errors"
    assert info.reason[1].description == (
        "The feature was present in fewer examples than expected: minimum fraction = 1.000000, actual = 0.970000")


def test_required_feature_never_present():
    stats = penguin_like()
    empty = categorical("year", {}, num_missing=100)
    stats.datasets[0].features[2].CopyFrom(empty)
    result = validate_statistics(stats, penguin_schema())
    assert only_anomalies(result) == {"year": ["FEATURE_TYPE_NOT_PRESENT"]}


def test_more_values_than_expected():
    schema = penguin_schema()
    stats = penguin_like()
    stats.datasets[0].features[1].CopyFrom(
        numeric("body_mass_g", 100, low=2700, high=6300, num_missing=10, values_per_example=2))
    assert only_anomalies(validate_statistics(stats, schema)) == {"body_mass_g": ["FEATURE_TYPE_HIGH_NUMBER_VALUES"]}


def test_string_values_for_a_bool_domain():
    schema = text_format.Parse('feature { name: "flag" type: BYTES bool_domain { true_value: "yes" false_value: "no" } '
                               'presence { min_count: 1 } }', schema_pb2.Schema())
    stats = stats_list(10, categorical("flag", {"yes": 5, "maybe": 5}))
    result = validate_statistics(stats, schema)
    assert only_anomalies(result) == {"flag": ["BOOL_TYPE_UNEXPECTED_STRING"]}


def test_malformed_schema_reference_is_reported():
    schema = penguin_schema()
    schema.feature[0].domain = "nowhere"
    result = validate_statistics(penguin_like(), schema)
    assert only_anomalies(result) == {"species": ["INVALID_SCHEMA_SPECIFICATION"]}


# --- drift -----------------------------------------------------------------------


def drift_schema(linf=None, jsd=None):
    schema = penguin_schema()
    features = {f.name: f for f in schema.feature}
    if linf is not None:
        features["species"].drift_comparator.infinity_norm.threshold = linf
    if jsd is not None:
        features["body_mass_g"].drift_comparator.jensen_shannon_divergence.threshold = jsd
    return schema


def test_linfty_drift_on_categorical_feature():
    previous = penguin_like()
    current = penguin_like(species={"Adelie": 25, "Gentoo": 55, "Chinstrap": 20})
    result = validate_statistics(current, drift_schema(linf=0.1), previous)
    assert only_anomalies(result) == {"species": ["COMPARATOR_L_INFTY_HIGH"]}
    info = result.anomaly_info["species"]
    assert info.short_description == "High Linfty distance between current and previous"
    assert info.description == ("The Linfty distance between current and previous is 0.2 (up to six significant "
                                "digits), above the threshold 0.1. "
                                "The feature value with maximum difference is: Gentoo")
    (drift,) = result.drift_skew_info
    assert list(drift.path.step) == ["species"]
    assert drift.drift_measurements[0].value == pytest.approx(0.2)
    assert drift.drift_measurements[0].type == anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY
    assert not validate_statistics(current, drift_schema(linf=0.25), previous).anomaly_info


def test_jensen_shannon_drift_on_numeric_feature():
    previous = penguin_like()
    shifted = penguin_like()
    shifted.datasets[0].features[1].CopyFrom(
        numeric("body_mass_g", 100, low=4500, high=8100, num_missing=10, buckets=[(4500, 6300, 50), (6300, 8100, 40)]))
    result = validate_statistics(shifted, drift_schema(jsd=0.1), previous)
    assert only_anomalies(result) == {"body_mass_g": ["COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"]}
    measurement = result.drift_skew_info[0].drift_measurements[0]
    # Aligned buckets [2700,4500,6300,8100]: p=(5/9, 4/9, 0), q=(0, 5/9, 4/9), m=(5/18, 1/2, 2/9).
    kl_p = 5 / 9 * math.log2((5 / 9) / (5 / 18)) + 4 / 9 * math.log2((4 / 9) / (1 / 2))
    kl_q = 5 / 9 * math.log2((5 / 9) / (1 / 2)) + 4 / 9 * math.log2((4 / 9) / (2 / 9))
    assert measurement.value == pytest.approx((kl_p + kl_q) / 2, abs=1e-12)
    assert not validate_statistics(penguin_like(), drift_schema(jsd=0.01), previous).anomaly_info


def test_drift_metrics_directly():
    assert linfty_distance({"a": 3, "b": 1}, {"a": 1, "b": 1}) == ("b", 0.25)
    same = Histogram(type=Histogram.STANDARD)
    same.buckets.add(low_value=0, high_value=1, sample_count=10)
    assert histogram_jsd(same, same) == 0.0
    apart = Histogram(type=Histogram.STANDARD)
    apart.buckets.add(low_value=5, high_value=6, sample_count=10)
    assert histogram_jsd(same, apart) == 1.0


def test_drift_without_the_feature_in_the_baseline():
    previous = stats_list(100, categorical("other", {"x": 100}))
    result = validate_statistics(penguin_like(), drift_schema(linf=0.1), previous)
    assert only_anomalies(result) == {"species": ["COMPARATOR_CONTROL_DATA_MISSING"]}


# --- severities and the summary ------------------------------------------------------


def test_severity_overrides():
    stats = penguin_like()
    stats.datasets[0].features.append(numeric("extra", 100, low=0, high=1))
    result = validate_statistics(stats, penguin_schema(), severity_overrides={"SCHEMA_NEW_COLUMN": "WARNING"})
    assert result.anomaly_info["extra"].severity == AnomalyInfo.WARNING


def test_format_anomalies():
    stats = penguin_like(species={"Adelie": 99, "Emperor": 1})
    stats.datasets[0].features.append(numeric("extra", 100, low=0, high=1))
    anomalies = validate_statistics(stats, penguin_schema(), severity_overrides={"SCHEMA_NEW_COLUMN": "WARNING"})
    assert format_anomalies({"eval": anomalies}, {"eval": "/runs/eval/report.html"}) == (
        "2 anomalies in split 'eval' (see /runs/eval/report.html)\n"
        "  - extra: New column (column in data but not in schema) [warning]\n"
        "  - species: Examples contain values missing from the schema: Emperor (~1%).")
    assert format_anomalies({"train": anomalies_pb2.Anomalies()}) == "no anomalies"


# --- the component ---------------------------------------------------------------


def write_schema(tmp_path, schema):
    folder = tmp_path / "schema"
    folder.mkdir(exist_ok=True)
    (folder / "schema.pbtxt").write_text(schema_to_text(schema))
    return Schema(uri=str(folder))


def component_inputs(tmp_path, eval_stats, schema=None):
    stats_uri = tmp_path / "stats"
    write_split_stats(stats_uri, "train", penguin_like())
    write_split_stats(stats_uri, "eval", eval_stats)
    statistics = ExampleStatistics(uri=str(stats_uri), split_names=["train", "eval"])
    out = tmp_path / "anomalies"
    out.mkdir()
    return statistics, write_schema(tmp_path, schema or penguin_schema()), ExampleAnomalies(uri=str(out))


def test_component_writes_anomalies_and_reports(tmp_path):
    eval_stats = penguin_like(species={"Adelie": 99, "Emperor": 1})
    statistics, schema, anomalies = component_inputs(tmp_path, eval_stats)
    ctx = ExecutionContext()
    validate_examples(statistics=statistics, schema=schema, anomalies=anomalies, fail_on_anomalies=False, ctx=ctx)
    assert anomalies.split_names == ["train", "eval"] and anomalies.anomaly_count == 1
    assert ctx.metrics["anomalies"] == 1
    written = anomalies_pb2.Anomalies()
    written.ParseFromString((Path(anomalies.uri) / "Split-eval" / "SchemaDiff.pb").read_bytes())
    assert only_anomalies(written) == {"species": ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]}
    report = (Path(anomalies.uri) / "Split-eval" / "report.html").read_text()
    assert "Emperor" in report and "ERROR" in report and "<script" not in report
    assert "No anomalies" in (Path(anomalies.uri) / "Split-train" / "report.html").read_text()
    by_split, reports = read_anomalies(anomalies)
    assert format_anomalies(by_split, reports) == (
        f"1 anomaly in split 'eval' (see {anomalies.uri}/Split-eval/report.html)\n"
        "  - species: Examples contain values missing from the schema: Emperor (~1%).")


def _blocked(statistics, schema, anomalies, **params) -> str:
    """Why validate_examples blocks what depends on it ("" when it does not)."""
    ctx = ExecutionContext()
    validate_examples(statistics=statistics, schema=schema, anomalies=anomalies, ctx=ctx, **params)
    return ctx.blocked


def test_component_blocks_with_a_readable_block_and_publishes_its_reports(tmp_path):
    eval_stats = stats_list(100, categorical("species", {"Adelie": 100}),
                            numeric("body_mass_g", 100, low=3000, high=4000, num_missing=10))
    statistics, schema, anomalies = component_inputs(tmp_path, eval_stats)
    assert _blocked(statistics, schema, anomalies) == (
        "blocked by anomalies: 1 column breaks the schema: 'year' (fail_on_anomalies is set)\n"
        "1 anomaly in split 'eval'\n  - year: Column is completely missing")
    # The outputs are complete: the runner publishes them, the reports with them.
    assert (Path(anomalies.uri) / "Split-eval" / "SchemaDiff.pb").exists()
    assert "year" in (Path(anomalies.uri) / "Split-eval" / "report.html").read_text()
    assert anomalies.anomaly_count == 1 and anomalies.split_names == ["train", "eval"]
    assert _blocked(statistics, schema, anomalies, fail_on_anomalies=False) == ""


def test_component_warnings_do_not_fail(tmp_path):
    eval_stats = penguin_like()
    eval_stats.datasets[0].features.append(numeric("extra", 100, low=0, high=1))
    statistics, schema, anomalies = component_inputs(tmp_path, eval_stats)
    validate_examples(statistics=statistics, schema=schema, anomalies=anomalies,
                      severity_overrides={"SCHEMA_NEW_COLUMN": "WARNING"})
    assert anomalies.anomaly_count == 1


def test_component_exclude_splits_and_drift(tmp_path):
    eval_stats = penguin_like(species={"Adelie": 10, "Gentoo": 70, "Chinstrap": 20})
    statistics, schema, anomalies = component_inputs(tmp_path, eval_stats)
    baseline_uri = tmp_path / "baseline"
    write_split_stats(baseline_uri, "eval", penguin_like())
    baseline = ExampleStatistics(uri=str(baseline_uri), split_names=["eval"])
    assert "species: The Linfty distance between current and previous is 0.35" in _blocked(
        statistics, schema, anomalies, baseline_statistics=baseline, exclude_splits=["train"],
        drift={"species": 0.2, "body_mass_g": 0.5})
    assert anomalies.split_names == ["eval"]
    # Without a baseline, drift thresholds check nothing.
    validate_examples(statistics=statistics, schema=schema, anomalies=anomalies, exclude_splits=["train"],
                      drift={"species": 0.2})


def test_component_parameter_errors(tmp_path):
    statistics, schema, anomalies = component_inputs(tmp_path, penguin_like())
    with pytest.raises(ComponentError, match="parameter 'drift' names feature 'nope', which is not in the schema"):
        validate_examples(statistics=statistics, schema=schema, anomalies=anomalies, drift={"nope": 0.1})
    with pytest.raises(ComponentError, match="'severity_overrides' names unknown anomaly type 'NEW_COLUMN'"):
        validate_examples(statistics=statistics, schema=schema, anomalies=anomalies,
                          severity_overrides={"NEW_COLUMN": "WARNING"})
    with pytest.raises(ComponentError, match=r"must be 'ERROR' or 'WARNING', got 'INFO'"):
        validate_examples(statistics=statistics, schema=schema, anomalies=anomalies,
                          severity_overrides={"SCHEMA_NEW_COLUMN": "INFO"})
    (Path(schema.file)).write_text('feature {\n  name: "x"\n  kind: INT\n}\n')
    with pytest.raises(ComponentError, match=r"invalid schema in .*schema.pbtxt, line 3"):
        validate_examples(statistics=statistics, schema=schema, anomalies=anomalies)


def test_component_definition():
    assert set(ExampleValidator.inputs) == {"statistics", "schema", "baseline_statistics"}
    assert ExampleValidator.inputs["baseline_statistics"].optional
    assert set(ExampleValidator.outputs) == {"anomalies"}
    assert ExampleValidator.parameters["fail_on_anomalies"].default is True


def test_a_missing_label_and_a_string_in_a_number_column_are_named_on_the_first_line(tmp_path):
    # The label (species) is gone and body_mass_g holds strings: both columns named before Transform runs.
    eval_stats = stats_list(100, categorical("body_mass_g", {"heavy": 60, "light": 40}),
                            numeric("year", 100, low=2007, high=2009, is_int=True))
    statistics, schema, anomalies = component_inputs(tmp_path, eval_stats)
    lines = _blocked(statistics, schema, anomalies).splitlines()
    assert lines[0] == ("blocked by anomalies: 2 columns break the schema: 'body_mass_g', 'species' "
                        "(fail_on_anomalies is set)")
    assert "  - body_mass_g: Expected data of type: FLOAT but got STRING" in lines
    assert "  - species: Column is completely missing" in lines


def test_a_long_anomaly_list_is_summarized_and_the_full_list_kept(tmp_path):
    eval_stats = penguin_like()
    eval_stats.datasets[0].features.extend(numeric(f"extra_{i:04d}", 100, low=0, high=1) for i in range(2000))
    statistics, schema, anomalies = component_inputs(tmp_path, eval_stats)
    lines = _blocked(statistics, schema, anomalies).splitlines()
    assert len(lines) == 1 + 1 + 20 + 1, lines[:3]
    assert lines[0] == ("blocked by anomalies: 2,000 columns break the schema: 'extra_0000', 'extra_0001', "
                        "'extra_0002', 'extra_0003', 'extra_0004' and 1,995 more (fail_on_anomalies is set)")
    assert lines[-1] == "  ... and 1,980 more; the full list is in the split's anomalies report"
    # The published report holds them all, and the summary read back from it points at it.
    by_split, reports = read_anomalies(anomalies)
    summary = format_anomalies(by_split, reports).splitlines()
    assert summary[-1] == f"  ... and 1,980 more; the full list is in {reports['eval']}"
    assert (Path(reports["eval"]).read_text()).count("extra_") >= 2000


def test_a_list_one_over_the_limit_is_shown_whole():
    anomalies = anomalies_pb2.Anomalies()
    for i in range(21):
        anomalies.anomaly_info[f"f{i:02d}"].description = "New column"
    assert len(format_anomalies({"eval": anomalies}).splitlines()) == 22
    anomalies.anomaly_info["f21"].description = "New column"
    assert format_anomalies({"eval": anomalies}).splitlines()[-1] == (
        "  ... and 2 more; the full list is in the split's anomalies report")


def test_list_columns_through_statistics_gen_schema_gen_and_the_validator(tmp_path):
    """Real StatisticsGen statistics of list columns: an image of another length in eval breaks the
    inferred shape; token lists longer than the train ones break a value_count set to their max."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sluice.components.artifacts import Examples
    from sluice.components.schema_gen import generate_schema
    from sluice.components.statistics_gen import generate_statistics
    from tests.oracle.tfdv_lists import list_table

    train, evaluation = list_table(30), list_table(30, seed=4)
    image = evaluation.column("image").combine_chunks()
    rows = [image[i].values.to_numpy().tolist() for i in range(len(image))]
    rows[3] = rows[3][:700]
    evaluation = evaluation.set_column(0, "image", pa.array(rows, pa.list_(pa.float32())))
    for split, table in (("train", train), ("eval", evaluation)):
        (tmp_path / "examples" / f"Split-{split}").mkdir(parents=True)
        pq.write_table(table, tmp_path / "examples" / f"Split-{split}" / "part-00000-of-00001.parquet")
    statistics = ExampleStatistics(uri=str(tmp_path / "stats"))
    generate_statistics(examples=Examples(uri=str(tmp_path / "examples"), split_names=["train", "eval"]),
                        statistics=statistics)
    schema = Schema(uri=str(tmp_path / "schema"))
    os.makedirs(schema.uri)
    generate_schema(statistics=statistics, schema=schema, exclude_splits=["eval"])
    parsed = text_format.Parse(Path(schema.file).read_text(), schema_pb2.Schema())
    tokens = next(f for f in parsed.feature if f.name == "tokens")
    tokens.ClearField("value_count")  # what inference gave (min 1 if no empty list in train): a max only
    tokens.value_count.max = 10
    Path(schema.file).write_text(schema_to_text(parsed))
    anomalies = ExampleAnomalies(uri=str(tmp_path / "anomalies"))
    os.makedirs(anomalies.uri)
    validate_examples(statistics=statistics, schema=schema, anomalies=anomalies, fail_on_anomalies=False)
    by_split, _ = read_anomalies(anomalies)
    assert only_anomalies(by_split["eval"]) == {"image": ["INVALID_FEATURE_SHAPE"],
                                                "tokens": ["FEATURE_TYPE_HIGH_NUMBER_VALUES"]}
    assert only_anomalies(by_split["train"]) == {"tokens": ["FEATURE_TYPE_HIGH_NUMBER_VALUES"]}
