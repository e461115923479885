"""Sluice's tf.Transform analyzers and mappers (components/tft) with tf.Transform's semantics.

The fast tests run a ``preprocessing_fn`` through Sluice's engine without Beam (plan, per-phase
analysis function, accumulators merged over two batches, saved graph, applied) and check values
taken from real tensorflow-transform 1.21 on the same rows (vocabulary files, names, ties,
tfidf). Its ``make_parity_fn`` runs through both engines side by side in
tests/components/test_tft_parity.py (case ``analyzer_options``), in the suite's one tf.Transform pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sluice import tft
from sluice.components.tft.accumulators import add_to_accumulator, batch_moments, extract, merge_two, new_accumulator
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.graph import load_transform_fn, save_transform_graph
from sluice.components.tft.output import TransformOutput
from sluice.components.tft.packed import pack
from sluice.components.tft.tracing import AnalysisFunction, PreprocessingFnError, plan_analysis

tf = pytest.importorskip("tensorflow")


def run_engine(preprocessing_fn, table: pa.Table, raw_features: dict, out_dir: Path) -> dict:
    """Analyze ``table`` in two batches (accumulators merged), save the graph, apply it to ``table``."""
    values: dict = {}
    halves = [table.slice(0, table.num_rows // 2), table.slice(table.num_rows // 2)]
    for specs in plan_analysis(preprocessing_fn, raw_features):
        function = AnalysisFunction(preprocessing_fn, raw_features, values, [s.key for s in specs], "test")
        accumulators = []
        for half in halves:
            found = function(half)
            accumulators.append({s.key: add_to_accumulator(s, new_accumulator(s), found[s.key]) for s in specs})
        merged = {s.key: merge_two(s, accumulators[0][s.key], accumulators[1][s.key]) for s in specs}
        values.update({s.key: extract(s, merged[s.key]) for s in specs})
    analysis = save_transform_graph(preprocessing_fn, raw_features, values, str(out_dir))
    output = TransformOutput(str(out_dir))
    transform = load_transform_fn(output.transform_savedmodel_dir)
    transformed = transform(pack(table, raw_features))
    assets = out_dir / "transform_fn" / "assets"
    files = {p.name: p.read_bytes() for p in sorted(assets.iterdir())}
    return {"values": values, "analysis": analysis, "output": output, "files": files,
            "transformed": transformed}


def dense(dtype: str, *shape: int) -> FeatureSpec:
    return FeatureSpec(dtype, tuple(shape) or (1,))


# --- vocabularies ---------------------------------------------------------------------------

TOKENS = ["a", "", "  ", "a\nb", "c\r", "b", "c"]
WORDS = ["x", "y", "x", "y", "z", "z", "q"]
INTS = [3, 2, 111, 2, 111, 3, 3]


def vocabulary_fn(inputs):
    s, t, i = inputs["s"], inputs["t"], inputs["i"]
    vocab = tft.vocabulary(t)
    with tf.name_scope("outer"):
        outer = tft.compute_and_apply_vocabulary(t)
    return {
        "s1": tft.compute_and_apply_vocabulary(s),
        "s2": tft.compute_and_apply_vocabulary(t, top_k=2),
        "s3": tft.compute_and_apply_vocabulary(t, vocab_filename="my vocab/x"),
        "s4": tft.compute_and_apply_vocabulary(i, name="ints"),
        "s5": tft.apply_vocabulary(t, tft.vocabulary(t, frequency_threshold=100), num_oov_buckets=3),
        "s6": outer,
        "applied": tft.apply_vocabulary(t, vocab, default_value=-7),
        "freq": tft.compute_and_apply_vocabulary(t, store_frequency=True),
        "size": tf.zeros_like(i) + tft.experimental.get_vocabulary_size_by_name("my vocab/x"),
    }


@pytest.fixture(scope="module")
def vocabularies(tmp_path_factory):
    table = pa.table({"s": TOKENS, "t": WORDS, "i": pa.array(INTS, pa.int64())})
    raw = {"s": dense("string"), "t": dense("string"), "i": dense("int64")}
    return run_engine(vocabulary_fn, table, raw, tmp_path_factory.mktemp("vocab"))


def test_vocabulary_files_are_named_and_filled_as_tensorflow_transform(vocabularies):
    # From tensorflow-transform 1.21 on the same rows and preprocessing_fn.
    assert vocabularies["files"] == {
        "my-vocab_x": b"z\ny\nx\nq\n",
        "vocab_compute_and_apply_vocabulary_1_vocabulary": b"z\ny\n",
        "vocab_compute_and_apply_vocabulary_vocabulary": b"c\nb\na\n  \n",  # '', 'a\nb', 'c\r' dropped
        "vocab_frequency_compute_and_apply_vocabulary_3_vocabulary": b"2 z\n2 y\n2 x\n1 q\n",
        "vocab_ints_vocabulary": b"3\n2\n111\n",  # ties by text descending: '2' > '111'
        "vocab_outer_compute_and_apply_vocabulary_vocabulary": b"z\ny\nx\nq\n",
        "vocab_vocabulary": b"z\ny\nx\nq\n",
        "vocab_vocabulary_1": b"49d0cd50-04bb-48c0-bc6f-5b575dce351a\n",  # empty: tf.Transform's dummy token
    }


def column(vocabularies, name: str) -> list:
    return vocabularies["transformed"][name].numpy().reshape(-1).tolist()


def test_vocabulary_lookups_sizes_and_oov(vocabularies):
    assert column(vocabularies, "s1") == [2, -1, 3, -1, -1, 1, 0]  # vocabulary c, b, a, '  '
    assert column(vocabularies, "s2") == [-1, 1, -1, 1, 0, 0, -1]  # top_k=2: z, y
    assert column(vocabularies, "s4") == [0, 1, 2, 1, 2, 0, 0]  # 3, 2, 111
    assert column(vocabularies, "applied") == [2, 1, 2, 1, 0, 0, 3]
    assert column(vocabularies, "freq") == column(vocabularies, "applied")  # store_frequency still looks up tokens
    assert column(vocabularies, "size") == [4] * 7
    # The empty vocabulary holds the dummy token, so OOV buckets start at 1, as in tf.Transform.
    expected = 1 + tf.strings.to_hash_bucket_fast(tf.constant(WORDS), 3).numpy()
    assert column(vocabularies, "s5") == expected.tolist()
    output = vocabularies["output"]
    for filename, content in vocabularies["files"].items():
        assert output.vocabulary_size_by_name(filename) == content.count(b"\n"), filename
    assert output.num_buckets_for_transformed_feature("s5") == 4


def test_vocabulary_ranking_options():
    from sluice.components.tft.accumulators import EMPTY_VOCABULARY_INT, extract_vocabulary

    counts = {b"a": 3, b"b": 3, b"c": 1, b"": 5, b"d\n": 4, b" ": 2}
    config = {"input_dtype": "string"}
    assert extract_vocabulary(config, counts)["tokens"] == [b"b", b"a", b" ", b"c"]
    assert extract_vocabulary({**config, "top_k": 2, "frequency_threshold": 2}, counts)["tokens"] == [b"b", b"a"]
    reserved = extract_vocabulary({**config, "reserved_tokens": ["<pad>", "a"]}, counts)
    assert reserved["tokens"] == [b"<pad>", b"a", b"b", b" ", b"c"]
    shuffled = extract_vocabulary({**config, "fingerprint_shuffle": True}, counts)["tokens"]
    import hashlib

    assert shuffled == sorted([b"b", b"a", b" ", b"c"], key=lambda t: hashlib.sha1(t).digest())
    assert extract_vocabulary({"input_dtype": "int64"}, {})["keys"] == [EMPTY_VOCABULARY_INT]
    assert extract_vocabulary({"input_dtype": "int64"}, {7: 2, 10: 2, 9: 2})["keys"] == [9, 7, 10]  # as text


UNSUPPORTED = [
    ("coverage_frequency_threshold", lambda x, n: tft.vocabulary(x, coverage_frequency_threshold=3)),
    ("coverage_top_k", lambda x, n: tft.compute_and_apply_vocabulary(x, coverage_top_k=3)),
    ("labels", lambda x, n: tft.compute_and_apply_vocabulary(x, labels=tf.cast(n, tf.int64))),
    ("key_fn", lambda x, n: tft.vocabulary(x, key_fn=lambda t: t)),
    ("file_format", lambda x, n: tft.vocabulary(x, file_format="tfrecord_gzip")),
    ("reserved_tokens", lambda x, n: tft.vocabulary(x, reserved_tokens=tf.constant(["a"]))),
    ("lookup_fn", lambda x, n: tft.apply_vocabulary(x, tft.vocabulary(x), lookup_fn=lambda *a: a)),
    ("weights", lambda x, n: tft.quantiles(n, 3, 0.01, weights=n, reduce_instance_dims=False)),
    ("file_format", lambda x, n: tft.apply_vocabulary(x, tft.vocabulary(x), file_format="tfrecord_gzip")),
]


@pytest.mark.parametrize(("argument", "call"), UNSUPPORTED)
def test_an_unsupported_argument_is_a_one_line_error_naming_it(argument, call):
    def preprocessing_fn(inputs):
        return {"y": call(inputs["s"], inputs["n"])}

    with pytest.raises(PreprocessingFnError) as info:
        plan_analysis(preprocessing_fn, {"s": dense("string"), "n": dense("float32")}, "my_module.py")
    message = str(info.value)
    assert "\n" not in message and f"argument {argument}=" in message and "my_module.py" in message, message


# --- numeric analyzers, elementwise, quantiles -------------------------------------------


def numeric_fn(inputs):
    v, x = inputs["v"], inputs["x"]  # dense [batch, 2], [batch, 1]
    zeros = tf.zeros_like(v)
    boundaries = tft.quantiles(x, 4, 0.01)
    per_column = tft.quantiles(v, 3, 0.01, reduce_instance_dims=False)
    return {
        "mean": zeros + tft.mean(v, reduce_instance_dims=False),
        "var": zeros + tft.var(v, reduce_instance_dims=False),
        "min": zeros + tft.min(v, reduce_instance_dims=False),
        "max": zeros + tft.max(v, reduce_instance_dims=False),
        "sum": zeros + tft.sum(v, reduce_instance_dims=False),
        "size": tf.zeros_like(v, tf.int64) + tft.size(v, reduce_instance_dims=False),
        "total": tf.zeros_like(x) + tft.sum(v),
        "z": tft.scale_to_z_score(v, elementwise=True),
        "bounds": tf.zeros_like(x) + boundaries,  # [1, 3] broadcast to [batch, 3]
        "bounds_shape": tf.zeros_like(x, tf.int32) + tf.shape(boundaries)[0] * 10 + tf.shape(per_column)[0],
        "bucket": tft.apply_buckets(x, boundaries),
        "bucket_v": tft.bucketize(v, 3, elementwise=True),
        "scaled": tft.scale_by_min_max(v, -1.0, 1.0, elementwise=True),
        "flat": tft.scale_to_0_1(inputs["c"]),  # one distinct value: sigmoid(x), as tf.Transform
        "flat_z": tft.scale_to_z_score(inputs["c"]),  # no variance: x - mean, as tf.Transform
        "half_flat_z": tft.scale_to_z_score(tf.concat([inputs["c"], x], axis=1), elementwise=True),
    }


def test_elementwise_analyzers_quantiles_and_scaling(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.normal([0.0, 10.0], [1.0, 4.0], (40, 2)).astype(np.float32)
    x = rng.uniform(0, 100, 40).astype(np.float32)
    table = pa.table({"v": pa.array(list(v), pa.list_(pa.float32())), "x": pa.array(x.reshape(-1, 1).tolist()),
                      "c": pa.array([[2.0]] * 40, pa.list_(pa.float32()))})
    raw = {"v": dense("float32", 2), "x": dense("float32", 1), "c": dense("float32", 1)}
    out = run_engine(numeric_fn, table, raw, tmp_path)["transformed"]
    got = {k: t.numpy() for k, t in out.items()}
    v64 = v.astype(np.float64)
    np.testing.assert_allclose(got["mean"][0], v64.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(got["var"][0], v64.var(axis=0), rtol=1e-4)
    np.testing.assert_array_equal(got["min"][0], v.min(axis=0))
    np.testing.assert_array_equal(got["max"][0], v.max(axis=0))
    np.testing.assert_allclose(got["sum"][0], v64.sum(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(got["size"][0], [40, 40])
    np.testing.assert_allclose(got["total"].reshape(-1)[0], v64.sum(), rtol=1e-5)
    np.testing.assert_allclose(got["z"], (v64 - v64.mean(axis=0)) / v64.std(axis=0), atol=1e-4)
    assert got["bounds"].shape == (40, 3) and got["bounds_shape"].reshape(-1)[0] == 12  # [1, 3] and [2, 2]
    bounds = got["bounds"][0]
    np.testing.assert_array_equal(got["bucket"].reshape(-1), np.searchsorted(bounds, x, side="right"))
    assert got["bucket_v"].shape == (40, 2) and set(np.unique(got["bucket_v"])) == {0, 1, 2}
    for j in range(2):  # each column has its own boundaries: about a third of the rows per bucket
        assert np.bincount(got["bucket_v"][:, j], minlength=3).min() >= 10
    low, high = v.min(axis=0), v.max(axis=0)
    np.testing.assert_allclose(got["scaled"], (v - low) / (high - low) * 2 - 1, atol=1e-5)
    np.testing.assert_allclose(got["flat"].reshape(-1), 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    assert got["flat_z"].tolist() == [[0.0]] * 40
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(got["half_flat_z"][:, 0], 0.0)
    np.testing.assert_allclose(got["half_flat_z"][:, 1], (x64 - x64.mean()) / x64.std(), atol=1e-4)


def test_tf_transform_api_sluice_lacks_is_named():
    def preprocessing_fn(inputs):
        return {"y": tft.pca(inputs["n"], 2, tf.float32)}

    with pytest.raises(PreprocessingFnError, match=r"AttributeError: tft.pca is not supported by Sluice"):
        plan_analysis(preprocessing_fn, {"n": dense("float32")}, "my_module.py")
    with pytest.raises(AttributeError, match="tft.experimental.approximate_vocabulary is not supported"):
        tft.experimental.approximate_vocabulary  # noqa: B018 - the attribute access is the test


def test_elementwise_on_a_sparse_input_is_a_one_line_error():
    def preprocessing_fn(inputs):
        return {"z": tft.scale_to_z_score(inputs["s"], elementwise=True)}

    with pytest.raises(PreprocessingFnError, match="elementwise=True needs a dense input") as info:
        plan_analysis(preprocessing_fn, {"s": FeatureSpec("float32")})
    assert "\n" not in str(info.value)


# --- text mappers ---------------------------------------------------------------------------


def sparse_tokens():
    return tf.SparseTensor(indices=[[0, 0], [0, 1], [0, 2], [0, 3], [2, 0], [2, 1], [2, 2], [2, 3]],
                           values=["a", "b", "a", "b", "c", "c", "c", "d"], dense_shape=[3, 4])


def as_tuple(sparse) -> tuple:
    return (sparse.indices.numpy().tolist(), sparse.values.numpy().tolist(), sparse.dense_shape.numpy().tolist())


def test_text_mappers_equal_tensorflow_transforms():
    real = pytest.importorskip("tensorflow_transform")
    tokens = sparse_tokens()
    for ngram_range in [(1, 1), (1, 3), (2, 2)]:
        assert as_tuple(tft.ngrams(tokens, ngram_range, " ")) == as_tuple(real.ngrams(tokens, ngram_range, " "))
        assert as_tuple(tft.bag_of_words(tokens, ngram_range, "-")) == as_tuple(
            real.bag_of_words(tokens, ngram_range, "-"))
    assert tft.word_count(tokens).numpy().tolist() == real.word_count(tokens).numpy().tolist() == [4, 0, 4]
    ragged = tf.ragged.constant([["a"], [], ["b", "c"]])
    assert tft.word_count(ragged).numpy().tolist() == [1, 0, 2]
    assert tft.hash_strings(tokens, 5).values.numpy().tolist() == real.hash_strings(tokens, 5).values.numpy().tolist()
    dense_values = tft.sparse_tensor_to_dense_with_shape(tokens, [None, 5], default_value="")
    assert dense_values.shape.as_list() == [None, 5] or dense_values.shape.as_list() == [3, 5]
    np.testing.assert_array_equal(dense_values.numpy(),
                                  real.sparse_tensor_to_dense_with_shape(tokens, [None, 5], "").numpy())
    shuffled = tf.SparseTensor([[0, 3], [1, 1], [1, 4], [0, 1]], ["d", "e", "f", "b"], [2, 5])
    assert as_tuple(tft.sparse_tensor_left_align(shuffled)) == as_tuple(real.sparse_tensor_left_align(shuffled))
    boundaries = tf.constant([[0.0, 5.0, 10.0]])
    for x in (tf.constant([[-1.0, 0.0], [4.0, 12.0]]), tf.constant([-1.0, 0.0, 4.0, 5.0, 12.0]),
              tf.constant([[[1.0, 10.0]], [[5.0, -3.0]]]), tf.constant([3, 10, 11], tf.int64)):
        ours, theirs = tft.apply_buckets(x, boundaries), real.apply_buckets(x, boundaries)
        assert ours.shape.as_list() == x.shape.as_list()
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    sparse = tf.SparseTensor([[0, 0], [1, 2]], [5.0, 9.0], [2, 3])
    assert as_tuple(tft.apply_buckets(sparse, boundaries)) == as_tuple(real.apply_buckets(sparse, boundaries))
    ragged = tf.ragged.constant([[0.0, 11.0], [], [6.0]])
    assert tft.apply_buckets(ragged, boundaries).to_list() == [[1, 3], [], [2]]


def tfidf_fn(inputs):
    integerized = tft.compute_and_apply_vocabulary(inputs["x"])
    size = tft.experimental.get_vocabulary_size_by_name("vocab_compute_and_apply_vocabulary_vocabulary")
    index, weight = tft.tfidf(integerized, size)
    # tf.Transform's own example sizes it so: the vocabulary's size (no OOV buckets here).
    _, weight_by_buckets = tft.tfidf(integerized, tft.get_num_buckets_for_transformed_feature(integerized))
    return {"index": index, "tf_idf": weight, "integerized": integerized, "by_buckets": weight_by_buckets}


def test_tfidf_as_tensorflow_transforms_example(tmp_path):
    # tensorflow_transform.tfidf's own example: the same rows give the same ids and weights.
    table = pa.table({"x": [["I", "like", "pie", "pie", "pie"], ["yum", "yum", "pie"]]})
    out = run_engine(tfidf_fn, table, {"x": FeatureSpec("string")}, tmp_path)["transformed"]
    assert as_tuple(out["integerized"])[1] == [3, 2, 0, 0, 0, 1, 1, 0]
    index, weight = as_tuple(out["index"]), as_tuple(out["tf_idf"])
    assert index[0] == weight[0] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
    assert index[1] == [0, 2, 3, 0, 1]
    np.testing.assert_allclose(weight[1], [0.6, 0.28109303, 0.28109303, 0.33333334, 0.9369768], rtol=1e-6)
    assert as_tuple(out["by_buckets"]) == as_tuple(out["tf_idf"])


def test_tfidf_without_smoothing_uses_the_plain_inverse_document_frequency(tmp_path):
    # smooth=False: idf = 1 + log(documents / documents with the term), tf.Transform's formula.
    def preprocessing_fn(inputs):
        index, weight = tft.tfidf(tft.compute_and_apply_vocabulary(inputs["x"]), 4, smooth=False)
        return {"index": index, "weight": weight}

    table = pa.table({"x": [["I", "like", "pie", "pie", "pie"], ["yum", "yum", "pie"]]})
    out = run_engine(preprocessing_fn, table, {"x": FeatureSpec("string")}, tmp_path)["transformed"]
    assert as_tuple(out["index"])[1] == [0, 2, 3, 0, 1]
    once = 1 + np.log(2.0)  # a term in one of the two documents
    np.testing.assert_allclose(as_tuple(out["weight"])[1], [3 / 5, once / 5, once / 5, 1 / 3, 2 / 3 * once],
                               rtol=1e-6)


def test_output_dtype_gives_the_statistics_and_z_scores_in_that_type(tmp_path):
    traced_dtypes = []

    def preprocessing_fn(inputs):
        x = inputs["x"]
        outputs = {"z": tft.scale_to_z_score(x, output_dtype=tf.float64),
                   "mean": tft.mean(x, output_dtype=tf.float64) + tf.zeros_like(x, tf.float64),
                   "var": tft.var(x, output_dtype=tf.float64) + tf.zeros_like(x, tf.float64)}
        traced_dtypes.append({name: tensor.dtype for name, tensor in outputs.items()})
        return outputs

    values = np.array([1.5, 2.25, 7.0, -3.125, 0.1], np.float32)
    out = run_engine(preprocessing_fn, pa.table({"x": values}), {"x": dense("float32")}, tmp_path)["transformed"]
    # float64 in the graph; materialized, as every float output, as float32 (tf.Example's float type).
    assert traced_dtypes and all(set(found.values()) == {tf.float64} for found in traced_dtypes)
    wide = values.astype(np.float64)
    np.testing.assert_allclose(out["mean"].numpy().ravel(), np.full(5, wide.mean()), rtol=1e-7)
    np.testing.assert_allclose(out["var"].numpy().ravel(), np.full(5, wide.var()), rtol=1e-7)
    np.testing.assert_allclose(out["z"].numpy().ravel(), (wide - wide.mean()) / wide.std(), rtol=1e-6)


def test_asking_for_an_unknown_vocabulary_or_the_buckets_of_a_plain_tensor_is_a_one_line_error():
    def unknown_vocabulary(inputs):
        tft.vocabulary(inputs["s"], vocab_filename="words")
        return {"n": inputs["n"] + tf.cast(tft.experimental.get_vocabulary_size_by_name("wrods"), tf.float32)}

    def plain_buckets(inputs):
        return {"n": inputs["n"] + tf.cast(tft.get_num_buckets_for_transformed_feature(inputs["n"]), tf.float32)}

    raw = {"s": dense("string"), "n": dense("float32")}
    for fn, expected in ((unknown_vocabulary, "no tft.vocabulary in this preprocessing_fn writes 'wrods'"),
                         (plain_buckets, "tft.get_num_buckets_for_transformed_feature: the tensor is not")):
        with pytest.raises(PreprocessingFnError, match=expected) as info:
            plan_analysis(fn, raw, "my_module.py")
        assert "\n" not in str(info.value)


# --- side by side with real tensorflow-transform ---------------------------------------------


def make_parity_fn(tft):
    """One preprocessing_fn for both engines (``tft`` is tensorflow_transform or sluice.tft)."""

    def preprocessing_fn(inputs):
        s, t, i, words = inputs["s"], inputs["t"], inputs["i"], inputs["words"]  # var-len: SparseTensor
        n = inputs["n"][:, 0]  # dense [batch, 1] -> [batch]
        zeros = tf.zeros_like(n)
        with tf.name_scope("outer"):
            outer = tft.compute_and_apply_vocabulary(t, num_oov_buckets=2)
        integerized = tft.compute_and_apply_vocabulary(words, vocab_filename="words")
        index, weight = tft.tfidf(integerized, tft.experimental.get_vocabulary_size_by_name("words"))
        boundaries = tft.quantiles(n, 4, 0.01)
        return {
            "s1": tft.compute_and_apply_vocabulary(s),
            "s2": tft.compute_and_apply_vocabulary(t, top_k=2, name="named"),
            "s3": tft.compute_and_apply_vocabulary(t, vocab_filename="my vocab/x", default_value=-3),
            "s4": tft.compute_and_apply_vocabulary(i),
            "s5": tft.apply_vocabulary(t, tft.vocabulary(t, frequency_threshold=100), num_oov_buckets=3),
            "s6": outer,
            "freq": tft.compute_and_apply_vocabulary(t, store_frequency=True),
            "shuffled": tft.compute_and_apply_vocabulary(t, fingerprint_shuffle=True),
            "reserved": tft.compute_and_apply_vocabulary(t, reserved_tokens=["<unk>", "x"]),
            "index": index,
            "weight": weight,
            "n_bucket": tft.apply_buckets(n, boundaries),
            "n_bucketize": tft.bucketize(n, 3),
            "n_weighted": tft.bucketize(n, 3, weights=n * n),
            "n_scaled": tft.scale_by_min_max(n, 2.0, 4.0),
            "n_z": tft.scale_to_z_score(n),
            "n_sum": zeros + tf.cast(tft.sum(n), tf.float32),
            "s_size": tf.cast(zeros, tf.int64) + tft.size(s),
            "i_max": tf.cast(zeros, tf.int64) + tft.max(i),
            "words_bag": tft.bag_of_words(words, (1, 2), " "),
            "words_count": tft.word_count(words),
            "m_mean": zeros + tft.mean(inputs["m"]),  # m holds a NaN and an inf
            "m_var": zeros + tft.var(inputs["m"]),
            "m_min": zeros + tft.min(inputs["m"]),
            "m_max": zeros + tft.max(inputs["m"]),
            "m_sum": zeros + tft.sum(inputs["m"]),
            "v_bucket": tft.bucketize(inputs["v"], 3, elementwise=True),
            "v_scaled": tft.scale_by_min_max(inputs["v"], elementwise=True),
            "v_bounds": tf.zeros_like(inputs["v"][:, :1]) + tf.reshape(
                tft.quantiles(inputs["v"], 3, 0.01, reduce_instance_dims=False), [1, 4]),
            "v_sum": tf.zeros_like(inputs["v"]) + tft.sum(inputs["v"], reduce_instance_dims=False),
            "v_size": tf.zeros_like(inputs["v"], tf.int64) + tft.size(inputs["v"], reduce_instance_dims=False),
            "weighted": tft.compute_and_apply_vocabulary(t, weights=n, vocab_filename="weighted"),
            "weighted_freq": tft.compute_and_apply_vocabulary(i, weights=tf.ones_like(n) * 0.5, store_frequency=True),
            "m_empty_min": zeros + tft.min(tf.sparse.retain(inputs["m"], tf.zeros_like(inputs["m"].values, tf.bool))),
        }

    return preprocessing_fn


def parity_table() -> pa.Table:
    rng = np.random.default_rng(7)
    tokens = ["a", "", "  ", "a\nb", "c\r", "b", "c", "c", "b", None]
    vocab = ["the", "cat", "sat", "on", "mat", "a", "dog"]
    rows = 30
    return pa.table({
        "s": [tokens[k % len(tokens)] for k in range(rows)],
        "t": [["x", "y", "z", "q", "x", "y", "p q"][k % 7] for k in range(rows)],
        "i": pa.array([[3, 2, 111, 2, 111, 3, 3][k % 7] for k in range(rows)], pa.int64()),
        "words": [list(rng.choice(vocab, rng.integers(0, 6))) for _ in range(rows)],
        "n": pa.array(rng.uniform(0, 50, (rows, 1)).round(2).tolist(), pa.list_(pa.float32())),
        "v": pa.array(rng.normal([0.0, 10.0], [1.0, 3.0], (rows, 2)).round(2).tolist(), pa.list_(pa.float32())),
        "m": pa.array([float("nan"), float("inf")] + [float(k) for k in range(rows - 2)], pa.float32()),
    })


PARITY_SCHEMA = "".join([
    'feature { name: "s" type: BYTES }\n',
    'feature { name: "t" type: BYTES }\n',
    'feature { name: "i" type: INT }\n',
    'feature { name: "words" type: BYTES }\n',
    'feature { name: "m" type: FLOAT }\n',
    'feature { name: "v" type: FLOAT presence { min_fraction: 1.0 } shape { dim { size: 2 } } }\n',
    'feature { name: "n" type: FLOAT presence { min_fraction: 1.0 } shape { dim { size: 1 } } }\n',
])


def test_non_finite_values_as_tensorflow_transform():
    from sluice.components.tft.tracing import AnalyzerSpec

    values = np.array([1.0, np.nan, 3.0, np.inf], np.float32)
    results = {}
    for kind in ("mean_and_var", "min_max", "sum"):
        spec = AnalyzerSpec("k", kind, {"dtype": "float32"})
        results[kind] = extract(spec, add_to_accumulator(spec, new_accumulator(spec), values))
    assert results["mean_and_var"] == (2.0, 1.0)  # NaN and inf left out of mean and variance
    assert all(np.isnan(v) for v in results["min_max"]) and np.isnan(results["sum"])  # tf.reduce_max/sum propagate
    empty = AnalyzerSpec("k", "min_max", {"dtype": "int64"})
    assert extract(empty, new_accumulator(empty)) == (np.iinfo(np.int64).max, -np.iinfo(np.int64).max)


def test_apply_vocabulary_with_a_vocabulary_file_of_ones_own(tmp_path):
    vocab_file = tmp_path / "species.txt"
    vocab_file.write_text("Gentoo\nAdelie\nChinstrap\n")

    def preprocessing_fn(inputs):
        return {"species": tft.apply_vocabulary(inputs["s"], str(vocab_file)),
                "oov": tft.apply_vocabulary(inputs["s"], str(vocab_file), num_oov_buckets=1)}

    table = pa.table({"s": ["Adelie", "Gentoo", "Unknown", "Chinstrap"]})
    out = run_engine(preprocessing_fn, table, {"s": dense("string")}, tmp_path / "graph")
    assert column(out, "species") == [1, 0, -1, 2]
    assert column(out, "oov") == [1, 0, 3, 2]
    assert out["output"].num_buckets_for_transformed_feature("oov") == 4


def _saver_def_and_tf1_lookup(graph_dir: Path, tokens: list[str]) -> tuple[bool, list]:
    """Whether a saved transform graph has a TF1 saver, and its serving signature run in a TF1 session."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((graph_dir / "saved_model.pb").read_bytes())
    examples = [tf.train.Example(features=tf.train.Features(feature={"s": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[token.encode()]))})).SerializeToString() for token in tokens]
    with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(graph_dir))
        signature = meta_graph.signature_def["serving_default"]
        ids = session.run(signature.outputs["id"].name, {signature.inputs["examples"].name: examples})
    return saved.meta_graphs[0].HasField("saver_def"), ids.reshape(-1).tolist()


