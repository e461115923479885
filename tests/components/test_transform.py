"""Tests of the Transform component, its analyzers and TransformOutput."""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sluice import tft
from sluice.components.artifacts import Examples, Schema, TransformGraph
from sluice.components.sdk import ComponentError, ExecutionContext, Output, component
from sluice.components.tft.graph import save_transform_graph
from sluice.components.tft.tracing import plan_analysis
from sluice.components.transform import Transform, run_transform, transforms

tf = pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[2]
TAXI_CSV = REPO.parent / "shared" / "data" / "chicago_taxi" / "data.csv"
TAXI_MODULE = REPO / "pipelines" / "taxi" / "preprocessing.py"
PENGUIN_MODULE = REPO / "pipelines" / "penguin" / "preprocessing.py"
ARROW_TO_SCHEMA = {"int64": "INT", "double": "FLOAT", "float": "FLOAT", "string": "BYTES", "large_string": "BYTES"}


def test_pipeline():
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.test_pipeline import TestPipeline

    return TestPipeline(runner=FnApiRunner())


test_pipeline.__test__ = False  # a helper, not a test


def write_examples(root: Path, splits: dict[str, pa.Table]) -> tuple[Examples, Schema]:
    """Parquet Examples and a minimal Schema pbtxt typed from the Arrow columns."""
    for split, table in splits.items():
        folder = root / "examples" / f"Split-{split}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-00000-of-00001.parquet")
    (root / "schema").mkdir()
    first = next(iter(splits.values()))
    (root / "schema" / "schema.pbtxt").write_text("".join(
        f'feature {{ name: "{f.name}" type: {ARROW_TO_SCHEMA[str(f.type)]} }}\n' for f in first.schema
    ))
    return (Examples(uri=str(root / "examples"), split_names=list(splits), span=2),
            Schema(uri=str(root / "schema")))


def output_artifacts(root: Path) -> dict:
    outs = {}
    for name, cls in (("transform_graph", TransformGraph), ("transformed_examples", Examples),
                      ("post_transform_schema", Schema)):
        (root / name).mkdir(parents=True)
        outs[name] = cls(uri=str(root / name))
    return outs


def taxi_table() -> pa.Table:
    return pacsv.read_csv(TAXI_CSV)


def taxi_splits(table: pa.Table) -> dict[str, pa.Table]:
    index = np.arange(table.num_rows)
    return {"train": table.filter(pa.array(index % 3 != 0)), "eval": table.filter(pa.array(index % 3 == 0))}


# --- analyzers against numpy -------------------------------------------------------


