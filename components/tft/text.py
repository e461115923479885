"""tf.Transform's text mappers on token lists: ``ngrams``, ``bag_of_words``, ``word_count``, ``tfidf``.

Token lists are 2-D ``SparseTensor`` rows ``[batch, tokens]`` (e.g. ``tf.strings.split(x).to_sparse()``
or a list column); the results are 2-D SparseTensors ordered as tf.Transform orders them.
"""

from __future__ import annotations

from typing import Any

from sluice.components.tft.analyzers import sum as tft_sum
from sluice.components.tft.tensors import import_tf
from sluice.components.tft.tracing import PreprocessingFnError, analyze, current_context, pending


def _check_2d(tokens: Any, function: str) -> None:
    tf = import_tf()
    if not isinstance(tokens, tf.SparseTensor) or tokens.get_shape().ndims != 2:
        raise PreprocessingFnError(f"{function} needs a 2-D SparseTensor of tokens [batch, tokens]")


def segment_indices(segment_ids: Any, name: str | None = None) -> Any:
    """The position of each element within its (sorted) segment: [0, 0, 1, 2, 2] -> [0, 0, 1, 0, 1]... per run."""
    tf = import_tf()
    with tf.compat.v1.name_scope(name, "segment_indices"):
        lengths = tf.math.segment_sum(tf.ones_like(segment_ids), segment_ids)
        starts = tf.gather(tf.concat([[0], tf.cumsum(lengths)], 0), segment_ids)
        return tf.range(tf.size(segment_ids, out_type=segment_ids.dtype)) - starts


def _rows_to_sparse(rows: Any, values: Any, batch: Any) -> Any:
    """A 2-D SparseTensor from row ids (sorted) and values: each row's values left-aligned."""
    tf = import_tf()
    columns = segment_indices(rows)
    width = tf.maximum(tf.reduce_max(columns), -1) + 1
    return tf.SparseTensor(tf.stack([rows, columns], 1), values, tf.stack([batch, width]))


def ngrams(tokens: Any, ngram_range: tuple[int, int], separator: str, name: str | None = None) -> Any:
    """All n-grams of each row for n in ``ngram_range`` (inclusive), joined with ``separator``.

    Per token position, its n-grams by increasing n: ["a", "b", "c"], (1, 2) ->
    ["a", "a b", "b", "b c", "c"], as tf.Transform.
    """
    tf = import_tf()
    _check_2d(tokens, "tft.ngrams")
    low, high = ngram_range
    if low < 1 or high < low:
        raise PreprocessingFnError(f"tft.ngrams: invalid ngram_range {ngram_range!r}")
    with tf.compat.v1.name_scope(name, "ngrams"):
        rows = tokens.indices[:, 0]

        def shifted(values: Any, fill: Any) -> list:
            padded = tf.concat([values, tf.fill([high], fill)], 0)
            return [tf.slice(padded, [i], tf.shape(values)) for i in range(high + 1)]

        shifted_rows = shifted(rows, tf.constant(-1, tf.int64))
        shifted_tokens = shifted(tokens.values, "")
        grams = tf.stack([tf.strings.join(shifted_tokens[:k], separator=separator) for k in range(low, high + 1)], 1)
        same_row = tf.cast(tf.equal(tf.stack(shifted_rows, 1), tf.expand_dims(rows, 1)), tf.int32)
        valid = tf.equal(tf.math.cumprod(same_row, axis=1), 1)[:, low - 1:high]
        gram_rows = tf.boolean_mask(tf.tile(tf.expand_dims(rows, 1), [1, high + 1 - low]), valid)
        return _rows_to_sparse(gram_rows, tf.boolean_mask(grams, valid), tokens.dense_shape[0])


def deduplicate_tensor_per_row(input_tensor: Any, name: str | None = None) -> Any:
    """Each row's distinct values, in first-seen order (2-D SparseTensor)."""
    tf = import_tf()
    _check_2d(input_tensor, "tft.deduplicate_tensor_per_row")
    with tf.compat.v1.name_scope(name, "deduplicate_per_row"):
        rows = input_tensor.indices[:, 0]
        distinct, value_ids = tf.unique(input_tensor.values, out_idx=tf.int64)
        width = tf.size(distinct, out_type=tf.int64)
        pairs, _ = tf.unique(rows * width + value_ids, out_idx=tf.int64)  # first-seen order, rows stay sorted
        return _rows_to_sparse(pairs // tf.maximum(width, 1), tf.gather(distinct, pairs % tf.maximum(width, 1)),
                               input_tensor.dense_shape[0])