def test_a_graph_without_state_is_saved_without_a_saver_and_still_serves_in_tf1_sessions(tmp_path):
    from sluice.components.tft.graph import _has_state

    def static(inputs):
        return {"id": tft.compute_and_apply_vocabulary(inputs["s"], num_oov_buckets=1)}

    out = run_engine(static, pa.table({"s": ["b", "a", "b"]}), {"s": dense("string")}, tmp_path)
    assert column(out, "id") == [0, 1, 0]
    assert _saver_def_and_tf1_lookup(tmp_path / "transform_fn", ["a", "b", "zz"]) == (False, [1, 0, 2])

    # What a checkpoint restores keeps the saver: a variable, or a table that saves its contents.
    @tf.function(input_signature=[], autograph=False)
    def nothing():
        return tf.constant(0)

    def module(**attributes):
        made = tf.Module()
        made.tables, made.resources = attributes.pop("tables", []), attributes.pop("resources", [])
        for name, value in attributes.items():
            setattr(made, name, value)
        return made

    static_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a"], [0], tf.string, tf.int64), -1)
    concrete = nothing.get_concrete_function()
    assert not _has_state(module(tables=[static_table]), concrete)
    assert _has_state(module(resources=[tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, -1)]), concrete)
    assert _has_state(module(weights=tf.Variable(1.0)), concrete)