def synthetic_table(rows: int = 1200, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    floats = rng.normal(5.0, 3.0, rows)
    ints = rng.integers(-5, 20, rows)
    words = rng.choice(["a", "bb", "c", "dd", "e", "f"], rows, p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    return pa.table({
        "f": pa.array(floats, mask=rng.random(rows) < 0.1),
        "i": pa.array(ints, mask=rng.random(rows) < 0.1),
        "s": pa.array(words.tolist(), mask=rng.random(rows) < 0.1),
    })


RAW_TYPES = {"f": "float32", "i": "int64", "s": "string"}


def all_analyzers_fn(inputs):
    f_dense = tft.fill_missing(inputs["f"], 0.0)
    i_dense = tft.fill_missing(inputs["i"], 0)
    s_dense = tft.fill_missing(inputs["s"], "")
    s_top3 = tft.compute_and_apply_vocabulary(s_dense, top_k=3, num_oov_buckets=2)
    zeros = tf.zeros_like(f_dense)
    return {
        "f_z": tft.fill_missing(tft.scale_to_z_score(inputs["f"]), 0.0),
        "i_z": tft.scale_to_z_score(i_dense),
        "f_01": tft.scale_to_0_1(f_dense),
        "f_filled": tft.fill_missing(inputs["f"], -1.0),
        "f_mean": zeros + tft.mean(inputs["f"]),
        "i_min": tf.cast(zeros, tf.int64) + tft.min(inputs["i"]),
        "i_max": tf.cast(zeros, tf.int64) + tft.max(inputs["i"]),
        "s_top3": s_top3,
        "s_frequent": tft.compute_and_apply_vocabulary(s_dense, frequency_threshold=100, vocab_filename="frequent"),
        "f_bucket": tft.bucketize(f_dense, 4),
        "i_bucket": tft.apply_buckets(i_dense, [0, 5, 10]),
        "s_hash": tft.hash_strings(s_dense, 7),
        "i_vocab": tft.compute_and_apply_vocabulary(i_dense, top_k=5, vocab_filename="ints"),
        "s_empty": tft.compute_and_apply_vocabulary(s_dense, frequency_threshold=10**9),
        "s_empty_oov": tft.compute_and_apply_vocabulary(s_dense, frequency_threshold=10**9, num_oov_buckets=3),
        # Phase 2: analyzers whose input depends on another analyzer's result.
        "f_centered_z": tft.scale_to_z_score(f_dense - tft.mean(f_dense)),
        "vocab_index_mean": zeros + tft.mean(tf.cast(s_top3, tf.float32)),
    }


def analyze_and_transform(preprocessing_fn, table: pa.Table, raw_types: dict, out_dir: Path):
    """TFT's AnalyzeAndTransformDataset: values via Beam, graph saved, applied to ``table``."""
    import pickle

    import apache_beam as beam

    values_file = out_dir / "values.pickle"
    with test_pipeline() as p:
        halves = [table.slice(0, table.num_rows // 2), table.slice(table.num_rows // 2)]
        _ = (p | beam.Create(halves) | transforms.AnalyzeDataset(preprocessing_fn, raw_types)
             | beam.Map(transforms.write_pickle, str(values_file)))
    values = pickle.loads(values_file.read_bytes())
    analysis = save_transform_graph(preprocessing_fn, raw_types, values, str(out_dir / "graph"))
    output = tft.TransformOutput(str(out_dir / "graph"))
    transformed = output.transform_raw_features(tft.arrow_to_raw_tensors(table, raw_types))
    return values, analysis, output, {k: v.numpy() for k, v in transformed.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    table = synthetic_table()
    out = tmp_path_factory.mktemp("synthetic")
    values, analysis, output, transformed = analyze_and_transform(all_analyzers_fn, table, RAW_TYPES, out)
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in RAW_TYPES}
    return {"table": table, "values": values, "analysis": analysis, "output": output,
            "transformed": transformed, "columns": columns}


def present(column) -> np.ndarray:
    return np.array([v for v in column if v is not None and not (isinstance(v, float) and np.isnan(v))])


def test_scale_to_z_score_matches_numpy(synthetic):
    f = synthetic["columns"]["f"]
    mask = ~np.isnan(f.astype(np.float64))
    values = f[mask].astype(np.float32).astype(np.float64)
    expected = (values - values.mean()) / values.std()
    got = synthetic["transformed"]["f_z"]
    np.testing.assert_allclose(got[mask], expected, rtol=1e-4, atol=1e-4)
    assert np.all(got[~mask] == 0.0)
    ints = np.nan_to_num(synthetic["columns"]["i"].astype(np.float64), nan=0.0)
    np.testing.assert_allclose(synthetic["transformed"]["i_z"], (ints - ints.mean()) / ints.std(), rtol=1e-4, atol=1e-4)
    assert synthetic["transformed"]["i_z"].dtype == np.float32


def test_scale_to_0_1_mean_min_max_and_fill_missing(synthetic):
    f = synthetic["columns"]["f"].astype(np.float64)
    f32 = np.nan_to_num(f, nan=0.0).astype(np.float32)
    got = synthetic["transformed"]["f_01"]
    np.testing.assert_allclose(got, (f32 - f32.min()) / (f32.max() - f32.min()), rtol=1e-5, atol=1e-6)
    assert got.min() == 0.0 and got.max() == pytest.approx(1.0)
    np.testing.assert_allclose(synthetic["transformed"]["f_mean"], np.nanmean(f.astype(np.float32)), rtol=1e-5)
    np.testing.assert_array_equal(synthetic["transformed"]["f_filled"],
                                  np.where(np.isnan(f), -1.0, f).astype(np.float32))
    ints = present(synthetic["columns"]["i"].tolist())
    assert set(synthetic["transformed"]["i_min"]) == {ints.min()}
    assert set(synthetic["transformed"]["i_max"]) == {ints.max()}


def reference_vocabulary(words: list) -> list:
    """tf.Transform's order: by count, ties by value descending; '' and line-break tokens dropped."""
    counts = collections.Counter(w for w in words if not isinstance(w, str) or (w and not set(w) & {"\n", "\r"}))
    return [w for c, w in sorted(((c, w) for w, c in counts.items()), reverse=True)]


def test_vocabulary_top_k_oov_and_frequency_threshold(synthetic):
    words = ["" if w is None else w for w in synthetic["columns"]["s"].tolist()]
    ranked = reference_vocabulary(words)
    top3 = ranked[:3]
    got = synthetic["transformed"]["s_top3"]
    for word, index in zip(words, got):
        if word in top3:
            assert index == top3.index(word)
        else:  # out of vocabulary: one of the 2 OOV buckets after the 3 entries
            assert 3 <= index < 5
    counts = collections.Counter(words)
    frequent = [w for w in ranked if counts[w] >= 100]
    assert frequent and len(frequent) < len(ranked) and "" in words  # '' is never in a vocabulary
    expected = [frequent.index(w) if w in frequent else -1 for w in words]
    np.testing.assert_array_equal(synthetic["transformed"]["s_frequent"], expected)
    output = synthetic["output"]
    assert output.vocabulary_by_name("frequent") == [w.encode() for w in frequent]
    assert output.vocabulary_size_by_name("frequent") == len(frequent)
    assert output.vocabulary_size_by_name("s_top3") == 3  # also by transformed feature name
    assert output.num_buckets_for_transformed_feature("s_top3") == 5


def test_integer_and_empty_vocabularies(synthetic):
    ints = synthetic["table"].column("i").fill_null(0).to_pylist()
    top5 = reference_vocabulary(ints)[:5]
    np.testing.assert_array_equal(synthetic["transformed"]["i_vocab"],
                                  [top5.index(v) if v in top5 else -1 for v in ints])
    assert synthetic["output"].vocabulary_by_name("ints") == [str(v).encode() for v in top5]
    assert set(synthetic["transformed"]["s_empty"]) == {-1}
    empty_oov = synthetic["transformed"]["s_empty_oov"]
    size = synthetic["output"].vocabulary_size_by_name("s_empty_oov")  # an empty vocabulary holds a dummy token
    assert empty_oov.min() >= size and empty_oov.max() < size + 3


def test_bucketize_boundaries_within_sketch_error(synthetic):
    f = np.nan_to_num(synthetic["columns"]["f"].astype(np.float64), nan=0.0).astype(np.float32)
    quantile_values = [a["value"] for a in synthetic["analysis"]["analyzers"] if a["kind"] == "quantiles"]
    assert len(quantile_values) == 1 and len(quantile_values[0]) == 3
    ordered = np.sort(f)
    for k, boundary in enumerate(quantile_values[0], 1):
        rank = np.searchsorted(ordered, boundary) / len(ordered)
        assert abs(rank - k / 4) <= 0.01 + 1 / len(ordered)
    boundaries = np.array(quantile_values[0], np.float32)
    np.testing.assert_array_equal(synthetic["transformed"]["f_bucket"], np.searchsorted(boundaries, f, side="right"))
    assert synthetic["output"].num_buckets_for_transformed_feature("f_bucket") == 4


def test_apply_buckets_and_hash_strings(synthetic):
    ints = np.nan_to_num(synthetic["columns"]["i"].astype(np.float64), nan=0.0)
    np.testing.assert_array_equal(synthetic["transformed"]["i_bucket"], np.searchsorted([0, 5, 10], ints, side="right"))
    words = ["" if w is None else w for w in synthetic["columns"]["s"].tolist()]
    hashed = synthetic["transformed"]["s_hash"]
    assert hashed.min() >= 0 and hashed.max() < 7
    # Deterministic: the same string always lands in the same bucket, run after run.
    again = tf.strings.to_hash_bucket_fast(tf.constant(words), 7).numpy()
    np.testing.assert_array_equal(hashed, again)
    by_word = {}
    for word, bucket in zip(words, hashed):
        assert by_word.setdefault(word, bucket) == bucket


def test_two_phase_analyzers(synthetic):
    phases = plan_analysis(all_analyzers_fn, RAW_TYPES)
    assert len(phases) == 2
    assert [s.kind for s in phases[1]] == ["mean_and_var", "mean_and_var"]
    np.testing.assert_allclose(synthetic["transformed"]["f_centered_z"],
                               tft.TransformOutput(synthetic["output"].uri).transform_raw_features(
                                   tft.arrow_to_raw_tensors(synthetic["table"], RAW_TYPES))["f_centered_z"].numpy())
    f32 = np.nan_to_num(synthetic["columns"]["f"].astype(np.float64), nan=0.0).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(synthetic["transformed"]["f_centered_z"], (f32 - f32.mean()) / f32.std(), atol=1e-4)
    top3_mean = synthetic["transformed"]["s_top3"].astype(np.float64).mean()
    np.testing.assert_allclose(synthetic["transformed"]["vocab_index_mean"], top3_mean, rtol=1e-5)


def test_analyze_dataset_ptransform_with_test_pipeline():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    def preprocessing_fn(inputs):
        x = tft.fill_missing(inputs["x"], 0.0)
        return {"x_z": tft.scale_to_z_score(x),
                "w": tft.compute_and_apply_vocabulary(tft.fill_missing(inputs["w"], ""))}

    batches = [pa.table({"x": pa.array([1.0, 2.0, None]), "w": ["a", "b", "a"]}),
               pa.table({"x": pa.array([5.0]), "w": pa.array([None], pa.string())})]
    transform = transforms.AnalyzeDataset(preprocessing_fn, {"x": "float32", "w": "string"})
    assert [[s.kind for s in phase] for phase in transform.phases] == [["mean_and_var", "vocabulary"]]
    x = np.array([1.0, 2.0, 0.0, 5.0])
    expected = {
        "000_mean_and_var": (pytest.approx(x.mean()), pytest.approx(x.var())),
        "001_vocabulary": {"tokens": [b"a", b"b"], "keys": [b"a", b"b"], "counts": [2, 1], "input_dtype": "string"},
    }
    with test_pipeline() as p:
        values = p | beam.Create(batches) | transform
        assert_that(values, equal_to([expected]))


def test_analyzer_outside_transform_is_a_clear_error():
    with pytest.raises(RuntimeError, match="only work inside a preprocessing_fn"):
        tft.mean(tf.constant([1.0]))


# --- the component end to end on the taxi data --------------------------------------


@pytest.fixture(scope="module")
def taxi_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("taxi")
    table = taxi_table()
    splits = taxi_splits(table)
    examples, schema = write_examples(root, splits)
    outs = output_artifacts(root / "out")
    ctx = ExecutionContext()
    started = time.perf_counter()
    run_transform(examples=examples, schema=schema, module_file=str(TAXI_MODULE), ctx=ctx, **outs)
    seconds = time.perf_counter() - started
    return {"root": root, "splits": splits, "examples": examples, "ctx": ctx, "seconds": seconds, **outs}


def test_taxi_outputs_layout_and_schema(taxi_run):
    graph, examples = taxi_run["transform_graph"], taxi_run["transformed_examples"]
    assert os.path.isfile(os.path.join(graph.uri, "transform_fn", "saved_model.pb"))
    assert examples.split_names == ["train", "eval"] and examples.span == 2 and examples.file_format == "parquet"
    for split in ("train", "eval"):
        files = os.listdir(examples.split_uri(split))
        assert files == ["part-00000-of-00001.parquet"]
    analysis = json.loads(Path(graph.uri, "analysis.json").read_text())
    kinds = sorted(a["kind"] for a in analysis["analyzers"])
    assert kinds == ["mean_and_var"] * 3 + ["quantiles"] * 4 + ["vocabulary"] * 2
    expected = {f"{k}_xf" for k in ["trip_miles", "fare", "trip_seconds", "payment_type", "company",
                                     "pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude",
                                     "trip_start_hour", "trip_start_day", "trip_start_month", "pickup_census_tract",
                                     "dropoff_census_tract", "pickup_community_area", "dropoff_community_area", "tips"]}
    assert set(analysis["transformed_features"]) == expected
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    post = text_format.Parse(Path(taxi_run["post_transform_schema"].file).read_text(), schema_pb2.Schema())
    by_name = {f.name: f for f in post.feature}
    assert set(by_name) == expected
    assert by_name["fare_xf"].type == schema_pb2.FLOAT
    assert by_name["pickup_latitude_xf"].int_domain.max == 9
    payment_size = tft.TransformOutput(graph.uri).vocabulary_size_by_name("payment_type_xf")
    assert by_name["payment_type_xf"].int_domain.max == payment_size + 10 - 1
    assert Path(graph.uri, "transformed_metadata", "schema.pbtxt").read_text() == Path(
        taxi_run["post_transform_schema"].file).read_text()
    assert taxi_run["ctx"].metrics["num_analyzers"] == 9


def test_taxi_transformed_values(taxi_run):
    train_raw = taxi_run["splits"]["train"]
    train = pq.read_table(taxi_run["transformed_examples"].split_uri("train"))
    assert train.num_rows == train_raw.num_rows
    miles = train.column("trip_miles_xf").to_numpy()
    assert abs(miles.mean()) < 1e-3 and abs(miles.std() - 1) < 1e-3
    fare = np.nan_to_num(train_raw.column("fare").to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    tips = np.nan_to_num(train_raw.column("tips").to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    expected_label = (tips.astype(np.float32) > fare.astype(np.float32) * np.float32(0.2)).astype(np.int64)
    np.testing.assert_array_equal(train.column("tips_xf").to_numpy(), expected_label)
    hours = train_raw.column("trip_start_hour").fill_null(0).to_numpy()
    np.testing.assert_array_equal(train.column("trip_start_hour_xf").to_numpy(), hours)
    companies = ["" if c is None else c for c in train_raw.column("company").to_pylist()]
    vocab = reference_vocabulary(companies)[:1000]
    ids = train.column("company_xf").to_numpy()
    known = np.array([c in vocab for c in companies])
    assert not known.all()  # '' (a missing company) is out of vocabulary, as in tf.Transform
    np.testing.assert_array_equal(ids[known], [vocab.index(c) for c, k in zip(companies, known) if k])
    assert ids[~known].min() >= len(vocab) and ids[~known].max() < len(vocab) + 10
    buckets = train.column("dropoff_latitude_xf").to_numpy()
    assert buckets.min() >= 0 and buckets.max() <= 9
    assert train.schema.field("fare_xf").type == pa.float32()


def test_saved_transform_fn_equals_materialized_examples(taxi_run):
    output = tft.TransformOutput(taxi_run["transform_graph"])
    raw = taxi_run["splits"]["eval"]
    transformed = output.transform_raw_features(tft.arrow_to_raw_tensors(raw, output.raw_feature_types))
    materialized = pq.read_table(taxi_run["transformed_examples"].split_uri("eval"))
    assert set(transformed) == set(materialized.column_names)
    for name, tensor in transformed.items():
        np.testing.assert_array_equal(tensor.numpy(), materialized.column(name).to_numpy(), err_msg=name)


def serialize_rows(table: pa.Table, drop: tuple[str, ...] = ()) -> list[bytes]:
    serialized = []
    for row in table.to_pylist():
        feature = {}
        for name, value in row.items():
            if value is None or name in drop:
                continue
            if isinstance(value, str):
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif isinstance(value, int):
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            else:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return serialized


def test_transform_output_round_trip_from_serialized_examples(taxi_run, tmp_path):
    output = tft.TransformOutput(taxi_run["transform_graph"].uri)
    raw = taxi_run["splits"]["eval"].slice(0, 50)
    materialized = pq.read_table(taxi_run["transformed_examples"].split_uri("eval")).slice(0, 50)
    spec = output.raw_feature_spec()
    assert spec["company"].dtype == tf.string and isinstance(spec["fare"], tf.io.VarLenFeature)
    assert output.transformed_feature_spec()["fare_xf"] == tf.io.FixedLenFeature([], tf.float32)
    # At serving the label is absent: the layer feeds it as all-missing.
    raw_spec = {k: v for k, v in spec.items() if k != "tips"}
    parsed = tf.io.parse_example(tf.constant(serialize_rows(raw, drop=("tips",))), raw_spec)
    transformed = output.transform_raw_features(parsed)
    for name in ("fare_xf", "company_xf", "pickup_latitude_xf", "trip_start_day_xf"):
        np.testing.assert_array_equal(transformed[name].numpy(), materialized.column(name).to_numpy(), err_msg=name)

    # The layer is trackable: saved inside another SavedModel it still works.
    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.tft_layer = output.transform_features_layer()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, serialized):
            features = tf.io.parse_example(serialized, raw_spec)
            return {"fare_xf": self.tft_layer(features)["fare_xf"]}

    tf.saved_model.save(Serving(), str(tmp_path / "serving"))
    loaded = tf.saved_model.load(str(tmp_path / "serving"))
    got = loaded.serve(tf.constant(serialize_rows(raw)))["fare_xf"].numpy()
    np.testing.assert_array_equal(got, materialized.column("fare_xf").to_numpy())
    # The transform graph's own signature parses serialized examples too.
    signature = tf.saved_model.load(output.transform_savedmodel_dir).signatures["serving_default"]
    np.testing.assert_array_equal(signature(examples=tf.constant(serialize_rows(raw)))["company_xf"].numpy(),
                                  materialized.column("company_xf").to_numpy())


def test_taxi_transform_is_fast(taxi_run):
    # Measured ~2-3 s on an idle 2-core machine (tensorflow-transform: ~39 s); loose bound for shared CI.
    assert taxi_run["seconds"] < 20


# --- the penguin module file --------------------------------------------------------


def test_penguin_preprocessing(tmp_path):
    palmerpenguins = pytest.importorskip("palmerpenguins")
    frame = palmerpenguins.load_penguins()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    splits = taxi_splits(table)  # rows are sorted by species: interleave the splits
    examples, schema = write_examples(tmp_path, splits)
    outs = output_artifacts(tmp_path / "out")
    run_transform(examples=examples, schema=schema, module_file=str(PENGUIN_MODULE), **outs)
    output = tft.TransformOutput(outs["transform_graph"])
    assert output.vocabulary_size_by_name("species") == 3
    train = pq.read_table(outs["transformed_examples"].split_uri("train"))
    species = output.vocabulary_by_name("species")
    expected = [species.index(s.encode()) for s in splits["train"].column("species").to_pylist()]
    np.testing.assert_array_equal(train.column("species_xf").to_numpy(), expected)
    mass = train.column("body_mass_g_xf").to_numpy()
    assert not np.isnan(mass).any() and abs(mass.mean()) < 0.05
    assert set(train.column_names) == {"bill_length_mm_xf", "bill_depth_mm_xf", "flipper_length_mm_xf",
                                       "body_mass_g_xf", "island_xf", "sex_xf", "species_xf"}


# --- bad input -----------------------------------------------------------------------


@pytest.fixture
def small_taxi(tmp_path):
    table = taxi_table().slice(0, 300)
    examples, schema = write_examples(tmp_path, taxi_splits(table))
    return examples, schema, tmp_path


def run_with_module(small_taxi, source: str, **params):
    examples, schema, root = small_taxi
    module = root / "bad_module.py"
    module.write_text(source)
    outs = output_artifacts(root / "out")
    run_transform(examples=examples, schema=schema, module_file=str(module), **{**outs, **params})
    return module


def test_module_without_preprocessing_fn(small_taxi):
    with pytest.raises(ComponentError, match=r"bad_module\.py defines no preprocessing_fn") as info:
        run_with_module(small_taxi, "import tensorflow as tf\n\ndef transform(inputs):\n    return {}\n")
    assert "\n" not in str(info.value)


def test_module_with_syntax_error_names_file_and_line(small_taxi):
    with pytest.raises(ComponentError, match=r"bad_module\.py, line 3: syntax error") as info:
        run_with_module(small_taxi, "import tensorflow as tf\n\ndef preprocessing_fn(inputs:\n    return {}\n")
    assert "\n" not in str(info.value)


def test_preprocessing_fn_returning_non_tensor_names_the_output(small_taxi):
    source = ("from sluice import tft\n\n"
              "def preprocessing_fn(inputs):\n"
              "    return {'fare_xf': tft.fill_missing(inputs['fare'], 0.0), 'answer': 42}\n")
    with pytest.raises(ComponentError, match=r"bad_module\.py: output 'answer' is a int, not a tf.Tensor") as info:
        run_with_module(small_taxi, source)
    assert "\n" not in str(info.value)


def test_preprocessing_fn_failing_names_file_and_line(small_taxi):
    source = "def preprocessing_fn(inputs):\n    return {'x': inputs['no_such_feature']}\n"
    with pytest.raises(ComponentError, match=r"bad_module\.py, line 2 failed: KeyError: 'no_such_feature'"):
        run_with_module(small_taxi, source)


def test_runtime_failure_in_beam_is_one_line_naming_file_and_line(small_taxi):
    source = ("import tensorflow as tf\nfrom sluice import tft\n\n"
              "def preprocessing_fn(inputs):\n"
              "    fare = tft.fill_missing(inputs['fare'], 0.0)\n"
              "    check = tf.debugging.assert_less(fare, -1.0, message='fares are negative')\n"
              "    with tf.control_dependencies([check]):\n"
              "        return {'fare_xf': tft.scale_to_z_score(tf.identity(fare))}\n")
    with pytest.raises(ComponentError,
                       match=r"bad_module\.py on .* failed: line 6: assertion failed: \[fares are negative\]") as info:
        run_with_module(small_taxi, source)
    assert "\n" not in str(info.value)


def test_module_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, sluice.components.transform, sluice.components.tft; "
            "print(sorted(m for m in ('tensorflow', 'apache_beam', 'pyarrow', 'mlflow') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_dense_output_without_a_static_shape_is_rejected(small_taxi):
    source = ("import tensorflow as tf\nfrom sluice import tft\n\n"
              "def preprocessing_fn(inputs):\n"
              "    fare = tft.fill_missing(inputs['fare'], 0.0)\n"
              "    return {'padded': tf.sparse.to_dense(inputs['fare'])}\n")
    with pytest.raises(ComponentError, match=r"output 'padded' has shape \(None, None\); a dense output needs a "
                                             r"static shape"):
        run_with_module(small_taxi, source)


def test_exactly_one_of_module_file_and_preprocessing_fn(small_taxi):
    examples, schema, root = small_taxi
    outs = output_artifacts(root / "out")
    with pytest.raises(ComponentError, match="exactly one of module_file or preprocessing_fn"):
        run_transform(examples=examples, schema=schema, **outs)
    with pytest.raises(ComponentError, match="exactly one of module_file or preprocessing_fn"):
        run_transform(examples=examples, schema=schema, module_file=str(TAXI_MODULE),
                      preprocessing_fn="sluice.pipelines.taxi.preprocessing.preprocessing_fn", **outs)
    with pytest.raises(ComponentError, match=r"parameter analyze_splits: unknown split\(s\) \['test'\]"):
        run_transform(examples=examples, schema=schema, module_file=str(TAXI_MODULE),
                      analyze_splits=["test"], **outs)


def test_column_type_mismatch_is_one_line(small_taxi):
    examples, schema, root = small_taxi
    text = Path(schema.file).read_text().replace('name: "company" type: BYTES', 'name: "company" type: INT')
    Path(schema.file).write_text(text)
    outs = output_artifacts(root / "out")
    with pytest.raises(ComponentError, match=r"column 'company' has type string, but the schema says int64"):
        run_transform(examples=examples, schema=schema, module_file=str(TAXI_MODULE), **outs)


# --- inside the local runner ------------------------------------------------------------


def make_taxi_examples(examples: Output[Examples], schema: Output[Schema], rows: int = 2000) -> None:
    """A tiny upstream component: taxi CSV -> Parquet Examples + a Schema."""
    splits = taxi_splits(taxi_table().slice(0, rows))
    for split, table in splits.items():
        folder = Path(examples.split_uri(split))
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-00000-of-00001.parquet")
    Path(schema.file).write_text("".join(
        f'feature {{ name: "{f.name}" type: {ARROW_TO_SCHEMA[str(f.type)]} }}\n' for f in splits["train"].schema
    ))
    examples.split_names = list(splits)


MakeTaxiExamples = component(make_taxi_examples, name="MakeTaxiExamples")


def test_transform_in_local_runner(tmp_path):
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    source = MakeTaxiExamples(rows=1500)
    transform = Transform(examples=source.outputs["examples"], schema=source.outputs["schema"],
                          preprocessing_fn="sluice.pipelines.taxi.preprocessing.preprocessing_fn")
    pipeline = Pipeline(name="transform-test", components=[source, transform], pipeline_root=str(tmp_path / "root"))
    result = run_pipeline(pipeline)
    assert result.ok, result.error
    outputs = result.outputs(transform.id)
    graph = outputs["transform_graph"][0]
    assert os.path.isdir(os.path.join(graph.uri, "transform_fn"))
    transformed = outputs["transformed_examples"][0]
    assert transformed.split_names == ["train", "eval"]
    assert pq.read_table(transformed.split_uri("eval")).num_rows == 500
    assert tft.TransformOutput(graph.uri).vocabulary_size_by_name("company_xf") > 1


def test_transform_node_parameters_are_validated():
    from sluice.components.sdk import DefinitionError

    source = MakeTaxiExamples()
    node = Transform(examples=source.outputs["examples"], schema=source.outputs["schema"],
                     module_file=str(TAXI_MODULE), analyze_splits=["train", "eval"])
    assert node.parameters["module_file"] == str(TAXI_MODULE)
    assert node.parameters["transform_splits"] == ["train", "eval"]
    assert set(node.outputs) == {"transform_graph", "transformed_examples", "post_transform_schema"}
    with pytest.raises(DefinitionError, match="analyze_splits"):
        Transform(examples=source.outputs["examples"], schema=source.outputs["schema"], analyze_splits="train")


def test_empty_analysis_dataset_gives_a_usable_graph(tmp_path):
    import pickle

    import apache_beam as beam

    with test_pipeline() as p:
        _ = (p | beam.Create([synthetic_table(0)]) | transforms.AnalyzeDataset(all_analyzers_fn, RAW_TYPES)
             | beam.Map(transforms.write_pickle, str(tmp_path / "values.pickle")))
    values = pickle.loads((tmp_path / "values.pickle").read_bytes())
    save_transform_graph(all_analyzers_fn, RAW_TYPES, values, str(tmp_path / "graph"))
    output = tft.TransformOutput(str(tmp_path / "graph"))
    got = output.transform_raw_features(tft.arrow_to_raw_tensors(synthetic_table(5), RAW_TYPES))
    assert len(set(got["f_bucket"].numpy())) == 1 and set(got["s_frequent"].numpy()) == {-1}
    assert not np.isnan(got["f_z"].numpy()).any()


# --- a missing or ill-typed column is named, with what the data has -----------------------------


def test_a_missing_column_is_named_with_the_columns_the_examples_have(small_taxi):
    source = "from sluice import tft\n\ndef preprocessing_fn(inputs):\n    return {'y': inputs['label']}\n"
    expected = r"line 4 failed: KeyError: 'label'; the examples have no column 'label' \(they have '\w+' \(\w+\), "
    with pytest.raises(ComponentError, match=expected) as info:
        run_with_module(small_taxi, source)
    assert "\n" not in str(info.value) and " and 8 more)" in str(info.value)  # 18 columns, 10 shown


def test_a_column_the_schema_lacks_is_said_to_be_in_the_examples(small_taxi):
    examples, schema, _ = small_taxi
    text = Path(schema.file).read_text().replace('feature { name: "company" type: BYTES }\n', "")
    Path(schema.file).write_text(text)
    source = "def preprocessing_fn(inputs):\n    return {'y': inputs['company']}\n"
    with pytest.raises(ComponentError, match=r"KeyError: 'company'; column 'company' is in the examples but not in "
                                             r"the schema .*schema\.pbtxt, so inputs lack it$"):
        run_with_module(small_taxi, source)


def test_an_integer_column_where_floats_are_expected_is_named(small_taxi):
    source = ("import tensorflow as tf\nfrom sluice import tft\n\n"
              "def preprocessing_fn(inputs):\n"
              "    return {'h': tf.math.log(tft.fill_missing(inputs['trip_start_hour'], 0))}\n")
    with pytest.raises(ComponentError, match=r"bad_module\.py, line 5 failed: TypeError: .*int64.*; on line 5, "
                                             r"column 'trip_start_hour' is int64 in the data$"):
        run_with_module(small_taxi, source)


def test_a_string_column_in_a_numeric_analyzer_is_named(small_taxi):
    source = ("from sluice import tft\n\n"
              "def preprocessing_fn(inputs):\n"
              "    company = tft.fill_missing(inputs['company'], '')\n"
              "    return {'c': tft.scale_to_z_score(company)}\n")
    with pytest.raises(ComponentError, match=r"bad_module\.py.* failed: .*string.*; the columns it reads of type "
                                             r"string: 'company'$") as info:
        run_with_module(small_taxi, source)
    assert "\n" not in str(info.value)


def test_the_taxi_module_on_integer_tips_names_tips_and_fare(tmp_path):
    # The label read through a constant (LABEL_KEY = "tips") and compared with a float fare.
    import pyarrow.compute as pc

    table = taxi_table().slice(0, 300)
    tips = pc.cast(pc.round(pc.fill_null(table.column("tips"), 0)), pa.int64())
    table = table.set_column(table.schema.get_field_index("tips"), "tips", tips)
    examples, schema = write_examples(tmp_path, taxi_splits(table))
    with pytest.raises(ComponentError, match=r"taxi/preprocessing\.py, line \d+ failed: TypeError: .*; on line \d+, "
                                             r"column 'fare' is float32, column 'tips' is int64 in the data$"):
        run_transform(examples=examples, schema=schema, module_file=str(TAXI_MODULE),
                      **output_artifacts(tmp_path / "out"))


TWO_PATHS_MODULE = """
import tensorflow as tf
from sluice import tft


def preprocessing_fn(inputs):
    fare = tft.fill_missing(inputs["fare"], 0.0)
    company = tft.fill_missing(inputs["company"], "")
    company_id = tft.compute_and_apply_vocabulary(company, top_k=20, num_oov_buckets=2)
    return {
        "fare_z": tft.scale_to_z_score(fare),
        "fare_bucket": tft.bucketize(fare, 5),
        "company_id": company_id,
        "company_id_centered": tf.cast(company_id, tf.float32) - tft.mean(tf.cast(company_id, tf.float32)),
        "payment_sparse_id": tft.compute_and_apply_vocabulary(inputs["payment_type"]),
    }
"""


def test_in_process_run_and_beam_pipelines_write_the_same(tmp_path):
    """No Beam option: Transform runs in this process; any option but the runner: Beam pipelines. Same results."""
    from sluice.components.sdk import ExecutionContext

    assert ExecutionContext(beam_pipeline_args=["--runner=DirectRunner"]).beam_default_runner
    assert not ExecutionContext(beam_pipeline_args=["--runner=PortableRunner"]).beam_default_runner
    beam_pipeline_args = ["--direct_num_workers=1"]
    table = taxi_table().slice(0, 2000)
    examples, schema = write_examples(tmp_path, taxi_splits(table))
    module = tmp_path / "two_paths.py"
    module.write_text(TWO_PATHS_MODULE)
    results = {}
    for label, args in (("in_process", []), ("given", beam_pipeline_args)):
        ctx = ExecutionContext(beam_pipeline_args=args)
        assert ctx.beam_default_runner == (label == "in_process")
        outs = output_artifacts(tmp_path / label)
        run_transform(examples=examples, schema=schema, module_file=str(module), ctx=ctx, **outs)
        graph = Path(outs["transform_graph"].uri)
        results[label] = {
            "analysis": json.loads((graph / "analysis.json").read_text()),
            "files": sorted(p.name for p in Path(outs["transformed_examples"].split_uri("train")).iterdir()),
            **{split: pq.read_table(outs["transformed_examples"].split_uri(split)) for split in ("train", "eval")},
        }
    first, second = results["in_process"], results["given"]
    assert first["files"] == ["part-00000-of-00001.parquet"]
    assert first["analysis"]["analyzers"] == second["analysis"]["analyzers"]
    assert first["analysis"]["vocabularies"] == second["analysis"]["vocabularies"]
    for split in ("train", "eval"):
        assert first[split].schema.equals(second[split].schema, check_metadata=True)
        assert first[split].equals(second[split]), split
    assert first["train"].num_rows == taxi_splits(table)["train"].num_rows
