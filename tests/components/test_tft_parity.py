"""Value parity of Sluice's Transform with real tensorflow-transform 1.21 (the oracle).

Each case's ``make_*(tft)`` returns a ``preprocessing_fn`` written as a tf.Transform user
writes it; the same body runs with ``tft = tensorflow_transform`` (AnalyzeAndTransformDataset on
Beam's in-process runner) and with ``tft = sluice.tft`` (the Transform component), on the same
rows and Schema (tests/oracle/tft_oracle.py). Compared (tests/oracle/tft_compare.py): every output
row by row (ints and strings exactly, floats within 1e-5, relative beyond magnitude 1, unless a case
states otherwise),
on the analyzed rows and, where a case has one, on an eval split that is only transformed (unseen
tokens, OOV buckets); each output's dtype and transformed feature spec; every vocabulary file byte
for byte and ``vocabulary_size_by_name``; ``raw_feature_spec()`` and
``num_buckets_for_transformed_feature`` of every int output; and each engine's serving path
(serialized tf.Examples -> ``transform_features_layer()``) on the first rows.
All tf.Transform runs share one Beam pipeline (module fixture): it takes over a minute, so its
results are cached by content (``tft_oracle.run_tft_cached``); Sluice runs every time.

Tolerances: float rounding only (1e-5; sums and variances of a few hundred values 1e-3/1e-4).
``bucketize`` and ``quantiles`` come from different quantile sketches in the two engines, yet on
these rows they give the same boundaries, so bucket ids are compared exactly too (the boundaries
``quantiles`` returns are float outputs, within the float tolerance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from tests.oracle import tft_compare, tft_oracle
from tests.oracle.tft_oracle import Case

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_transform")

pytestmark = pytest.mark.slow

TAXI_CSV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chicago_taxi" / "data.csv"
TAXI_ROWS = 3000


# --- schemas -------------------------------------------------------------------------------


def schema_text(features: dict[str, tuple[str, list[int] | None]]) -> str:
    """Schema pbtxt: ``{name: (INT|FLOAT|BYTES, shape)}``; a shape makes the feature required and
    fixed-shape (tf.Transform: dense), ``None`` leaves it optional/var-length (SparseTensor)."""
    lines = []
    for name, (kind, shape) in features.items():
        body = f'name: "{name}" type: {kind}'
        if shape is not None:
            dims = " ".join(f"dim {{ size: {n} }}" for n in shape)
            body += f" presence {{ min_fraction: 1.0 min_count: 1 }} shape {{ {dims} }}"
        lines.append(f"feature {{ {body} }}\n")
    return "".join(lines)


# --- taxi (TFX's taxi_utils.py preprocessing, as a tf.Transform user writes it) -------------

TAXI_DENSE_FLOAT = ["trip_miles", "fare", "trip_seconds"]
TAXI_VOCAB = ["payment_type", "company"]
TAXI_BUCKET = ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"]
TAXI_CATEGORICAL = ["trip_start_hour", "trip_start_day", "trip_start_month", "pickup_census_tract",
                    "dropoff_census_tract", "pickup_community_area", "dropoff_community_area"]
TAXI_TYPES = {
    **{k: "FLOAT" for k in ["fare", "trip_miles", "tips", *TAXI_BUCKET]},
    **{k: "INT" for k in [*TAXI_CATEGORICAL, "trip_seconds", "trip_start_timestamp"]},
    **{k: "BYTES" for k in TAXI_VOCAB},
}


def _fill_in_missing(x):
    if not isinstance(x, tf.sparse.SparseTensor):
        return x
    default_value = "" if x.dtype == tf.string else 0
    return tf.squeeze(
        tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value), axis=1)


def make_taxi(tft):
    def preprocessing_fn(inputs):
        outputs = {}
        for key in TAXI_DENSE_FLOAT:
            outputs[key + "_xf"] = tft.scale_to_z_score(_fill_in_missing(inputs[key]))
        for key in TAXI_VOCAB:
            outputs[key + "_xf"] = tft.compute_and_apply_vocabulary(
                _fill_in_missing(inputs[key]), top_k=1000, num_oov_buckets=10)
        for key in TAXI_BUCKET:
            outputs[key + "_xf"] = tft.bucketize(_fill_in_missing(inputs[key]), 10)
        for key in TAXI_CATEGORICAL:
            outputs[key + "_xf"] = _fill_in_missing(inputs[key])
        taxi_fare = _fill_in_missing(inputs["fare"])
        tips = _fill_in_missing(inputs["tips"])
        outputs["tips_xf"] = tf.where(
            tf.math.is_nan(taxi_fare), tf.cast(tf.zeros_like(taxi_fare), tf.int64),
            tf.cast(tf.greater(tips, tf.multiply(taxi_fare, tf.constant(0.2))), tf.int64))
        return outputs

    return preprocessing_fn


def taxi_case() -> Case:
    arrow_types = {"FLOAT": pa.float64(), "INT": pa.int64(), "BYTES": pa.string()}
    table = pacsv.read_csv(TAXI_CSV, convert_options=pacsv.ConvertOptions(
        column_types={k: arrow_types[v] for k, v in TAXI_TYPES.items()}, include_columns=list(TAXI_TYPES)))
    # Analyzed on TAXI_ROWS rows; the next 1000 are only transformed (unseen companies hash to OOV buckets).
    return Case("taxi", table.slice(0, TAXI_ROWS), schema_text({k: (v, None) for k, v in TAXI_TYPES.items()}),
                make_taxi, eval_table=table.slice(TAXI_ROWS, 1000))


# --- penguin with dense inputs (TFX's penguin_utils_base style) ----------------------------

PENGUIN_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def make_penguin(tft):
    def preprocessing_fn(inputs):
        outputs = {key + "_xf": tft.scale_to_z_score(inputs[key]) for key in PENGUIN_FEATURES}
        outputs["island_xf"] = tft.compute_and_apply_vocabulary(inputs["island"], vocab_filename="island")
        table_keys = ["Adelie", "Chinstrap", "Gentoo"]
        initializer = tf.lookup.KeyValueTensorInitializer(
            keys=table_keys, values=tf.cast(tf.range(len(table_keys)), tf.int64),
            key_dtype=tf.string, value_dtype=tf.int64)
        table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        outputs["species_xf"] = table.lookup(inputs["species"])
        return outputs

    return preprocessing_fn


def penguin_case() -> Case:
    palmerpenguins = pytest.importorskip("palmerpenguins")
    frame = palmerpenguins.load_penguins().dropna()
    columns = {key: pa.array(frame[key].astype("float32")) for key in PENGUIN_FEATURES}
    columns.update({key: pa.array(frame[key].astype(str).tolist()) for key in ["island", "species"]})
    table = pa.table(columns)
    features = {**{k: ("FLOAT", [1]) for k in PENGUIN_FEATURES}, "island": ("BYTES", [1]), "species": ("BYTES", [1])}
    return Case("penguin_dense", table, schema_text(features), make_penguin)


# --- one-hot vectors of vocabulary ids (TFX's Keras taxi examples) --------------------------


def make_one_hot(tft):
    def preprocessing_fn(inputs):
        payment = _fill_in_missing(inputs["payment_type"])
        ids = tft.compute_and_apply_vocabulary(payment, top_k=4, num_oov_buckets=1, vocab_filename="payment_type")
        depth = tft.experimental.get_vocabulary_size_by_name("payment_type") + 1
        hour = _fill_in_missing(inputs["trip_start_hour"])
        return {
            "payment_one_hot": tf.one_hot(ids, 5, on_value=1.0, off_value=0.0),
            "payment_one_hot_sized": tf.reshape(
                tf.one_hot(ids, tf.cast(depth, tf.int32), on_value=1.0, off_value=0.0), [-1, depth]),
            "hour_bucket_one_hot": tf.one_hot(tft.bucketize(tf.cast(hour, tf.float32), 4), 4, dtype=tf.int64),
        }

    return preprocessing_fn


def one_hot_case(taxi: pa.Table) -> Case:
    table = taxi.select(["payment_type", "trip_start_hour"]).slice(0, 300)
    return Case("one_hot", table, schema_text({"payment_type": ("BYTES", None), "trip_start_hour": ("INT", None)}),
                make_one_hot)


# --- a list-of-strings column: ngrams, bag_of_words, tfidf, word_count ----------------------

WORDS = ["the", "movie", "was", "good", "bad", "plot", "great", "acting", "boring", "a"]


def make_text(tft):
    def preprocessing_fn(inputs):
        tokens = inputs["tokens"]  # SparseTensor of strings, one row per review
        bow = tft.bag_of_words(tokens, ngram_range=(1, 2), separator=" ")
        bow_ids = tft.compute_and_apply_vocabulary(bow, top_k=20, num_oov_buckets=1, vocab_filename="bow")
        index, weight = tft.tfidf(bow_ids, 21)
        review_tokens = tf.strings.split(inputs["review"][:, 0]).to_sparse()
        # TFX's imdb example: ids padded/cut to a fixed length, 0 for padding, OOV -> VOCAB_SIZE + 1.
        review_ids = tft.compute_and_apply_vocabulary(review_tokens, default_value=6, top_k=6)
        padded = tf.pad(tf.sparse.to_dense(review_ids, default_value=-1), [[0, 0], [0, 5]], constant_values=-1)
        return {
            "review_padded": tf.slice(padded, [0, 0], [-1, 5]) + 1,
            "ngrams": tft.ngrams(tokens, ngram_range=(1, 3), separator="_"),
            "bow_ids": bow_ids,
            "tfidf_index": index,
            "tfidf_weight": weight,
            "word_count": tft.word_count(tokens),
            "review_ids": tft.compute_and_apply_vocabulary(review_tokens, vocab_filename="review"),
        }

    return preprocessing_fn


def make_ragged(tft):
    def preprocessing_fn(inputs):
        words = tf.strings.split(inputs["review"][:, 0])  # RaggedTensor [batch, None]
        return {"review_ragged_ids": tft.apply_vocabulary(words, tft.vocabulary(inputs["tokens"]))}

    return preprocessing_fn


def text_table(rows: int, seed: int, words: list[str]) -> pa.Table:
    rng = np.random.default_rng(seed)
    token_lists = [rng.choice(words, int(rng.integers(0, 8))).tolist() for _ in range(rows)]
    return pa.table({"tokens": pa.array(token_lists, pa.list_(pa.string())),
                     "review": pa.array([" ".join(t) for t in token_lists])})


def text_case() -> Case:
    return Case("list_of_strings", text_table(200, 1, WORDS),
                schema_text({"tokens": ("BYTES", None), "review": ("BYTES", [1])}), make_text,
                eval_table=text_table(60, 7, [*WORDS, "unseen", "words"]))


def ragged_case() -> Case:
    return Case("ragged_output", text_table(50, 8, WORDS),
                schema_text({"tokens": ("BYTES", None), "review": ("BYTES", [1])}), make_ragged)


# --- a list-of-floats column: 28x28 images flattened (TFX's mnist_utils style) --------------


def make_image(tft):
    def preprocessing_fn(inputs):
        image = inputs["image_floats"]  # dense [batch, 784]
        return {
            "image_xf": tft.scale_by_min_max(image, -0.5, 0.5),
            "image_01": tft.scale_to_0_1(image),
            "image_z": tft.scale_to_z_score(image),
            "label_xf": inputs["image_class"],
        }

    return preprocessing_fn


def image_case() -> Case:
    rng = np.random.default_rng(2)
    images = (rng.random((150, 784), dtype=np.float32) - 0.5) * (rng.random((150, 784)) < 0.3)
    table = pa.table({"image_floats": pa.array(list(images.astype(np.float32)), pa.list_(pa.float32())),
                      "image_class": pa.array(rng.integers(0, 10, 150), pa.int64())})
    return Case("list_of_floats_784", table,
                schema_text({"image_floats": ("FLOAT", [784]), "image_class": ("INT", [1])}), make_image)


# --- tokens with '', whitespace and newlines; frequency ties -------------------------------


def make_odd_tokens(tft):
    def preprocessing_fn(inputs):
        token = inputs["token"]  # dense [batch, 1]
        vocab = tft.vocabulary(token, vocab_filename="tokens_all")
        return {
            "token_id": tft.compute_and_apply_vocabulary(token, num_oov_buckets=1, vocab_filename="tokens_oov"),
            "token_top3": tft.compute_and_apply_vocabulary(token, top_k=3, vocab_filename="tokens_top3"),
            "token_freq2": tft.compute_and_apply_vocabulary(token, frequency_threshold=2, vocab_filename="tokens_f2"),
            "token_applied": tft.apply_vocabulary(token, vocab, default_value=-7),
            "token_unnamed": tft.compute_and_apply_vocabulary(token),
        }

    return preprocessing_fn


def odd_tokens_case() -> Case:
    # 'b', 'a', 'c' tie at 4; ' ' (space-only), '' and the newline tokens are frequent but dropped by tf.Transform
    counts = {"b": 4, "a": 4, "c": 4, "z": 2, "y": 1, "": 9, " ": 7, "x\ny": 6, "carriage\r": 5, "tab\tin": 3,
              "two words": 2, "\n": 5, "naïve": 2}
    tokens = [t for t, n in counts.items() for _ in range(n)]
    tokens = [tokens[i] for i in np.random.default_rng(3).permutation(len(tokens))]
    table = pa.table({"token": pa.array(tokens)})
    return Case("odd_tokens", table, schema_text({"token": ("BYTES", [1])}), make_odd_tokens)


# --- elementwise=True analyzers on a vector ------------------------------------------------


def make_elementwise(tft):
    def preprocessing_fn(inputs):
        vec = inputs["vec"]  # dense [batch, 3]
        first = vec[:, 0]
        return {
            "vec_z": tft.scale_to_z_score(vec, elementwise=True),
            "vec_z_all": tft.scale_to_z_score(vec),
            "vec_mean": tf.zeros_like(vec) + tft.mean(vec, reduce_instance_dims=False),
            "vec_var": tf.zeros_like(vec) + tft.var(vec, reduce_instance_dims=False),
            "vec_max": tf.zeros_like(vec) + tft.max(vec, reduce_instance_dims=False),
            "first_min": tf.zeros_like(first) + tft.min(first),
            "first_size": tf.zeros_like(first, tf.int64) + tft.size(first),
            "first_sum": tf.zeros_like(first) + tft.sum(first),
        }

    return preprocessing_fn


def elementwise_case() -> Case:
    rng = np.random.default_rng(4)
    vectors = rng.normal([0.0, 10.0, -5.0], [1.0, 3.0, 0.5], (250, 3)).astype(np.float32)
    table = pa.table({"vec": pa.array(list(vectors), pa.list_(pa.float32()))})
    return Case("elementwise_z", table, schema_text({"vec": ("FLOAT", [3])}), make_elementwise,
                float_tolerance={"vec_var": 1e-4, "first_sum": 1e-3})


# --- the other analyzers and mappers TFX's examples use, on optional and dense scalars ------


def make_analyzers(tft):
    def preprocessing_fn(inputs):
        x = tft.sparse_tensor_to_dense_with_shape(inputs["x"], [None, 1], default_value=0.0)[:, 0]
        n = inputs["n"]  # dense [batch] (schema shape [])
        city = _fill_in_missing(inputs["city"])
        tokens = tft.sparse_tensor_to_dense_with_shape(inputs["tags"], [None, 3], default_value="")
        city_vocab = tft.vocabulary(city, vocab_filename="city_vocab")
        tft.annotate_asset("city_key", "city_vocab")
        zeros = tf.zeros_like(x)
        return {
            "x_z_sparse": tft.scale_to_z_score(inputs["x"]),
            "x_0_1": tft.scale_to_0_1(x),
            "x_min_max": tft.scale_by_min_max(x, -1.0, 1.0),
            "x_bucket": tft.bucketize(x, 5),
            "x_applied_buckets": tft.apply_buckets(x, tf.constant([[0.0, 1.0, 2.5]])),
            "x_quantiles": zeros[:, None] + tft.quantiles(x, num_buckets=5, epsilon=0.01),
            "x_sparse_max": zeros + tft.max(inputs["x"]),
            "x_sparse_size": tf.zeros_like(n) + tft.size(inputs["x"]),
            "n_mean": zeros + tft.mean(n),
            "n_var": zeros + tft.var(n),
            "n_min": tf.zeros_like(n) + tft.min(n),
            "n_sum": tf.zeros_like(n) + tft.sum(n),
            "n_vocab": tft.compute_and_apply_vocabulary(n, top_k=5, num_oov_buckets=2),
            "city_id": tft.apply_vocabulary(city, city_vocab, num_oov_buckets=1),
            "city_top2": tft.compute_and_apply_vocabulary(city, top_k=2, num_oov_buckets=3),
            "city_vocab_size": tf.zeros_like(n) + tft.experimental.get_vocabulary_size_by_name("city_vocab"),
            "city_hash": tft.hash_strings(city, 11),
            "city_hash_keyed": tft.hash_strings(city, 11, key=[123, 456]),
            "tags_dense": tokens,
        }

    return preprocessing_fn


def analyzers_table(rows: int, seed: int, cities: list[str], scale: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    tags = [rng.choice(["x", "y", "zz"], int(rng.integers(0, 4))).tolist() for _ in range(rows)]
    return pa.table({
        "x": pa.array(rng.gamma(2.0, scale, rows), mask=rng.random(rows) < 0.15),
        "n": pa.array(rng.integers(-3, int(40 * scale), rows)),
        "city": pa.array(rng.choice(cities, rows).tolist(), mask=rng.random(rows) < 0.1),
        "tags": pa.array(tags, pa.list_(pa.string())),
    })


def analyzers_case() -> Case:
    cities = ["Chicago"] * 4 + ["Evanston"] * 2 + ["Oak Park", "Cicero"]
    table = analyzers_table(300, 5, cities, 1.0)
    # Transformed only: unseen cities and integers (OOV buckets), values beyond the analyzed range.
    eval_table = analyzers_table(100, 6, ["Chicago", "Skokie", "Berwyn", "Evanston", "Oak Park"], 2.0)
    features = {"x": ("FLOAT", None), "n": ("INT", []), "city": ("BYTES", None), "tags": ("BYTES", None)}
    return Case("analyzers", table, schema_text(features), make_analyzers, asset_keys=["city_key", "city_vocab"],
                eval_table=eval_table)


def analyzer_options_case() -> Case:
    """test_tft_analyzers' one preprocessing_fn over vocabulary options, tfidf, quantiles, scaling, sums."""
    from tests.components import test_tft_analyzers as options

    # n_sum, v_sum: tf.Transform adds float32 values in float32, Sluice in float64 (a float32 ulp at ~800).
    return Case("analyzer_options", options.parity_table(), options.PARITY_SCHEMA, options.make_parity_fn,
                float_tolerance={"n_sum": 1e-4, "v_sum": 1e-4})


