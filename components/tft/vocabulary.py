"""tf.Transform's vocabulary analyzer and its mappers: ``vocabulary``, ``apply_vocabulary``,
``compute_and_apply_vocabulary``, ``experimental.get_vocabulary_size_by_name``.

As tf.Transform: empty tokens and tokens with ``\\n`` or ``\\r`` are dropped; tokens rank by
count, ties by their bytes descending; an empty vocabulary holds one dummy token; the file is
named ``vocab_<name scope>`` (``vocab_compute_and_apply_vocabulary_vocabulary``, then
``..._1_vocabulary``) unless ``vocab_filename`` is given (made path-safe the same way).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from sluice.components.tft.analyzers import reject_unsupported, values_of
from sluice.components.tft.dictionary import map_through_dictionary
from sluice.components.tft.mappers import annotate_any, map_any
from sluice.components.tft.tensors import import_tf
from sluice.components.tft.tracing import PreprocessingFnError, TraceContext, analyze, current_context, pending

VOCAB_FILENAME_PREFIX = "vocab_"
VOCAB_FREQUENCY_FILENAME_PREFIX = "vocab_frequency_"


def sanitized_vocab_filename(filename: str) -> str:
    """tf.Transform's path-safe file name: non-word characters -> ``_``, whitespace runs -> ``-``."""
    filename = re.sub(r"[^\w\s-]", "_", filename).strip()
    return re.sub(r"[-\s]+", "-", filename)


def _check_arguments(top_k: Any, frequency_threshold: Any, file_format: str, reserved_tokens: Any) -> None:
    if top_k is not None and int(top_k) <= 0:
        raise PreprocessingFnError(f"tft.vocabulary: top_k must be positive, got {top_k!r}")
    if frequency_threshold is not None and float(frequency_threshold) < 0:
        raise PreprocessingFnError(f"tft.vocabulary: frequency_threshold must be >= 0, got {frequency_threshold!r}")
    if file_format != "text":
        raise PreprocessingFnError(f"tft.vocabulary: argument file_format={file_format!r} is not supported by "
                                   "Sluice's tf.Transform (only 'text')")
    if reserved_tokens is not None and not isinstance(reserved_tokens, (list, tuple)):
        raise PreprocessingFnError("tft.vocabulary: argument reserved_tokens= must be a list of strings in Sluice "
                                   "(a tensor is not supported)")


def vocabulary(x: Any, *, top_k: int | None = None, frequency_threshold: int | None = None,
               vocab_filename: str | None = None, store_frequency: bool | None = False,
               reserved_tokens: Any = None, weights: Any = None, labels: Any = None,
               use_adjusted_mutual_info: bool = False, min_diff_from_avg: int | None = None,
               coverage_top_k: int | None = None, coverage_frequency_threshold: int | None = None,
               key_fn: Any = None, fingerprint_shuffle: bool | None = False, file_format: str = "text",
               name: str | None = None) -> Any:
    """The unique values of ``x`` (strings or integers) over the dataset; returns the vocabulary's file name.

    Ranked by count, most frequent first, ties by value descending as bytes (integers by
    their decimal text). ``frequency_threshold`` drops rarer values, then ``top_k`` keeps
    the first; ``reserved_tokens`` come first; ``store_frequency`` writes ``"count token"``
    lines; ``fingerprint_shuffle`` orders by the tokens' SHA-1; with ``weights`` (same shape as
    ``x``) tokens rank by summed weight. ``use_adjusted_mutual_info`` and ``min_diff_from_avg``
    only matter with ``labels`` (as in tf.Transform); ``labels`` and the coverage arguments are
    not supported.
    """
    tf = import_tf()
    reject_unsupported("tft.vocabulary", labels=labels, coverage_top_k=coverage_top_k,
                       coverage_frequency_threshold=coverage_frequency_threshold, key_fn=key_fn)
    _check_arguments(top_k, frequency_threshold, file_format, reserved_tokens)
    if x.dtype == tf.string:
        input_dtype = "string"
    elif x.dtype.is_integer:
        input_dtype = "int64"
    else:
        raise PreprocessingFnError(f"tft.vocabulary needs string or integer input, got {x.dtype.name}")
    context = current_context()
    with tf.compat.v1.name_scope(name, "vocabulary"):
        if vocab_filename is not None:
            filename = sanitized_vocab_filename(vocab_filename)
        else:
            prefix = VOCAB_FREQUENCY_FILENAME_PREFIX if store_frequency else VOCAB_FILENAME_PREFIX
            filename = sanitized_vocab_filename(prefix + tf.compat.v1.get_default_graph().get_name_scope())
        if filename in context.vocabulary_names.values():
            raise PreprocessingFnError(f"two tft.vocabulary calls write the vocabulary file {filename!r}")
        values = values_of(x)
        values = tf.cast(values, tf.int64) if input_dtype == "int64" else values
        if weights is not None:
            values = _weighted_tokens(values, weights)
        value = analyze("vocabulary", values, weighted=weights is not None,
                        top_k=None if top_k is None else int(top_k),
                        frequency_threshold=None if frequency_threshold is None else float(frequency_threshold),
                        vocab_filename=filename, input_dtype=input_dtype, store_frequency=bool(store_frequency),
                        fingerprint_shuffle=bool(fingerprint_shuffle),
                        reserved_tokens=None if reserved_tokens is None else [str(t) for t in reserved_tokens])
        key = context.specs[-1].key
        context.vocabulary_names[key] = filename
        if vocab_filename is not None and vocab_filename != filename:
            from sluice.components.tft.mappers import annotate_asset

            annotate_asset(vocab_filename, filename)  # tf.Transform finds it by the name the user gave too
        result = tf.constant(filename) if value is not None else pending(tf.constant(filename), key)
        context.vocabularies[result.ref()] = key
        return result


