"""Accumulators -> ``DatasetFeatureStatisticsList``: what TFDV's default generators write for scalar columns.

Common stats, numeric stats with a STANDARD and a QUANTILES histogram, string
stats with uniques, top values and the rank histogram, so TFDV-based tools
(``tfdv.load_stats_binary``, ``tfdv.infer_schema``, Facets) read them unchanged.
The histogram helpers follow tensorflow_data_validation/utils/quantiles_util.py
(Apache 2.0), so bucket boundaries and counts match TFDV's.
"""

from __future__ import annotations

import functools
import math

from sluice.components.statistics_gen.accumulate import DatasetAccumulator
from sluice.components.statistics_gen.lists import ListAccumulator, list_common_stats
from sluice.components.statistics_gen.values import ValueCounts, as_text

# TFDV's StatsOptions defaults, so both produce the same shape of statistics.
NUM_TOP_VALUES = 20
NUM_RANK_HISTOGRAM_BUCKETS = 1000
NUM_VALUES_HISTOGRAM_BUCKETS = 10
NUM_HISTOGRAM_BUCKETS = 10
NUM_QUANTILES_HISTOGRAM_BUCKETS = 10
# TFDV builds the equi-width histogram from 100x finer quantiles than it reports.
QUANTILES_PER_HISTOGRAM_BUCKET = 100


def to_statistics_proto(accumulator: DatasetAccumulator, dataset_name: str):
    """The ``DatasetFeatureStatisticsList`` of one dataset's accumulator."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    result = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = result.datasets.add(name=dataset_name, num_examples=accumulator.num_examples)
    for name, column in accumulator.columns.items():
        dataset.features.append(_feature_proto(name, column, accumulator.num_examples, statistics_pb2))
    return result


def _bin_weights(boundaries, cumulative):
    import numpy as np

    cumulative = cumulative.astype(np.float64)
    low, high = boundaries[:-1], boundaries[1:]
    counts = np.diff(cumulative)
    if low.size == 0:
        return low, high, counts
    # Bins sharing an upper bound (a run of equal highs) share their weight evenly.
    run_starts = np.concatenate([[True], high[1:] != high[:-1]])
    run_ids = np.cumsum(run_starts) - 1
    run_sizes = np.bincount(run_ids)
    counts = np.where(run_sizes[run_ids] > 1,
                      (np.bincount(run_ids, weights=counts) / run_sizes)[run_ids], counts)
    # The minimum's own weight goes to the leading bins equal to the first one.
    leading = (low == low[0]) & (high == high[0])
    same = low.size if leading.all() else int(np.argmin(leading))
    counts[0:same] += cumulative[0] / same
    return low, high, counts


def _quantiles_histogram(boundaries, cumulative, statistics_pb2):
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    for low, high, count in zip(*_bin_weights(boundaries, cumulative)):
        histogram.buckets.add(low_value=low, high_value=high, sample_count=count)
    return histogram


def _equi_width_histogram(boundaries, cumulative, finite_min, finite_max, num_pos_inf, statistics_pb2):
    """TFDV's STANDARD histogram: quantile buckets spread linearly over equal-width buckets."""
    import numpy as np

    result = statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
    if not math.isfinite(finite_min) and not math.isfinite(finite_max):
        result.buckets.add(low_value=finite_min, high_value=finite_max, sample_count=cumulative[-1])
        return result
    # Strip infinities: -inf buckets become one leading bucket, +inf one trailing bucket.
    neg_inf_index = np.searchsorted(boundaries, -np.inf, side="right")
    num_neg_inf = 0.0
    if neg_inf_index:
        num_neg_inf = cumulative[neg_inf_index - 1]
        boundaries, cumulative = boundaries[neg_inf_index:], cumulative[neg_inf_index:] - num_neg_inf
    if num_pos_inf:
        pos_inf_index = np.searchsorted(boundaries, np.inf, side="left")
        finite_count = cumulative[-1] - num_pos_inf
        boundaries = np.concatenate([boundaries[:pos_inf_index], [finite_max]])
        cumulative = np.concatenate([cumulative[:pos_inf_index], [finite_count]])
    low, high, counts = _bin_weights(boundaries, cumulative)
    if finite_min == finite_max:
        edges = np.array([finite_min, finite_max])
    else:
        edges = np.linspace(finite_min, finite_max, NUM_HISTOGRAM_BUCKETS + 1)
        if not np.isfinite(edges).all():
            return result
    if num_neg_inf:
        result.buckets.add(low_value=-math.inf, high_value=-math.inf, sample_count=num_neg_inf)
    # All histogram buckets at once: a row of overlaps per bucket.
    first = np.arange(edges.size - 1)[:, None] == 0
    overlap = _overlap(low, high, edges[:-1, None], edges[1:, None], first)
    totals = (overlap * counts).sum(axis=1)  # not overlap @ counts: BLAS threads spin
    for i in range(edges.size - 1):
        result.buckets.add(low_value=edges[i], high_value=edges[i + 1], sample_count=float(totals[i]))
    if num_pos_inf:
        result.buckets.add(low_value=math.inf, high_value=math.inf, sample_count=num_pos_inf)
    return result