# --- the suite -----------------------------------------------------------------------------


def all_cases() -> dict[str, Case]:
    taxi = taxi_case()
    cases = [taxi, penguin_case(), one_hot_case(taxi.table), text_case(), image_case(), odd_tokens_case(),
             elementwise_case(), analyzers_case(), ragged_case(), analyzer_options_case()]
    return {case.name: case for case in cases}


CASE_NAMES = ["taxi", "penguin_dense", "one_hot", "list_of_strings", "list_of_floats_784", "odd_tokens",
              "elementwise_z", "analyzers", "ragged_output", "analyzer_options"]


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return all_cases()


@pytest.fixture(scope="module")
def tft_results(cases, tmp_path_factory):
    return tft_oracle.run_tft_cached(list(cases.values()), tmp_path_factory.mktemp("tft_oracle"))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_sluice_matches_tensorflow_transform(name, cases, tft_results, tmp_path):
    case = cases[name]
    expected = tft_results[name]
    assert expected.outputs and all(len(v) == case.table.num_rows for v in expected.outputs.values())
    assert set(expected.served) == set(expected.outputs)
    actual = tft_oracle.run_sluice(case, tmp_path)
    parity = tft_compare.compare(case, expected, actual)
    print(f"\nPARITY {name}: " + "; ".join(f"{k}: {v}" for k, v in sorted(parity.figures.items())))
    assert not parity.differences, f"{name}: " + "\n".join(parity.differences)