def _weighted_tokens(values: Any, weights: Any) -> Any:
    """Each batch's distinct tokens with their summed weight, as ``"<float64 bits> <token>"`` strings."""
    tf = import_tf()
    weights = tf.reshape(tf.cast(values_of(weights), tf.float64), [-1])
    unique, index = tf.unique(tf.reshape(values, [-1]), out_idx=tf.int64)
    sums = tf.math.unsorted_segment_sum(weights, index, tf.size(unique, out_type=tf.int64))
    text = unique if unique.dtype == tf.string else tf.strings.as_string(unique)
    return tf.strings.join([tf.strings.as_string(tf.bitcast(sums, tf.int64)), text], separator=" ")


def _vocabulary_key(context: TraceContext, deferred: Any) -> str:
    """The analyzer key of a ``tft.vocabulary`` result, or of a vocabulary file name (a str)."""
    if isinstance(deferred, (str, bytes)):
        wanted = deferred.decode() if isinstance(deferred, bytes) else deferred
        aliases = getattr(context, "asset_annotations", None) or {}
        candidates = {wanted, aliases.get(wanted, wanted), sanitized_vocab_filename(wanted)}
        for key, filename in context.vocabulary_names.items():
            if filename in candidates:
                return key
        raise PreprocessingFnError(f"no tft.vocabulary in this preprocessing_fn writes {wanted!r}")
    key = context.vocabularies.get(getattr(deferred, "ref", lambda: None)())
    if key is None:
        raise PreprocessingFnError(
            "tft.apply_vocabulary expects the tensor returned by tft.vocabulary in the same preprocessing_fn"
        )
    return key


def apply_vocabulary(x: Any, deferred_vocab_filename_tensor: Any, *, default_value: Any = -1,
                     num_oov_buckets: int = 0, lookup_fn: Any = None, file_format: str = "text",
                     name: str | None = None) -> Any:
    """Maps ``x`` to its index in a vocabulary computed by ``tft.vocabulary`` (int64, same shape/kind as ``x``).

    Out-of-vocabulary values map to ``default_value``, or with ``num_oov_buckets > 0`` to
    ``vocab_size + fingerprint(x) % num_oov_buckets`` (tf.lookup.StaticVocabularyTable).
    """
    tf = import_tf()
    reject_unsupported("tft.apply_vocabulary", lookup_fn=lookup_fn)
    if file_format != "text":
        raise PreprocessingFnError(f"tft.apply_vocabulary: argument file_format={file_format!r} is not supported "
                                   "by Sluice's tf.Transform (only 'text')")
    if x.dtype != tf.string and not x.dtype.is_integer:
        raise PreprocessingFnError(f"tft.apply_vocabulary needs string or integer input, got {x.dtype.name}")
    context = current_context()
    external = _external_vocabulary(context, deferred_vocab_filename_tensor, x.dtype)
    key = external["key"] if external else _vocabulary_key(context, deferred_vocab_filename_tensor)
    with tf.compat.v1.name_scope(name, "apply_vocab"):
        vocab = external or context.values.get(key)
        if vocab is None:
            result = map_any(x, lambda v: pending(tf.zeros_like(v, tf.int64), key))
            _remember_pending(context, result, key)
            return result
        keys = vocab.get("keys", vocab["tokens"])
        lookup = _lookup(context, key, vocab, num_oov_buckets, default_value)
        key_dtype = tf.string if vocab["input_dtype"] == "string" else tf.int64
        # Strings from a batch's dictionary: each distinct one looked up once (``dictionary``).
        result = map_any(x, lambda values: map_through_dictionary(tf.cast(values, key_dtype), lookup))
        if num_oov_buckets > 0:
            low, high = 0, len(keys) + num_oov_buckets - 1
        else:
            low, high = min(0, int(default_value)), max(len(keys) - 1, int(default_value))
        if external:
            return annotate_any(result, min=low, max=high)
        return annotate_any(result, min=low, max=high, vocabulary=context.vocabulary_names[key])


def _external_vocabulary(context: TraceContext, deferred: Any, dtype: Any) -> dict | None:
    """A vocabulary file of the user's own (a path, one token per line), read while tracing, or None."""
    if not isinstance(deferred, (str, bytes, os.PathLike)):
        return None
    path = os.fsdecode(deferred)
    named = set(context.vocabulary_names.values()) | set(getattr(context, "asset_annotations", None) or {})
    if path in named or sanitized_vocab_filename(path) in named or not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    string = dtype == import_tf().string
    try:
        keys = lines if string else [int(line) for line in lines]
    except ValueError:
        raise PreprocessingFnError(f"tft.apply_vocabulary: {path} holds a line that is not an integer") from None
    if not keys:
        raise PreprocessingFnError(f"tft.apply_vocabulary: the vocabulary file {path} is empty")
    return {"key": f"file:{path}", "tokens": keys, "input_dtype": "string" if string else "int64"}


