"""``tft.dictionary``: string values gathered from a batch's dictionary are looked up and counted per
distinct string, with the same results as value by value."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import tensorflow as tf

from sluice.components.tft.accumulators import batch_counts
from sluice.components.tft.dictionary import dictionary_counts, map_through_dictionary
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.packed import pack, packed_signature, unpack

RAW = {"city": FeatureSpec("string"), "code": FeatureSpec("string", (1,))}
LONG = "Taxi Affiliation Services of Greater Chicago"  # over 22 bytes: a heap copy per value


def _batch() -> pa.Table:
    cities = pa.array(["Chicago", None, LONG, "", "Chicago", None, "Evanston", LONG]).dictionary_encode()
    # A dictionary holding one string twice (two chunks' dictionaries concatenated can).
    codes = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1, 0, 2, 1, 1], pa.int32()),
                                           pa.array(["a", "b", "a"]))
    return pa.table({"city": cities, "code": codes})


def _densified(inputs):
    city = inputs["city"]
    dense = tf.sparse.to_dense(tf.SparseTensor(city.indices, city.values, [city.dense_shape[0], 1]), "missing")
    return {"city": tf.squeeze(dense, axis=1), "city_sparse": city.values,
            "code": tf.reshape(inputs["code"], [-1]), "city_lower": tf.strings.lower(tf.squeeze(dense, axis=1))}


def _table():
    keys = tf.constant(["Chicago", LONG, "missing", "a"])
    return tf.lookup.StaticVocabularyTable(tf.lookup.KeyValueTensorInitializer(keys, tf.range(4, dtype=tf.int64)), 2)


def _lookup_ops(concrete) -> list[str]:
    """The op type feeding the keys of each lookup in ``concrete``'s graph."""
    return sorted(op.inputs[1].op.type for op in concrete.graph.get_operations() if op.type == "LookupTableFindV2")


def test_lookups_of_dictionary_strings_run_on_the_dictionary_and_give_the_values_lookups_give():
    table = _table()

    def build(through_dictionary):
        @tf.function(input_signature=[packed_signature(RAW)], autograph=False)
        def function(packed):
            values = _densified(unpack(packed, RAW))
            lookup = (lambda v: map_through_dictionary(v, table.lookup)) if through_dictionary else table.lookup
            return {name: lookup(tensor) for name, tensor in values.items()}

        return function.get_concrete_function()

    rewritten, plain = build(True), build(False)
    packed = pack(_batch(), RAW)
    got, expected = rewritten(packed), plain(packed)
    for name in expected:
        assert got[name].shape.as_list() == expected[name].shape.as_list(), name
        np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy(), err_msg=name)
    ids = got["city"].numpy().tolist()
    assert [ids[i] for i in (0, 1, 2, 4, 5, 7)] == [0, 2, 1, 0, 2, 1] and ids[3] >= 4 and ids[6] >= 4  # OOV buckets
    # Three lookups take the dictionary (a placeholder), one the densifying's default (a constant); the
    # lowered strings are computed, so looked up one by one.
    assert _lookup_ops(rewritten) == ["Const", "Placeholder", "Placeholder", "Placeholder", "StringLower"]
    assert _lookup_ops(plain) == ["GatherV2", "Reshape", "Squeeze", "StringLower"]
    # Eagerly there is no graph to follow: the function is applied to the values.
    eager = unpack(packed, RAW)["city"].values
    np.testing.assert_array_equal(map_through_dictionary(eager, table.lookup).numpy(), table.lookup(eager).numpy())


def test_dictionary_counts_are_the_counts_of_the_values_a_repeated_string_and_the_default_included():
    @tf.function(input_signature=[packed_signature(RAW)], autograph=False)
    def counts(packed):
        values = _densified(unpack(packed, RAW))
        found = {name: dictionary_counts(tf.reshape(tensor, [-1])) for name, tensor in values.items()}
        return {name: result for name, result in found.items() if result is not None}

    concrete = counts.get_concrete_function()
    assert set(concrete.structured_outputs) == {"city", "city_sparse", "code"}  # not the lowered strings
    packed = pack(_batch(), RAW)
    got = concrete(packed)
    values = unpack(packed, RAW)
    expected = {"city": ["Chicago", "missing", LONG, "", "Chicago", "missing", "Evanston", LONG],
                "city_sparse": ["Chicago", LONG, "", "Chicago", "Evanston", LONG],
                "code": ["a", "b", "a", "b", "a", "a", "b", "b"]}
    for name, strings in expected.items():
        counted = collections.Counter()
        for token, count in zip(got[name]["unique"].numpy().tolist(), got[name]["counts"].numpy().tolist()):
            counted[token] += count
        assert counted == collections.Counter(s.encode() for s in strings), name
        plain = batch_counts(tf.reshape(_densified(values)[name], [-1]))
        assert counted == dict(zip(plain["unique"].numpy().tolist(), plain["counts"].numpy().tolist())), name
    # "a" is at two codes of the dictionary: listed twice, its counts add up.
    assert got["code"]["unique"].numpy().tolist().count(b"a") == 2