def test_the_comparison_sees_a_changed_value_token_and_shape(cases, tft_results):
    """The harness itself: a perturbed copy of tf.Transform's own result must be reported."""
    case = cases["odd_tokens"]
    expected = tft_results["odd_tokens"]
    assert not tft_compare.compare(case, expected, expected).differences
    changed = tft_oracle.EngineResult(**{**expected.__dict__})
    ids = [v + (i == 5) for i, v in enumerate(expected.outputs["token_id"])]
    changed.outputs = {**expected.outputs, "token_id": ids}
    changed.specs = {**expected.specs, "token_top3": "varlen int64"}
    name = sorted(expected.assets)[0]
    changed.assets = {**expected.assets, name: expected.assets[name] + b"extra\n"}
    lines = tft_compare.compare(case, expected, changed).differences
    assert any("'token_id'" in line and "first row 5" in line for line in lines)
    assert any(line.startswith(f"vocabulary {name}") for line in lines)
    assert any(line.startswith("transformed_feature_spec['token_top3']") for line in lines)


def test_float_comparison_is_relative_above_one_and_sees_infinities_and_nans():
    want = [np.array([0.5, np.inf, 50.0], np.float32), np.array([np.nan], np.float32)]

    def line(first, second):
        return tft_compare.compare_rows(want, [np.array(first), np.array(second)], "float32", 1e-5)[0]

    assert line([0.5, np.inf, 50.0004], [np.nan]) == ""  # 8e-6 relative
    assert "> 1e-05" in line([0.50002, np.inf, 50.0], [np.nan])
    assert "Sluice -inf" in line([0.5, -np.inf, 50.0], [np.nan])
    assert "NaN" in line([0.5, np.inf, 50.0], [0.0])