def _remember_pending(context: TraceContext, result: Any, key: str) -> None:
    """Lets ``get_num_buckets_for_transformed_feature`` wait on the vocabulary ``result`` comes from."""
    tf = import_tf()
    target = result.values if isinstance(result, tf.SparseTensor) else result
    target = target.flat_values if isinstance(target, tf.RaggedTensor) else target
    if getattr(context, "pending_buckets", None) is None:
        context.pending_buckets = {}
    context.pending_buckets[target.ref()] = key


def _lookup(context: TraceContext, key: str, vocab: dict, num_oov_buckets: int, default_value: Any) -> Callable:
    """The lookup of ``vocab``'s keys: their indices, out-of-vocabulary keys to ``default_value``
    or, with ``num_oov_buckets``, hashed into that many buckets after the keys as
    ``tf.lookup.StaticVocabularyTable`` hashes them. One ``StaticHashTable`` per vocabulary, bucket
    count and default, and nothing else: that class wraps a second resource around such a table,
    which a SavedModel then saves with three functions of its own (bench/PROFILES.md)."""
    tf = import_tf()
    keys = vocab.get("keys", vocab["tokens"])
    cache_key = (key, num_oov_buckets, int(default_value))
    if cache_key not in context.tables:
        # Created eagerly (outside the traced graph) so a SavedModel tracks it as a resource.
        with tf.init_scope():
            dtype = tf.string if vocab["input_dtype"] == "string" else tf.int64
            initializer = tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, dtype=dtype, shape=[len(keys)]), tf.range(len(keys), dtype=tf.int64))
            missing = -1 if num_oov_buckets > 0 else int(default_value)
            context.tables[cache_key] = tf.lookup.StaticHashTable(initializer, tf.constant(missing, tf.int64))
    table = context.tables[cache_key]
    if num_oov_buckets <= 0:
        return table.lookup

    def lookup_or_hash(values: Any) -> Any:
        ids = table.lookup(values)
        text = values if values.dtype == tf.string else tf.strings.as_string(values)
        buckets = tf.strings.to_hash_bucket_fast(text, num_oov_buckets) + len(keys)
        return tf.where(tf.not_equal(ids, -1), ids, buckets)

    return lookup_or_hash


def compute_and_apply_vocabulary(x: Any, *, default_value: Any = -1, top_k: int | None = None,
                                 frequency_threshold: int | None = None, num_oov_buckets: int = 0,
                                 vocab_filename: str | None = None, weights: Any = None, labels: Any = None,
                                 use_adjusted_mutual_info: bool = False, min_diff_from_avg: float = 0.0,
                                 coverage_top_k: int | None = None, coverage_frequency_threshold: int | None = None,
                                 key_fn: Any = None, fingerprint_shuffle: bool = False, file_format: str = "text",
                                 store_frequency: bool | None = False, reserved_tokens: Any = None,
                                 name: str | None = None) -> Any:
    """``apply_vocabulary(x, vocabulary(x, ...), ...)``: strings or integers -> int64 indices."""
    tf = import_tf()
    with tf.compat.v1.name_scope(name, "compute_and_apply_vocabulary"):
        if store_frequency and file_format == "text" and x.dtype == tf.string:
            # As tf.Transform: a "count token" line cannot hold a token with a space.
            x = map_any(x, lambda v: tf.strings.regex_replace(v, " ", "__SPACE__"))
        vocab = vocabulary(x, top_k=top_k, frequency_threshold=frequency_threshold, vocab_filename=vocab_filename,
                           store_frequency=store_frequency, reserved_tokens=reserved_tokens, weights=weights,
                           labels=labels, use_adjusted_mutual_info=use_adjusted_mutual_info,
                           min_diff_from_avg=min_diff_from_avg, coverage_top_k=coverage_top_k,
                           coverage_frequency_threshold=coverage_frequency_threshold, key_fn=key_fn,
                           fingerprint_shuffle=fingerprint_shuffle, file_format=file_format)
        return apply_vocabulary(x, vocab, default_value=default_value, num_oov_buckets=num_oov_buckets,
                                file_format=file_format)


def get_vocabulary_size_by_name(vocab_filename: str) -> Any:
    """The size (int64 scalar) of the vocabulary written as ``vocab_filename`` in this preprocessing_fn.

    Counts its entries, not the OOV buckets (tf.Transform's ``experimental.get_vocabulary_size_by_name``).
    """
    tf = import_tf()
    context = current_context()
    key = _vocabulary_key(context, str(vocab_filename))
    vocab = context.values.get(key)
    if vocab is None:
        return pending(tf.constant(1, tf.int64), key)
    return tf.constant(len(vocab.get("keys", vocab["tokens"])), tf.int64)
