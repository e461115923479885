"""tf.Transform-style full-pass preprocessing: the API of a user's ``preprocessing_fn``, and its engine.

A user module defines ``preprocessing_fn(inputs) -> outputs``: ``inputs`` maps each raw
feature to a tensor built from the schema as tf.Transform builds it (dense ``[batch, *shape]``
for a fixed-shape, always-present feature; otherwise a ``tf.SparseTensor [batch, n]``, a
missing value being no entry); ``outputs`` maps transformed feature names to dense tensors
of a fixed shape, or to 2-D SparseTensors/RaggedTensors for variable-length values.
Inside it, the analyzers below need statistics over the whole dataset (mean, vocabulary,
quantiles); everything else is plain TensorFlow::

    import tensorflow as tf
    from sluice import tft

    def preprocessing_fn(inputs):
        fare = tft.fill_missing(inputs["fare"], 0.0)
        return {
            "fare_xf": tft.scale_to_z_score(fare),
            "company_xf": tft.compute_and_apply_vocabulary(
                tft.fill_missing(inputs["company"], ""), top_k=1000, num_oov_buckets=10),
            "tips_xf": tf.cast(tft.fill_missing(inputs["tips"], 0.0) > 0.2 * fare, tf.int64),
        }

How it runs (as TFT): ``preprocessing_fn`` is traced once in *analysis mode*, where each
analyzer registers its input tensor and returns a placeholder (``tracing``). The analyzer
inputs are then computed from raw Arrow batches by one traced ``tf.function`` and reduced by
mergeable combiners (``accumulators``) in one Beam pass (the Transform component's
``AnalyzeDataset``). An analyzer whose input depends on another analyzer's result runs in a
later phase of the same pass. Finally ``preprocessing_fn`` is traced once more with the
results baked in as constants and saved as a SavedModel (``graph``: ``<uri>/transform_fn/``),
which also materializes the transformed examples, so training and serving apply the very
same graph.

Trainer module files and serving code use ``tft.TransformOutput(transform_graph_uri)``;
``arrow_to_raw_tensors`` and ``raw_input_signature`` give the graph's raw inputs.

The analyzers and mappers keep tensorflow-transform's names, signatures, output shapes and
semantics: ``mean``, ``var``, ``min``, ``max``, ``sum``, ``size`` (``reduce_instance_dims``),
``quantiles`` (shaped ``[1, num_buckets - 1]``), ``vocabulary`` (empty and line-break tokens
dropped, ties by bytes descending, files named ``vocab_<name scope>``), ``apply_vocabulary``,
``compute_and_apply_vocabulary``, ``scale_to_z_score``, ``scale_to_0_1``, ``scale_by_min_max``,
``bucketize`` and ``apply_buckets`` (``elementwise=True`` on a dense ``[batch, ...]`` input),
``hash_strings``, ``ngrams``, ``bag_of_words``, ``word_count``, ``tfidf``,
``sparse_tensor_to_dense_with_shape``, ``annotate_asset``, ``experimental.get_vocabulary_size_by_name``.
Mappers keep their input's kind and shape (dense, SparseTensor, RaggedTensor). An argument
Sluice does not support (``labels``, ``key_fn``, ``coverage_top_k``, ``file_format='tfrecord_gzip'``,
``lookup_fn``...) is a one-line ``PreprocessingFnError`` naming it, and so is tf.Transform API it lacks
(``tft.pca``, ``tft.tukey_location``, the ``*_per_key`` mappers...). ``preprocessing_fn`` is traced without
AutoGraph (use ``tf.where``/``tf.cond`` rather than a Python ``if`` on tensors).

Importing this package imports neither TensorFlow nor Beam.
"""

from sluice.components.tft import experimental
from sluice.components.tft.analyzers import max, mean, min, quantiles, size, sum, var
from sluice.components.tft.mappers import (
    annotate_asset,
    apply_buckets,
    bucketize,
    fill_missing,
    get_num_buckets_for_transformed_feature,
    hash_strings,
    scale_by_min_max,
    scale_to_0_1,
    scale_to_z_score,
    sparse_tensor_left_align,
    sparse_tensor_to_dense_with_shape,
)
from sluice.components.tft.output import TFTransformOutput, TransformOutput
from sluice.components.tft.tensors import arrow_to_raw_tensors, raw_input_signature
from sluice.components.tft.text import (
    bag_of_words,
    deduplicate_tensor_per_row,
    ngrams,
    segment_indices,
    tfidf,
    word_count,
)
from sluice.components.tft.tracing import PreprocessingFnError
from sluice.components.tft.vocabulary import apply_vocabulary, compute_and_apply_vocabulary, vocabulary

__all__ = [
    "PreprocessingFnError",
    "TFTransformOutput",
    "TransformOutput",
    "annotate_asset",
    "apply_buckets",
    "apply_vocabulary",
    "arrow_to_raw_tensors",
    "bag_of_words",
    "bucketize",
    "compute_and_apply_vocabulary",
    "deduplicate_tensor_per_row",
    "experimental",
    "fill_missing",
    "get_num_buckets_for_transformed_feature",
    "hash_strings",
    "max",
    "mean",
    "min",
    "ngrams",
    "quantiles",
    "raw_input_signature",
    "scale_by_min_max",
    "scale_to_0_1",
    "scale_to_z_score",
    "segment_indices",
    "size",
    "sparse_tensor_left_align",
    "sparse_tensor_to_dense_with_shape",
    "sum",
    "tfidf",
    "var",
    "vocabulary",
    "word_count",
]

# tf.Transform's API that Sluice does not implement: named in one line rather than a bare AttributeError.
_NOT_SUPPORTED = frozenset({
    "apply_buckets_with_interpolation", "apply_pyfunc", "bucketize_per_key", "count_per_key", "covariance",
    "estimated_probability_density", "get_analyze_input_columns", "get_transform_input_columns", "histogram",
    "make_and_track_object", "pca", "scale_by_min_max_per_key", "scale_to_0_1_per_key", "scale_to_gaussian",
    "scale_to_z_score_per_key", "tukey_h_params", "tukey_location", "tukey_scale", "coders", "DatasetMetadata",
})


def __getattr__(name: str):
    if name in _NOT_SUPPORTED:
        raise AttributeError(f"tft.{name} is not supported by Sluice's tf.Transform")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
