"""Parity of SchemaGen / ExampleValidator with real TFDV 1.16.1 (side venv oracle).

TFDV computes the statistics (``generate_statistics_from_dataframe``); TFDV and
Sluice then infer a schema from the SAME statistics proto and validate the
SAME (mutated) statistics against the same schema. Schemas must be equal and
anomalies must carry the same types, severities and descriptions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from sluice.components.tfdv import infer_schema, schema_to_text, update_schema, validate_statistics
from tests.oracle import tfdv_env
from tests.oracle.tfdv_lists import list_table

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ORACLE = tfdv_env.ORACLE_DIR / "tfdv_schema_oracle.py"


class Oracle:
    """Runs tfdv_schema_oracle.py in the TFDV venv, exchanging files in a work folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._computed: set[str] = set()

    def run(self, *args) -> str:
        done = tfdv_env.run_tfdv(ORACLE, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def stats(self, frame: pd.DataFrame, name: str):
        """TFDV statistics of ``frame`` (computed once per name in this module)."""
        if name not in self._computed:
            csv = self.folder / f"{name}.csv"
            frame.to_csv(csv, index=False)
            self.run("stats", csv, self.folder / f"{name}.pb")
            self._computed.add(name)
        return self.read_stats(name)

    def parquet_stats(self, table, name: str):
        """TFDV statistics of an Arrow table written to Parquet (list columns fed as lists)."""
        import pyarrow.parquet as pq

        path = self.folder / f"{name}.parquet"
        pq.write_table(table, path)
        done = tfdv_env.run_tfdv(tfdv_env.ORACLE_DIR / "tfdv_stats.py", path, self.folder / f"{name}.pb")
        assert done.returncode == 0, done.stderr[-3000:]
        return self.read_stats(name)

    def read_stats(self, name: str):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString((self.folder / f"{name}.pb").read_bytes())
        return stats

    def infer(self, stats_name: str):
        out = self.folder / f"{stats_name}_tfdv_schema.pbtxt"
        self.run("infer", self.folder / f"{stats_name}.pb", out)
        return text_format.Parse(out.read_text(), schema_pb2.Schema())

    def update(self, schema, stats_name: str):
        schema_path = self.folder / f"{stats_name}_base_schema.pbtxt"
        schema_path.write_text(schema_to_text(schema))
        out = self.folder / f"{stats_name}_tfdv_updated.pbtxt"
        self.run("update", schema_path, self.folder / f"{stats_name}.pb", out)
        return text_format.Parse(out.read_text(), schema_pb2.Schema())

    def validate(self, stats_name: str, schema, previous_name: str | None = None):
        schema_path = self.folder / f"{stats_name}_schema.pbtxt"
        schema_path.write_text(schema_to_text(schema))
        out = self.folder / f"{stats_name}_tfdv_anomalies.pb"
        extra = [self.folder / f"{previous_name}.pb"] if previous_name else []
        self.run("validate", self.folder / f"{stats_name}.pb", schema_path, out, *extra)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(out.read_bytes())
        return anomalies


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    tfdv_env.require_tfdv()
    return Oracle(tmp_path_factory.mktemp("tfdv_parity"))


@pytest.fixture(scope="module")
def penguins():
    palmerpenguins = pytest.importorskip("palmerpenguins")
    return palmerpenguins.load_penguins()


@pytest.fixture(scope="module")
def taxi():
    path = DATA / "chicago_taxi" / "data.csv"
    if not path.exists():
        pytest.skip(f"shared data missing: {path}")
    return pd.read_csv(path)


def summary(anomalies):
    """What must agree: per feature the severity, texts and reasons."""
    def reasons(info):
        return [(anomalies_pb2.AnomalyInfo.Type.Name(r.type), r.short_description, r.description) for r in info.reason]

    return {
        name: (anomalies_pb2.AnomalyInfo.Severity.Name(info.severity), info.short_description, info.description,
               reasons(info))
        for name, info in anomalies.anomaly_info.items()
    }


def drift_summary(anomalies):
    return [
        (tuple(info.path.step), [(m.type, round(m.value, 9), m.threshold) for m in info.drift_measurements])
        for info in anomalies.drift_skew_info
    ]


def reason_types(anomalies):
    return {name: [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason]
            for name, info in anomalies.anomaly_info.items()}


def features_of(schema):
    return {f.name: f for f in schema.feature}


# --- schema inference ----------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["penguins", "taxi"])
def test_inferred_schema_matches_tfdv(oracle, dataset, request):
    frame = request.getfixturevalue(dataset)
    stats = oracle.stats(frame, f"{dataset}_base")
    theirs = oracle.infer(f"{dataset}_base")
    ours = infer_schema(stats)
    # Types and string domains first (clear failure messages), then everything.
    assert {f.name: f.type for f in ours.feature} == {f.name: f.type for f in theirs.feature}
    assert {d.name: list(d.value) for d in ours.string_domain} == {d.name: list(d.value) for d in theirs.string_domain}
    assert schema_to_text(ours) == schema_to_text(theirs)


def test_updated_schema_matches_tfdv(oracle, penguins):
    """SchemaGen relaxes the first split's schema with the next splits, as tfdv.update_schema."""
    schema = infer_schema(oracle.stats(penguins, "penguins_base"))
    mutated = penguins.drop(columns=["island"])
    mutated["ring_id"] = np.arange(len(mutated))
    mutated["sex"] = mutated["sex"].where(mutated.index % 7 != 0, "unknown")
    mutated.loc[mutated.index % 5 == 0, "species"] = np.nan
    mutated["year"] = "y" + mutated["year"].astype(str)
    stats = oracle.stats(mutated, "penguins_update")
    theirs = oracle.update(schema, "penguins_update")
    ours = update_schema(schema, stats)
    assert "unknown" in [d for d in ours.string_domain if d.name == "sex"][0].value
    assert schema_to_text(ours) == schema_to_text(theirs)


# --- validation ------------------------------------------------------------------------


def penguin_schema(oracle, penguins):
    stats = oracle.stats(penguins, "penguins_base")
    schema = infer_schema(stats)
    features = features_of(schema)
    features["year"].int_domain.min = 2007
    features["year"].int_domain.max = 2009
    features["body_mass_g"].float_domain.min = 2700
    features["body_mass_g"].float_domain.max = 6300
    return schema


def test_penguin_anomalies_match_tfdv(oracle, penguins):
    schema = penguin_schema(oracle, penguins)
    mutated = penguins.drop(columns=["island"])
    mutated["ring_id"] = np.arange(len(mutated))                              # new column
    mutated["sex"] = mutated["sex"].where(mutated.index % 7 != 0, "unknown")  # unexpected string
    mutated.loc[mutated.index % 5 == 0, "species"] = np.nan                   # required feature missing
    mutated.loc[3, "body_mass_g"] = 100.0                                     # below float_domain.min
    mutated.loc[4, "year"] = 2010                                             # above int_domain.max
    stats = oracle.stats(mutated, "penguins_mutated")
    theirs = oracle.validate("penguins_mutated", schema)
    ours = validate_statistics(stats, schema)
    assert reason_types(ours) == reason_types(theirs) == {
        "island": ["SCHEMA_MISSING_COLUMN"],
        "ring_id": ["SCHEMA_NEW_COLUMN"],
        "sex": ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"],
        "species": ["INVALID_FEATURE_SHAPE", "FEATURE_TYPE_LOW_FRACTION_PRESENT"],
        "body_mass_g": ["FLOAT_TYPE_SMALL_FLOAT"],
        "year": ["INT_TYPE_BIG_INT"],
    }
    assert summary(ours) == summary(theirs)
    assert ours.baseline == theirs.baseline


def test_penguin_type_changes_match_tfdv(oracle, penguins):
    schema = penguin_schema(oracle, penguins)
    mutated = penguins.copy()
    mutated["year"] = "y" + mutated["year"].astype(str)                       # INT -> STRING
    mutated["flipper_length_mm"] = mutated["flipper_length_mm"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.0f}mm")
    stats = oracle.stats(mutated, "penguins_types")
    theirs = oracle.validate("penguins_types", schema)
    ours = validate_statistics(stats, schema)
    assert reason_types(ours) == reason_types(theirs)
    # year also has an int_domain, so its strings are reported as not ints.
    assert reason_types(ours)["year"] == ["UNEXPECTED_DATA_TYPE", "INT_TYPE_NOT_INT_STRING"]
    assert "UNEXPECTED_DATA_TYPE" in reason_types(ours)["flipper_length_mm"]
    assert summary(ours) == summary(theirs)


def test_penguin_drift_matches_tfdv(oracle, penguins):
    schema = penguin_schema(oracle, penguins)
    features = features_of(schema)
    features["species"].drift_comparator.infinity_norm.threshold = 0.05
    features["body_mass_g"].drift_comparator.jensen_shannon_divergence.threshold = 0.05
    features["island"].drift_comparator.infinity_norm.threshold = 0.5
    shifted = penguins[penguins["species"] != "Adelie"].copy()
    shifted["body_mass_g"] = shifted["body_mass_g"] * 1.2
    oracle.stats(penguins, "penguins_previous")
    stats = oracle.stats(shifted, "penguins_shifted")
    theirs = oracle.validate("penguins_shifted", schema, "penguins_previous")
    ours = validate_statistics(stats, schema, oracle.read_stats("penguins_previous"))
    assert reason_types(ours)["species"] == ["COMPARATOR_L_INFTY_HIGH"]
    assert reason_types(ours)["body_mass_g"] == ["FLOAT_TYPE_BIG_FLOAT", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"]
    assert "island" not in ours.anomaly_info
    assert summary(ours) == summary(theirs)
    assert drift_summary(ours) == drift_summary(theirs)


def test_taxi_anomalies_match_tfdv(oracle, taxi):
    stats = oracle.stats(taxi, "taxi_base")
    schema = infer_schema(stats)
    features = features_of(schema)
    features["trip_start_hour"].int_domain.min = 0
    features["trip_start_hour"].int_domain.max = 23
    features["fare"].float_domain.min = 0
    mutated = taxi.drop(columns=["tips"])
    mutated["surge"] = 1.5
    mutated.loc[mutated.index[:10], "payment_type"] = "Bitcoin"
    mutated.loc[mutated.index[20], "trip_start_hour"] = 24
    mutated.loc[mutated.index[30], "fare"] = -5.0
    mutated.loc[mutated.index[:100], "trip_start_month"] = np.nan              # INT column turns FLOAT, and gaps
    mutated_stats = oracle.stats(mutated, "taxi_mutated")
    theirs = oracle.validate("taxi_mutated", schema)
    ours = validate_statistics(mutated_stats, schema)
    assert reason_types(ours) == reason_types(theirs)
    assert set(reason_types(ours)) == {"tips", "surge", "payment_type", "trip_start_hour", "fare", "trip_start_month"}
    assert summary(ours) == summary(theirs)


def test_taxi_span_drift_matches_tfdv(oracle):
    spans = DATA / "chicago_taxi_spans"
    if not spans.exists():
        pytest.skip(f"shared data missing: {spans}")
    previous = oracle.stats(pd.read_csv(spans / "span-1" / "data.csv"), "taxi_span1")
    current = oracle.stats(pd.read_csv(spans / "span-2" / "data.csv"), "taxi_span2")
    schema = infer_schema(previous)
    features = features_of(schema)
    for name in ("payment_type", "company"):
        features[name].drift_comparator.infinity_norm.threshold = 0.001
    for name in ("fare", "trip_miles", "trip_start_hour"):
        features[name].drift_comparator.jensen_shannon_divergence.threshold = 0.001
    theirs = oracle.validate("taxi_span2", schema, "taxi_span1")
    ours = validate_statistics(current, schema, previous)
    assert reason_types(ours) == reason_types(theirs)
    assert summary(ours) == summary(theirs)
    assert drift_summary(ours) == drift_summary(theirs)
    assert len(drift_summary(ours)) == 5


def test_tfdv_reads_our_schema_and_anomalies(oracle, penguins):
    stats = oracle.stats(penguins, "penguins_base")
    schema = infer_schema(stats)
    mutated = penguins.drop(columns=["sex"])
    mutated_stats = oracle.stats(mutated, "penguins_nosex")
    anomalies = validate_statistics(mutated_stats, schema)
    schema_path = oracle.folder / "ours_schema.pbtxt"
    anomalies_path = oracle.folder / "ours_anomalies.pb"
    schema_path.write_text(schema_to_text(schema))
    anomalies_path.write_bytes(anomalies.SerializeToString())
    assert oracle.run("load", schema_path, anomalies_path).strip().splitlines()[-1] == "features=8 anomalies=['sex']"


def test_list_features_schema_and_anomalies_match_tfdv(oracle):
    """Multivalent features: value-count and shape anomalies (the inferred schema's parity with
    TFDV's is checked in test_tfdv_parity.py::test_list_columns_parity)."""
    import pyarrow as pa

    stats = oracle.parquet_stats(list_table(60), "lists_base")
    schema = infer_schema(stats)
    features = features_of(schema)
    assert [d.size for d in features["image"].shape.dim] == [784]
    features["ids"].value_count.min, features["ids"].value_count.max = 1, 3
    features["scores"].value_count.max = 2
    base = list_table(60, seed=4)
    image = base.column("image").combine_chunks()
    rows = [list(image[i].values.to_numpy()) for i in range(len(image))]
    rows[5] = rows[5][:700]  # one image of another size
    mutated = base.set_column(0, "image", pa.array(rows, pa.list_(pa.float32())))
    mutated_stats = oracle.parquet_stats(mutated, "lists_mutated")
    theirs = oracle.validate("lists_mutated", schema)
    ours = validate_statistics(mutated_stats, schema)
    assert reason_types(ours) == reason_types(theirs)
    assert reason_types(ours) == {
        "image": ["INVALID_FEATURE_SHAPE"],
        "ids": ["FEATURE_TYPE_LOW_NUMBER_VALUES", "FEATURE_TYPE_HIGH_NUMBER_VALUES"],
        "scores": ["FEATURE_TYPE_HIGH_NUMBER_VALUES"],
    }
    assert summary(ours) == summary(theirs)