def bag_of_words(tokens: Any, ngram_range: tuple[int, int], separator: str, name: str | None = None) -> Any:
    """The distinct n-grams of each row (``ngrams`` then ``deduplicate_tensor_per_row``)."""
    tf = import_tf()
    _check_2d(tokens, "tft.bag_of_words")
    with tf.compat.v1.name_scope(name, "bag_of_words"):
        return deduplicate_tensor_per_row(ngrams(tokens, ngram_range, separator))


def word_count(tokens: Any, name: str | None = None) -> Any:
    """The number of tokens in each row (int64 ``[batch]``) of a SparseTensor or RaggedTensor."""
    tf = import_tf()
    with tf.compat.v1.name_scope(name, "word_count"):
        if isinstance(tokens, tf.RaggedTensor):
            return tokens.row_lengths()
        if not isinstance(tokens, tf.SparseTensor):
            raise PreprocessingFnError("tft.word_count needs a SparseTensor or RaggedTensor of tokens")
        ones = tf.SparseTensor(tokens.indices, tf.ones_like(tokens.values, tf.int64), tokens.dense_shape)
        result = tf.sparse.reduce_sum(ones, axis=list(range(1, tokens.get_shape().ndims)))
        result.set_shape([tokens.shape[0]])
        return result


def _document_frequencies(pair_terms: Any, vocab_size: Any) -> Any:
    """For the distinct terms of each row, the number of documents of the dataset containing the term."""
    tf = import_tf()
    value = analyze("count_per_value", pair_terms)
    key = current_context().specs[-1].key
    if value is None:
        return pending(tf.zeros_like(pair_terms, tf.float32), key)
    seen = tf.constant(value["values"], tf.int64, shape=[len(value["values"])])
    counts = tf.constant(value["counts"], tf.float32, shape=[len(value["counts"])])
    per_term = tf.scatter_nd(tf.expand_dims(seen, 1), counts, tf.reshape(vocab_size, [1]))
    return tf.gather(per_term, pair_terms)


def tfidf(x: Any, vocab_size: Any, smooth: bool = True, name: str | None = None) -> tuple[Any, Any]:
    """Term frequency * inverse document frequency of each distinct term of each row, as tf.Transform.

    ``x``: 2-D SparseTensor of term ids (e.g. from ``compute_and_apply_vocabulary``), taken
    modulo ``vocab_size``. tf = count in row / row length; idf = 1 + log((N + 1) / (df + 1))
    (``smooth``) or 1 + log(N / df). Returns ``(term ids, weights)``, two SparseTensors with
    indices ``[row, i]`` over each row's distinct terms in increasing id order.
    """
    tf = import_tf()
    _check_2d(x, "tft.tfidf")
    with tf.compat.v1.name_scope(name, "tfidf"):
        vocab_size = tf.cast(vocab_size, tf.int64)
        rows, terms = x.indices[:, 0], tf.math.floormod(tf.cast(x.values, tf.int64), vocab_size)
        batch = x.dense_shape[0]
        pairs, pair_ids = tf.unique(rows * vocab_size + terms, out_idx=tf.int64)
        order = tf.argsort(pairs)
        pairs = tf.gather(pairs, order)
        counts = tf.gather(tf.math.unsorted_segment_sum(tf.ones_like(pair_ids, tf.float64), pair_ids,
                                                        tf.size(order)), order)
        pair_rows, pair_terms = pairs // vocab_size, pairs % vocab_size
        lengths = tf.math.unsorted_segment_sum(tf.ones_like(rows, tf.float64), rows, batch)
        term_frequency = counts / tf.gather(lengths, pair_rows)
        df = _document_frequencies(pair_terms, vocab_size)
        corpus = tf.cast(tft_sum(tf.reshape(batch, [1])), tf.float32)
        idf = (tf.math.log((corpus + 1.0) / (1.0 + df)) if smooth else tf.math.log(corpus / df)) + 1.0
        weights = tf.cast(term_frequency, tf.float32) * idf
        ids = _rows_to_sparse(pair_rows, pair_terms, batch)
        return ids, tf.SparseTensor(ids.indices, weights, ids.dense_shape)