def test_batch_moments_leave_out_nan_and_infinite_values_and_take_integers():
    import tensorflow as tf

    def moments(values, columns=1):
        return batch_moments(tf.constant(values), columns).numpy().tolist()

    assert moments([1.0, 2.0, 3.0]) == [[3.0], [2.0], [2.0]]
    assert moments(np.array([1.0, np.nan, 2.0, 3.0, np.inf], np.float32)) == [[3.0], [2.0], [2.0]]
    assert moments(np.array([1, 2, 3], np.int64)) == [[3.0], [2.0], [2.0]]
    assert moments(np.array([[1.0, np.nan], [3.0, 4.0]]), 2) == [[2.0, 1.0], [2.0, 4.0], [2.0, 0.0]]
    assert moments(np.zeros([0], np.float32)) == [[0.0], [0.0], [0.0]]
    assert moments(np.array([2.0, np.nan, 4.0], np.float64)) == [[2.0], [3.0], [2.0]]


def test_batch_moments_of_floats_are_one_function_per_dtype_without_control_flow():
    import tensorflow as tf

    from sluice.components.tft.accumulators import _float_moments

    graphs = [tf.function(lambda x: batch_moments(x, 2), autograph=False).get_concrete_function(
        tf.TensorSpec([None], tf.float32)) for _ in range(2)]
    assert _float_moments(tf.float32) is _float_moments(tf.float32)
    assert _float_moments(tf.float64) is not _float_moments(tf.float32)
    called = {op.get_attr("f").name for graph in graphs for op in graph.graph.get_operations()
              if op.type.endswith("PartitionedCall")}
    assert called == {tf.compat.as_str(_float_moments(tf.float32).name)}
    kinds = {op.type for op in _float_moments(tf.float32).graph.get_operations()}
    assert not kinds & {"If", "StatelessIf", "PartitionedCall", "StatefulPartitionedCall"}
    assert graphs[1](tf.constant([1.0, 2.0, 3.0, 6.0])).numpy().tolist() == [[2.0, 2.0], [2.0, 4.0], [2.0, 8.0]]
    assert graphs[1](tf.constant([1.0, np.inf, 3.0, 4.0, np.nan, 6.0])).numpy().tolist() == \
        [[2.0, 2.0], [2.0, 5.0], [2.0, 2.0]]


def test_each_vocabulary_lookup_saves_one_resource(vocabularies):
    # One hash table per lookup (s1, s2, s3, s4, s5, s6, applied, freq), the out-of-vocabulary
    # buckets hashed beside it: tf.lookup.StaticVocabularyTable would add a second resource around
    # s5's table, which the SavedModel saves with three functions of its own.
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(vocabularies["output"].transform_savedmodel_dir) / "saved_model.pb").read_bytes())
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    assert sum(node.WhichOneof("kind") == "resource" for node in nodes) == 8