def _overlap(b_low, b_high, low, high, first):
    """Fraction of each bucket [b_low, b_high] (arrays) inside [low, high] (scalars, or a
    column of them: then a row per [low, high]).

    A bucket holding only ``low`` counts in the first histogram bucket alone (``first``: a
    bool, or a column of them).
    """
    import numpy as np

    width = b_high - b_low
    safe_width = np.where(width > 0, width, 1.0)  # zero-width buckets never reach the partial branches
    partial = np.where(low <= b_low, (high - b_low) / safe_width,
                       np.where(high >= b_high, (b_high - low) / safe_width, (high - low) / safe_width))
    inside = (low <= b_low) & (high >= b_high)
    fraction = np.where(inside, 1.0, partial)
    fraction = np.where((b_high < low) | (b_low > high), 0.0, fraction)
    at_low = (b_high == b_low) & (b_low == low)
    return np.where(at_low, np.where(first, 1.0, 0.0), fraction)


def _median(boundaries) -> float:
    middle = len(boundaries) // 2
    if len(boundaries) % 2 == 0:
        return float((boundaries[middle - 1] + boundaries[middle]) / 2.0)
    return float(boundaries[middle])


def _common_stats(column, num_examples, statistics_pb2):
    common = statistics_pb2.CommonStatistics(
        num_non_missing=column.num_non_missing,
        num_missing=num_examples - column.num_non_missing,
        tot_num_values=column.num_non_missing,
    )
    if column.num_non_missing:
        # Every present value is a scalar: exactly one value per example.
        common.min_num_values = common.max_num_values = 1
        common.avg_num_values = 1.0
        histogram = common.num_values_histogram
        histogram.type = statistics_pb2.Histogram.QUANTILES
        for _ in range(NUM_VALUES_HISTOGRAM_BUCKETS):
            histogram.buckets.add(low_value=1, high_value=1,
                                  sample_count=column.num_non_missing / NUM_VALUES_HISTOGRAM_BUCKETS)
    return common


def _fill_top_values(string_stats, value_counts: ValueCounts) -> None:
    unique, top = value_counts.unique_and_top(max(NUM_TOP_VALUES, NUM_RANK_HISTOGRAM_BUCKETS))
    string_stats.unique = unique
    for rank, (value, count) in enumerate(top):
        label = as_text(value)
        if rank < NUM_TOP_VALUES:
            string_stats.top_values.add(value=label, frequency=count)
        if rank < NUM_RANK_HISTOGRAM_BUCKETS:
            string_stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)


def _feature_proto(name: str, column, num_examples: int, statistics_pb2):
    import numpy as np

    Type = statistics_pb2.FeatureNameStatistics
    feature = statistics_pb2.FeatureNameStatistics()
    feature.path.step.append(name)
    if isinstance(column, ListAccumulator):
        # Presence and value counts per example; all else describes the flattened values.
        histogram = functools.partial(_quantiles_histogram, statistics_pb2=statistics_pb2)
        common = list_common_stats(column, num_examples, NUM_VALUES_HISTOGRAM_BUCKETS, histogram, statistics_pb2)
        column = column.values
    else:
        common = _common_stats(column, num_examples, statistics_pb2)
    if column.type_name in ("STRING", "NULL"):
        # TFDV also calls a column without any value STRING (it has no "unknown" type).
        feature.type = Type.STRING
        stats = feature.string_stats
        stats.common_stats.CopyFrom(common)
        if column.num_non_missing:
            stats.avg_length = column.total_bytes / column.num_non_missing
            _fill_top_values(stats, column.value_counts)
        return feature
    feature.type = Type.INT if column.type_name == "INT" else Type.FLOAT
    if column.value_counts is not None:  # a categorical INT: string stats, as TFDV
        feature.string_stats.common_stats.CopyFrom(common)
        _fill_top_values(feature.string_stats, column.value_counts)
        return feature
    stats = feature.num_stats
    stats.common_stats.CopyFrom(common)
    if column.count == 0:
        if column.num_nan:
            stats.histograms.add(type=statistics_pb2.Histogram.STANDARD).num_nan = column.num_nan
            stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES).num_nan = column.num_nan
        return feature
    stats.mean = column.mean
    stats.std_dev = math.sqrt(max(0.0, column.m2 / column.count))  # population std, as TFDV
    stats.num_zeros = column.num_zeros
    stats.min, stats.max = column.min, column.max
    boundaries, cumulative = column.quantiles.GetQuantilesAndCumulativeWeights(
        QUANTILES_PER_HISTOGRAM_BUCKET * NUM_QUANTILES_HISTOGRAM_BUCKETS
    )
    boundaries = boundaries.flatten().to_numpy(zero_copy_only=False)
    cumulative = cumulative.flatten().to_numpy(zero_copy_only=False)
    stats.median = _median(boundaries)
    standard = _equi_width_histogram(boundaries, cumulative, column.finite_min, column.finite_max,
                                     column.num_pos_inf, statistics_pb2)
    standard.num_nan = column.num_nan
    stats.histograms.append(standard)
    step = QUANTILES_PER_HISTOGRAM_BUCKET
    coarse = np.concatenate([[boundaries[0]], boundaries[step::step]])
    coarse_cumulative = np.concatenate([[cumulative[0]], cumulative[step::step]])
    quantiles = _quantiles_histogram(coarse, coarse_cumulative, statistics_pb2)
    quantiles.num_nan = column.num_nan
    stats.histograms.append(quantiles)
    return feature
