"""StatisticsGen: per-split dataset statistics in TFDV's format, computed on Beam.

For every split of the input Examples (Parquet) it writes

    <statistics.uri>/Split-<split>/FeatureStats.pb   binary DatasetFeatureStatisticsList
    <statistics.uri>/Split-<split>/report.html       self-contained HTML summary

The proto holds what TFDV's default generators produce for scalar columns
(common stats, numeric stats with a STANDARD and a QUANTILES histogram, string
stats with uniques, top values and the rank histogram), so TFDV-based tools
(``tfdv.load_stats_binary``, ``tfdv.infer_schema``, Facets) read it unchanged.

Everything is mergeable, so it runs on any number of Beam workers:
moments are merged with Chan's parallel formula; quantiles, median and both
histograms come from a tfx_bsl ``QuantilesSketch`` (eps = 0.01, as TFDV);
string value counts are exact up to ``EXACT_VALUE_COUNTS_LIMIT`` distinct
values per column, after which ``MisraGriesSketch`` (top-k) and ``KmvSketch``
(distinct count) take over.

Numeric batches are summarized one of two ways, neither of which sorts (numpy's
sort costs 30-55 ns per float64 where its AVX-512 sort is not used, e.g. on
AMD EPYC):

- **By value counts** while a batch has at most ``COUNTING_MAX_DISTINCT`` of its
  values distinct (hours, prices in cents, community areas): ``pc.value_counts``
  gives the distinct values and their counts, from which extremes, zeros,
  moments and exact order statistics follow. A big batch is counted only when
  a sample of it looks few-valued (``_looks_few_valued``), and a column stops
  trying once a big batch has mostly distinct values. Small integers, and floats
  that are decimals of a few places over a small range (``_add_decimals``: what
  CSV text holds), are counted with ``np.bincount`` instead of hashing.
- **Value by value** otherwise: single passes for extremes, zeros and moments,
  and ``order_statistics`` (equal-width buckets, refined where crowded) for the
  quantile summary.

Quantile error bound: a batch of more than ``SUMMARY_THRESHOLD`` values is fed
to the sketch as ``SUMMARY_SIZE`` order statistics at evenly spaced ranks
(weights sum to the batch size; min and max kept), each exact (value counts) or
with a true rank within ``batch / SUMMARY_SIZE`` of its rank (buckets). A
reported quantile q_p therefore has a true rank within
``QUANTILES_RANK_BOUND * N = (QUANTILES_EPSILON + 2 / SUMMARY_SIZE) * N`` of
``p * N`` (0.01 + 2/2048 ~= 0.011); batches of at most ``SUMMARY_THRESHOLD``
values, and batches of at most ``SUMMARY_SIZE`` distinct values, are fed whole,
giving TFDV's own bound of 0.01.

Speed: the component runs ``ComputeParquetStatistics``, where each Beam worker
folds whole Parquet files into an accumulator (a helper thread decodes the next
batches while the columns of the current ones are summarized), so record
batches never travel through Beam as elements and the pipeline has few stages.
The files of a bundle (e.g. the train and the eval split), and the pieces of
whole row groups a big file is cut into, are summarized at the same time, one
thread each; a split's few files are one element, and a combine per split
merges the files of a split that has many.

Used in a pipeline::

    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])

and outside one (``ComputeParquetStatistics`` and ``ComputeStatistics`` are plain Beam PTransforms)::

    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from sluice.components.statistics_gen import ComputeParquetStatistics, ComputeStatistics, ReadParquetBatches
    with beam.Pipeline(runner=FnApiRunner()) as p:
        stats = (p | ReadParquetBatches(["/data/Split-train/*.parquet"])
                   | ComputeStatistics(dataset_name="train"))
        # the same statistics, faster: {split: patterns} -> (split, proto) pairs
        by_split = p | ComputeParquetStatistics({"train": ["/data/Split-train/*.parquet"]})
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections import Counter
from typing import Any, Iterable

from sluice.components.artifacts import Examples, ExampleStatistics, Schema
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component

# TFDV's StatsOptions defaults, so both produce the same shape of statistics.
NUM_TOP_VALUES = 20
NUM_RANK_HISTOGRAM_BUCKETS = 1000
NUM_VALUES_HISTOGRAM_BUCKETS = 10
NUM_HISTOGRAM_BUCKETS = 10
NUM_QUANTILES_HISTOGRAM_BUCKETS = 10
QUANTILES_EPSILON = 0.01
# TFDV builds the equi-width histogram from 100x finer quantiles than it reports.
QUANTILES_PER_HISTOGRAM_BUCKET = 100
MISRA_GRIES_BUCKETS = 1024
KMV_BUCKETS = 16384

# Batches larger than this are pre-summarized before entering the quantiles sketch.
SUMMARY_THRESHOLD = 16384
SUMMARY_SIZE = 2048
# A reported quantile's rank is within this fraction of the rows of the rank asked for (see above).
QUANTILES_RANK_BOUND = QUANTILES_EPSILON + 2 / SUMMARY_SIZE
# A batch with at most this fraction of distinct values is summarized from its value counts.
COUNTING_MAX_DISTINCT = 0.25
# Integers spanning at most this many values (and 4x the batch) are counted by np.bincount.
BINCOUNT_MAX_RANGE = 1 << 20
# Beyond this many distinct values, a string column switches from exact counts to sketches.
EXACT_VALUE_COUNTS_LIMIT = 100_000
DEFAULT_BATCH_SIZE = 131072  # rows; memory stays bounded by ~2 batches (one is read ahead)

FEATURE_STATS_FILE = "FeatureStats.pb"
REPORT_FILE = "report.html"


# --- per-column accumulators -------------------------------------------------


class _NumericAccumulator:
    """Mergeable moments, extremes and a quantiles sketch of one INT or FLOAT column."""

    def __init__(self, type_name: str):
        self.type_name = type_name  # "INT" or "FLOAT"
        self.num_non_missing = 0
        self.num_nan = 0
        self.count = 0  # non-NaN values
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.num_zeros = 0
        self.min = math.inf
        self.max = -math.inf
        self.finite_min = math.inf
        self.finite_max = -math.inf
        self.num_pos_inf = 0
        self.quantiles = None  # tfx_bsl QuantilesSketch, created on first values
        self.value_counts: _ValueCounts | None = None  # only for categorical INT columns
        # Batches are counted by value (exact) until one has too many distinct values.
        self.counting = True

    def _combine_moments(self, count: int, mean: float, m2: float) -> None:
        total = self.count + count
        if count == 0:
            return
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def add(self, array) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        present = len(array) - array.null_count
        self.num_non_missing += present
        if present == 0:
            return
        if self.value_counts is not None:
            self.value_counts.add(array)
        if array.null_count > present:  # mostly nulls (a sparse column): one pass drops them for all that follows
            array = array.drop_null()
        if pa.types.is_boolean(array.type):
            array = array.cast(pa.int64())
        if self.counting and pa.types.is_integer(array.type) and self._add_small_integers(array, present):
            return
        if self.counting:
            # A cheap look at a sample first: decimals of a few places are counted by their last
            # place; mostly distinct values (timestamps, coordinates) spare the count of the batch.
            floating, big = pa.types.is_floating(array.type), len(array) > 2 * SUMMARY_THRESHOLD
            sample = _strided_sample(array) if floating or big else None
            # float64 only: a float32's decimal is not the float64 that units / scale rebuild.
            if array.type == pa.float64() and self._add_decimals(array, present, sample):
                return
            if not big or _looks_few_valued(sample):
                counted = pc.value_counts(array)
                if len(counted) <= present * COUNTING_MAX_DISTINCT:
                    self._add_distinct(counted)
                    return
            if present > SUMMARY_THRESHOLD:  # a big batch of mostly distinct values: stop counting
                self.counting = False
        self._add_values(array)

    def _add_small_integers(self, array, present: int) -> bool:
        """Counts integers of a small range with ``np.bincount`` (no hashing); False if the range is wide."""
        import numpy as np
        import pyarrow.compute as pc

        if array.null_count:
            extremes = pc.min_max(array)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
        else:  # numpy on the values in place: a quarter of pc.min_max's GIL-held time
            values = array.to_numpy()
            low, high = int(values.min()), int(values.max())
        if high - low > BINCOUNT_MAX_RANGE or high - low > 4 * present:
            return False
        counts = _code_counts(array, high - low + 1, low)
        present_codes = np.flatnonzero(counts > 0)  # of a bool array: ~7x faster than of int64 counts
        self._add_distinct_values((present_codes + low).astype(np.float64), counts[present_codes])
        return True

    def _add_decimals(self, array, present: int, sample) -> bool:
        """Counts floats that are all decimals of a few places over a small range (prices, miles:
        what CSV text holds) as integers in units of their last place, with ``np.bincount``
        instead of hashing; False, having added nothing, if they are not.

        Exact: a value is counted only when ``rint(x * scale) / scale`` gives ``x`` back bit for
        bit, and the distinct values are rebuilt by that same division. ~0.6 ms per 131k prices,
        where ``pc.value_counts`` and sorting its distinct values took ~2 ms. ``sample``: the
        batch's ``_strided_sample``, which chooses the scale (or rules the batch out at once).
        """
        import numpy as np
        import pyarrow as pa

        scale = _decimal_scale(sample)
        if scale is None:
            return False
        x = (array.drop_null() if array.null_count else array).to_numpy(zero_copy_only=False)
        units = x * scale
        np.rint(units, out=units)
        low, high = float(units.min()), float(units.max())
        # NaNs and infinities fail here (comparisons with NaN are false).
        if not (high - low <= BINCOUNT_MAX_RANGE and high - low <= 4 * present and max(-low, high) < 2.0 ** 53):
            return False
        if not np.array_equal(units / scale, x):
            return False
        # -0.0 would come back as 0.0. Without negative values any sign bit is a -0.0's.
        if low <= 0.0 <= high and (np.signbit(units).any() if low == 0.0
                                   else np.logical_and(x == 0.0, np.signbit(x)).any()):
            return False
        start = int(low)
        counts = _code_counts(pa.array(units.astype(np.int64)), int(high) - start + 1, start)
        present_units = np.flatnonzero(counts > 0)
        self._add_distinct_values((present_units + start) / scale, counts[present_units])
        return True

    def _add_distinct(self, counted) -> None:
        """Adds a batch given as its distinct values and their counts (``pc.value_counts``): exact."""
        import numpy as np

        values, counts = counted.field("values"), counted.field("counts")
        if values.null_count:  # the nulls' entry
            valid = values.is_valid()
            values, counts = values.filter(valid), counts.filter(valid)
        v = values.to_numpy(zero_copy_only=False).astype(np.float64)
        c = counts.to_numpy(zero_copy_only=False)
        order = np.argsort(v)  # NaNs last
        self._add_distinct_values(v[order], c[order])

    def _add_distinct_values(self, v, c) -> None:
        """Adds a batch given as ascending distinct values ``v`` (float64, NaNs last) and their counts."""
        import numpy as np
        import pyarrow as pa

        nan = np.isnan(v)
        if nan[-1]:
            self.num_nan += int(c[nan].sum())
            v, c = v[~nan], c[~nan]
            if v.size == 0:
                return
        low, high = float(v[0]), float(v[-1])
        self.min, self.max = min(self.min, low), max(self.max, high)
        finite_low, finite_high = low, high
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = np.isfinite(v)
            finite_low, finite_high = math.inf, -math.inf
            if finite.any():
                finite_low, finite_high = float(v[finite][0]), float(v[finite][-1])
            self.num_pos_inf += int(c[v == math.inf].sum())
        self.finite_min = min(self.finite_min, finite_low)
        self.finite_max = max(self.finite_max, finite_high)
        self.num_zeros += int(c[v == 0.0].sum())
        counts = c.astype(np.float64)
        size = int(c.sum())
        if v.size <= SUMMARY_SIZE:
            points, weights = v, counts  # every value, weighted by its count: exact
        else:
            # Exact order statistics at evenly spaced ranks, weighted to the batch size.
            ranks = _summary_ranks(size, SUMMARY_SIZE)
            points = v[np.searchsorted(np.cumsum(c), ranks, side="right")]
            weights = np.full(SUMMARY_SIZE, size / SUMMARY_SIZE)
        self._sketch().AddValues(pa.array(points), pa.array(weights))
        with np.errstate(invalid="ignore"):  # infinities make the moments NaN, as in _add_values
            batch_mean = float(np.einsum("i,i->", v, counts)) / size
            deviation = v - batch_mean
            self._combine_moments(size, batch_mean, float(np.einsum("i,i,i->", deviation, deviation, counts)))

    def _add_values(self, array) -> None:
        """Adds a batch value by value (no sort: extremes, zeros and moments are single passes)."""
        import numpy as np
        import pyarrow as pa

        # One float64 copy; nulls become NaNs in it, subtracted below.
        x = array.to_numpy(zero_copy_only=False)
        if x.dtype != np.float64 or not x.flags.writeable:  # writeable: already a fresh copy
            x = x.astype(np.float64, copy=True)
        if math.isnan(float(x.min())):  # min() propagates NaN: only then look for them
            nan_or_null = np.isnan(x)
            self.num_nan += int(np.count_nonzero(nan_or_null)) - array.null_count
            x = x[~nan_or_null]
            if x.size == 0:
                return
        low, high = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, low), max(self.max, high)
        finite_low, finite_high = low, high
        if not (math.isfinite(low) and math.isfinite(high)):  # infinities: rare, a pass more
            finite = x[np.isfinite(x)]
            finite_low, finite_high = math.inf, -math.inf
            if finite.size:
                finite_low, finite_high = float(finite.min()), float(finite.max())
            self.num_pos_inf += int(np.count_nonzero(x == math.inf))
        self.finite_min = min(self.finite_min, finite_low)
        self.finite_max = max(self.finite_max, finite_high)
        self.num_zeros += int(np.count_nonzero(x == 0.0))
        if x.size > SUMMARY_THRESHOLD:
            # Order statistics at evenly spaced ranks (min and max included), weighted to the batch size.
            ranks = _summary_ranks(x.size, SUMMARY_SIZE)
            self._sketch().AddValues(pa.array(order_statistics(x, ranks, x.size // SUMMARY_SIZE, low, high)),
                                     pa.array(np.full(SUMMARY_SIZE, x.size / SUMMARY_SIZE)))
        else:
            self._sketch().AddValues(pa.array(x))  # the sketch copies it before x changes below
        batch_mean = float(x.mean())
        # In place, no second copy; einsum, not x @ x: BLAS threads spin and burn CPU.
        with np.errstate(invalid="ignore"):  # inf - inf: the moments of infinities are NaN
            x -= batch_mean
            self._combine_moments(x.size, batch_mean, float(np.einsum("i,i->", x, x)))

    def _sketch(self):
        if self.quantiles is None:
            self.quantiles = _new_quantiles_sketch()
        return self.quantiles

    def merge(self, other: "_NumericAccumulator") -> None:
        if other.type_name == "FLOAT":
            self.type_name = "FLOAT"
        self.num_non_missing += other.num_non_missing
        self.num_nan += other.num_nan
        self._combine_moments(other.count, other.mean, other.m2)
        self.num_zeros += other.num_zeros
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.finite_min = min(self.finite_min, other.finite_min)
        self.finite_max = max(self.finite_max, other.finite_max)
        self.num_pos_inf += other.num_pos_inf
        if other.quantiles is not None:
            if self.quantiles is None:
                self.quantiles = _new_quantiles_sketch()
            self.quantiles.Merge(other.quantiles)
        if other.value_counts is not None:
            if self.value_counts is None:
                self.value_counts = _ValueCounts()
            self.value_counts.merge(other.value_counts)


# Values of a big batch looked at before counting it, and the most of them that may be distinct.
COUNTING_SAMPLE = 2048
COUNTING_SAMPLE_MAX_DISTINCT = 0.75


def _strided_sample(array):
    """About ``COUNTING_SAMPLE`` values spread evenly over ``array`` (numpy), nulls left out:
    a strided view of the values in place when there are no nulls."""
    import numpy as np
    import pyarrow as pa

    step = max(1, len(array) // COUNTING_SAMPLE)
    if array.null_count:
        values = array.take(pa.array(np.arange(0, len(array), step, dtype=np.int64))).drop_null()
        return values.to_numpy(zero_copy_only=False)
    return array.to_numpy()[::step]


def _looks_few_valued(sample) -> bool:
    """Whether a batch's ``_strided_sample`` has at most ``COUNTING_SAMPLE_MAX_DISTINCT`` of
    its values distinct: worth counting the whole batch.

    It only picks the cheaper of two ways that both keep the stated bound (counting is exact,
    ``order_statistics`` within it), so a sample does: ~0.05 ms, where counting the distinct
    values of the batch's first 16k values (the earlier probe) cost 0.5-0.9 ms of a ~2 ms
    batch of coordinates. 5k distinct prices in 131k rows show ~58% of a sample distinct,
    jittered coordinates ~97%.
    """
    import numpy as np

    sample = np.sort(sample)
    # Each NaN counts as distinct: no matter. An empty sample (all nulls) has none.
    distinct = np.count_nonzero(sample[1:] != sample[:-1]) + (sample.size > 0)
    return distinct <= sample.size * COUNTING_SAMPLE_MAX_DISTINCT


# Decimal places a float column may have to be counted in units of its last place.
DECIMAL_MAX_PLACES = 6


def _decimal_scale(sample) -> float | None:
    """The smallest ``10 ** places`` (``places <= DECIMAL_MAX_PLACES``) that makes every value of
    ``sample`` (float64) a whole number exactly (``rint(x * scale) / scale == x``), else None."""
    import numpy as np

    if sample.size == 0:
        return None
    head = sample[:16]  # most scales fail on the first values already: try the whole sample after
    for places in range(DECIMAL_MAX_PLACES + 1):
        scale = 10.0 ** places
        if np.array_equal(np.rint(head * scale) / scale, head) \
                and np.array_equal(np.rint(sample * scale) / scale, sample):
            return scale
    return None


# --- order statistics without sorting ------------------------------------------

# Equal-width buckets per refinement level (np.bincount and ufunc.at need no sort), at most;
# n values get about n / 2 (``_grid_buckets``), at every level. For a 131k-value batch 2^16 rather
# than 2^14: clustered values (taxi coordinates) then crowd fewer buckets, and a batch of
# coordinates took ~1.3 ms instead of ~2.5, of timestamps ~0.7 instead of ~1.1. Below 2^14
# (20k values) fewer buckets only meant more refinements.
GRID_BUCKETS = 1 << 16
MIN_GRID_BUCKETS = 1 << 14


def _grid_buckets(size: int) -> int:
    """Buckets per level for ``size`` values: the power of two at or above ``size / 2``, within bounds
    (a 131k-row batch with a few nulls gets as many as one without)."""
    return min(GRID_BUCKETS, max(MIN_GRID_BUCKETS, 1 << max(0, (size - 1).bit_length() - 1)))


# Refinements of crowded buckets before the values still crowded are sorted.
MAX_REFINEMENTS = 3
# When 90% of a sample falls in fewer buckets than this, the values are sorted instead.
SKEWED_BUCKETS = 64


def order_statistics(x, ranks, slack: int, low: float | None = None, high: float | None = None):
    """Values of ``x`` (float64, no NaN) at the 0-based ascending ``ranks`` of its sorted order, each one's
    true rank within ``slack`` of the rank asked for, without sorting ``x``.

    ``x`` is cut into ``_grid_buckets(x.size)`` equal-width buckets between ``low`` and ``high`` (its
    min and max); as the buckets are ordered, their counts give the bucket holding each rank,
    and a value of that bucket stands for it: off by less than the bucket's count. Buckets
    holding a rank and more than ``slack`` values are cut again (their values only, in one
    pass for all of them), up to ``MAX_REFINEMENTS`` times; what is still crowded then, or
    crowded buckets holding most of the values (a spike of one value), is sorted. np.sort
    costs ~30-55 ns per float64 where the CPU's AVX-512 sort is not used (AMD EPYC, numpy
    2.4); this costs ~7-15.

    >>> import numpy as np
    >>> order_statistics(np.array([5.0, 1.0, 3.0, 2.0, 4.0]), np.array([0, 2, 4]), slack=0).tolist()
    [1.0, 3.0, 5.0]
    """
    import numpy as np

    ranks = np.asarray(ranks, dtype=np.int64)
    low = float(x.min()) if low is None else low
    high = float(x.max()) if high is None else high
    if low == high:
        return np.full(ranks.size, low)
    grid = _grid_buckets(x.size)
    scale = grid / (high - low)
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(scale) and scale > 0):
        return np.sort(x)[ranks]  # infinities, or a range beyond float64: exact, the slow way
    # Most values within a sliver of the range (a long tail: incomes, file sizes) crowd a few
    # buckets and would all be sorted anyway: then sort them straight away.
    sample = np.sort(x[:: max(1, x.size // 1024)])
    middle = sample[int(sample.size * 0.05)], sample[int(sample.size * 0.95)]
    if (middle[1] - middle[0]) * scale < SKEWED_BUCKETS:
        return np.sort(x)[ranks]
    position = x - low
    position *= scale  # monotone in x, in [0, grid]
    buckets = position.astype(np.intp)
    np.minimum(buckets, grid - 1, out=buckets)
    return _refined_order_statistics(x, position, buckets, grid, ranks, max(0, slack), 0, grid)


def _refined_order_statistics(x, position, buckets, num_buckets: int, ranks, slack: int, depth: int, grid: int):
    """``order_statistics`` for ``x`` already placed in ordered ``buckets`` (position's floor);
    ``grid``: the buckets a level shares out among the buckets it cuts."""
    import numpy as np

    counts = np.bincount(buckets, minlength=num_buckets)
    some = np.empty(num_buckets)
    some[buckets] = x  # a value of each bucket (the last one written): it stands for the bucket
    ends = np.cumsum(counts)
    holding = np.searchsorted(ends, ranks, side="right")  # the bucket holding each rank
    result = some[holding]
    crowded = counts[holding] > slack
    if not crowded.any():
        return result
    in_bucket = holding[crowded]  # ascending, as the ranks are
    first = np.concatenate(([True], in_bucket[1:] != in_bucket[:-1]))
    cut = in_bucket[first]
    chosen = np.zeros(num_buckets, dtype=bool)
    chosen[cut] = True
    selected = np.flatnonzero(chosen[buckets])
    sub_x = x[selected]
    # A rank in a cut bucket, counted among the cut buckets' values only (they stay in order).
    cut_counts = counts[cut]
    before = np.cumsum(cut_counts) - cut_counts  # values in the cut buckets before each one
    sub_ranks = ranks[crowded] - (ends[in_bucket] - counts[in_bucket]) + before[np.cumsum(first) - 1]
    per_bucket = grid // cut.size
    # The crowded buckets' values are sorted when cutting them is no cheaper (they are most of
    # the values: a spike of equal values, say) or has been tried enough.
    if depth >= MAX_REFINEMENTS or per_bucket < 2 or 2 * selected.size > x.size:
        result[crowded] = np.sort(sub_x)[sub_ranks]
        return result
    # Each cut bucket gets per_bucket finer buckets of its own, side by side in bucket order.
    slot = np.zeros(num_buckets, dtype=np.intp)
    slot[cut] = np.arange(cut.size) * per_bucket
    sub_old = buckets[selected]
    sub_position = position[selected]
    sub_position -= sub_old  # within [0, 1]: exact, as the bucket is the position's floor
    sub_position *= per_bucket
    local = sub_position.astype(np.intp)
    np.minimum(local, per_bucket - 1, out=local)
    offset = slot[sub_old]
    sub_position += offset
    local += offset
    result[crowded] = _refined_order_statistics(sub_x, sub_position, local, cut.size * per_bucket,
                                                sub_ranks, slack, depth + 1, grid)
    return result


def _code_counts(codes, size: int, low: int = 0):
    """How often each value of ``low .. low + size - 1`` occurs in ``codes`` (an Arrow integer array
    holding no other values; nulls skipped).

    The values are counted in place (a numpy view), shifted by numpy: pyarrow calls cost more
    GIL-held time than these ~0.1 ms. Nulls are counted as ``low`` and taken off again.
    """
    import numpy as np

    nulls = codes.null_count
    values = (codes.fill_null(low) if nulls else codes).to_numpy()
    counts = np.bincount(values - low if low else values, minlength=size)
    if nulls:
        counts[0] -= nulls
    return counts


@functools.lru_cache(maxsize=64)
def _summary_ranks(size: int, count: int):
    """``count`` evenly spaced 0-based ranks in ``range(size)`` (min and max included), read-only.

    Remembered: batches mostly have the same size, and ``np.linspace`` is Python code run under the GIL.
    """
    import numpy as np

    ranks = np.linspace(0, size - 1, count).round().astype(np.int64)
    ranks.flags.writeable = False
    return ranks


class _ValueCounts:
    """Exact value counts while small; Misra-Gries + KMV sketches once too many distinct values."""

    def __init__(self):
        self.exact: Counter | None = Counter()
        self.top_k = None  # MisraGriesSketch
        self.distinct = None  # KmvSketch

    def add(self, values) -> None:
        """Counts the non-null ``values`` (an Arrow array; nulls are skipped)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.exact is not None:
            # A dictionary array counts its indices (no string hashing).
            counted = pc.value_counts(values)
            keys, counts = counted.field("values"), counted.field("counts")
            if keys.null_count:  # the nulls' entry
                valid = keys.is_valid()
                keys, counts = keys.filter(valid), counts.filter(valid)
            self.add_counted(keys, counts.to_numpy(zero_copy_only=False))
            return
        if values.null_count:
            values = values.drop_null()
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
            values = values.cast(pa.binary())
        self.top_k.AddValues(values)
        self.distinct.AddValues(values)

    def add_counted(self, values, counts) -> None:
        """Counts distinct non-null ``values`` (an Arrow array) seen ``counts`` times each (numpy)."""
        import pyarrow as pa

        if self.exact is not None:
            keys, counts = values.to_pylist(), counts.tolist()
            if len(set(keys)) == len(keys):
                self.exact.update(dict(zip(keys, counts)))
            else:  # a dictionary may repeat a value: sum per key
                for key, count in zip(keys, counts):
                    self.exact[key] += count
            if len(self.exact) > EXACT_VALUE_COUNTS_LIMIT:
                self._switch_to_sketches()
            return
        if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
            values = values.cast(pa.binary())
        self.top_k.AddValues(values, pa.array(counts, pa.float32()))
        self.distinct.AddValues(values)  # a distinct count: once per value is enough

    def _switch_to_sketches(self) -> None:
        import pyarrow as pa
        from tfx_bsl import sketches

        self.top_k = sketches.MisraGriesSketch(MISRA_GRIES_BUCKETS)
        self.distinct = sketches.KmvSketch(KMV_BUCKETS)
        if self.exact:
            keys = pa.array([_as_bytes(k) for k in self.exact], pa.binary())
            self.top_k.AddValues(keys, pa.array(list(self.exact.values()), pa.float32()))
            self.distinct.AddValues(keys)
        self.exact = None

    def merge(self, other: "_ValueCounts") -> None:
        if self.exact is not None and other.exact is not None:
            self.exact.update(other.exact)
            if len(self.exact) > EXACT_VALUE_COUNTS_LIMIT:
                self._switch_to_sketches()
            return
        if self.exact is not None:
            self._switch_to_sketches()
        if other.exact is not None:
            other = _copy_to_sketches(other)
        self.top_k.Merge(other.top_k)
        self.distinct.Merge(other.distinct)

    def unique_and_top(self, num_top: int) -> tuple[int, list[tuple[Any, float]]]:
        """Distinct count and the ``num_top`` most frequent (value, count), TFDV's order."""
        if self.exact is not None:
            pairs = list(self.exact.items())
            unique = len(pairs)
        else:
            estimate = self.top_k.Estimate()
            pairs = list(zip(estimate.field("values").to_pylist(), estimate.field("counts").to_pylist()))
            unique = int(self.distinct.Estimate())
        # TFDV: descending by count; ties go to the larger value.
        pairs.sort(key=lambda pair: (pair[1], _as_bytes(pair[0])), reverse=True)
        return unique, pairs[:num_top]


def _copy_to_sketches(counts: _ValueCounts) -> _ValueCounts:
    copy = _ValueCounts()
    copy.exact = Counter(counts.exact)
    copy._switch_to_sketches()
    return copy


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "__BYTES_VALUE__"  # TFDV's placeholder for non-UTF-8 values
    return str(value)


class _StringAccumulator:
    """Counts, byte lengths and value frequencies of one STRING column."""

    def __init__(self):
        self.type_name = "STRING"
        self.num_non_missing = 0
        self.total_bytes = 0
        self.value_counts = _ValueCounts()

    def add(self, array) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        present = len(array) - array.null_count
        self.num_non_missing += present
        if present == 0:
            return
        if pa.types.is_dictionary(array.type):
            self._add_dictionary(array)
            return
        # No drop_null copy of the strings: the sum and the counts skip nulls themselves.
        self.total_bytes += int(pc.sum(pc.binary_length(array)).as_py() or 0)
        self.value_counts.add(array)

    def _add_dictionary(self, array) -> None:
        """A dictionary array: its codes counted (np.bincount), lengths and values taken per code."""
        import numpy as np
        import pyarrow.compute as pc

        dictionary = array.dictionary
        counts = _code_counts(array.indices, len(dictionary))
        lengths = pc.binary_length(dictionary).to_numpy(zero_copy_only=False)
        self.total_bytes += int(np.dot(counts, np.nan_to_num(lengths.astype(np.float64))))
        used = np.flatnonzero(counts > 0)
        self.value_counts.add_counted(dictionary.take(used), counts[used])

    def merge(self, other: "_StringAccumulator") -> None:
        self.num_non_missing += other.num_non_missing
        self.total_bytes += other.total_bytes
        self.value_counts.merge(other.value_counts)


class _MissingOnlyAccumulator:
    """A column whose values were all null so far (Arrow type ``null``): its type is unknown yet."""

    type_name = "NULL"

    def __init__(self):
        self.num_non_missing = 0

    def add(self, array) -> None:
        pass

    def merge(self, other) -> None:
        pass


def _new_quantiles_sketch():
    from tfx_bsl import sketches

    return sketches.QuantilesSketch(QUANTILES_EPSILON, 1 << 32, 1)


def _type_name(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "INT"
    if pa.types.is_floating(arrow_type):
        return "FLOAT"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) \
            or pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "STRING"
    if pa.types.is_null(arrow_type):
        return "NULL"
    if pa.types.is_dictionary(arrow_type) and _type_name(arrow_type.value_type) == "STRING":
        return "STRING"  # dictionary-encoded strings (how the fast path reads string columns)
    return ""


def _new_accumulator(type_name: str, categorical: bool):
    if type_name == "STRING":
        return _StringAccumulator()
    if type_name == "NULL":
        return _MissingOnlyAccumulator()
    accumulator = _NumericAccumulator(type_name)
    if categorical and type_name == "INT":
        accumulator.value_counts = _ValueCounts()
    return accumulator


def _merge_columns(left, right, column: str):
    """Merges two accumulators of one column, reconciling NULL/INT/FLOAT types."""
    if right.type_name == "NULL":
        left.num_non_missing += right.num_non_missing
        return left
    if left.type_name == "NULL":
        right.num_non_missing += left.num_non_missing
        return right
    numeric = ("INT", "FLOAT")
    if left.type_name != right.type_name and not (left.type_name in numeric and right.type_name in numeric):
        raise ComponentError(
            f"StatisticsGen: column '{column}' has mixed types across files/batches "
            f"({left.type_name} and {right.type_name})"
        )
    left.merge(right)
    return left


@dataclasses.dataclass
class _DatasetAccumulator:
    num_examples: int = 0
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)


def _add_batch(accumulator: _DatasetAccumulator, batch, categorical_int_features: frozenset[str],
               parallel_columns: bool = True):
    """Adds one Arrow RecordBatch to a dataset accumulator (in place) and returns it.

    ``parallel_columns``: update the columns on ``_column_pool`` (else one after the other).
    """
    accumulator.num_examples += batch.num_rows
    updates = []
    for name, column in zip(batch.schema.names, batch.columns):
        type_name = _type_name(column.type)
        if not type_name:
            raise ComponentError(
                f"StatisticsGen: column '{name}' has unsupported Arrow type {column.type} "
                "(expected integer, floating point or string)"
            )
        current = accumulator.columns.get(name)
        if current is None or current.type_name == type_name \
                or (current.type_name == "FLOAT" and type_name == "INT"):
            target = current or _new_accumulator(type_name, name in categorical_int_features)
            accumulator.columns[name] = target
            updates.append((target, column))
        else:  # e.g. an INT column meeting floats, or a NULL column meeting values
            incoming = _new_accumulator(type_name, name in categorical_int_features)
            incoming.add(column)
            accumulator.columns[name] = _merge_columns(current, incoming, name)
    # Columns are independent and numpy/Arrow release the GIL: update them in parallel, unless
    # the caller already runs several of these at once (whole files on _file_pool).
    if parallel_columns:
        list(_column_pool().map(lambda update: update[0].add(update[1]), updates))
    else:
        for target, column in updates:
            target.add(column)
    return accumulator


def _merge_datasets(accumulators: Iterable[_DatasetAccumulator]) -> _DatasetAccumulator:
    accumulators = iter(accumulators)
    merged = next(accumulators)
    for other in accumulators:
        merged.num_examples += other.num_examples
        for name, column in other.columns.items():
            current = merged.columns.get(name)
            merged.columns[name] = column if current is None else _merge_columns(current, column, name)
    return merged


def _compact(accumulator: _DatasetAccumulator) -> _DatasetAccumulator:
    # Shrinks the sketches before Beam serializes the accumulator.
    for column in accumulator.columns.values():
        if getattr(column, "quantiles", None) is not None:
            column.quantiles.Compact()
    return accumulator


# --- the Beam transforms -----------------------------------------------------


def _statistics_combine_fn(dataset_name: str, categorical_int_features: frozenset[str]):
    import apache_beam as beam

    class _StatisticsCombineFn(beam.CombineFn):
        def create_accumulator(self):
            return _DatasetAccumulator()

        def add_input(self, accumulator, batch):
            return _add_batch(accumulator, batch, categorical_int_features)

        def merge_accumulators(self, accumulators):
            return _merge_datasets(accumulators)

        def compact(self, accumulator):
            return _compact(accumulator)

        def extract_output(self, accumulator):
            return _to_statistics_proto(accumulator, dataset_name)

    return _StatisticsCombineFn()


_POOL = None


def _column_pool():
    """A process-wide thread pool for per-column work (never pickled with the CombineFn)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="statistics")
    return _POOL


def _compute_statistics_transform():
    import apache_beam as beam

    class ComputeStatistics(beam.PTransform):
        """PCollection of Arrow RecordBatches -> one DatasetFeatureStatisticsList (TFDV format).

        Each batch column is a flat Arrow array (nulls are missing values).
        ``categorical_int_features`` names INT columns that also get string
        stats (top values), as TFDV does for ``int_domain.is_categorical``.
        A column missing from a batch counts as missing there.
        """

        def __init__(self, dataset_name: str = "", categorical_int_features: Iterable[str] = ()):
            super().__init__()
            self.dataset_name = dataset_name
            self.categorical_int_features = frozenset(categorical_int_features)

        def expand(self, batches):
            _record_batch_coder()
            return batches | "CombineStatistics" >> beam.CombineGlobally(
                _statistics_combine_fn(self.dataset_name, self.categorical_int_features)
            )

    return ComputeStatistics


def _record_batch_coder():
    import apache_beam as beam
    import pyarrow as pa

    class RecordBatchCoder(beam.coders.Coder):
        """Arrow IPC encoding of a RecordBatch.

        Beam samples element sizes with the coder; the default (pickle) would
        serialize whole batches just to measure them.
        """

        def encode(self, batch):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            return sink.getvalue().to_pybytes()

        def decode(self, encoded):
            return pa.ipc.open_stream(encoded).read_next_batch()

        def estimate_size(self, batch):
            return batch.nbytes

        def is_deterministic(self):
            return True

        def to_type_hint(self):
            return pa.RecordBatch

    beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)
    return RecordBatchCoder


def _read_parquet_transform():
    import apache_beam as beam
    import pyarrow as pa

    _record_batch_coder()

    class ReadParquetBatches(beam.PTransform):
        """File patterns -> PCollection of Arrow RecordBatches (``batch_size`` rows at most).

        Files are distributed over workers; each is read batch by batch, so
        memory stays bounded by one batch. Paths may be any Beam filesystem.
        """

        def __init__(self, file_patterns: list[str], batch_size: int = DEFAULT_BATCH_SIZE,
                     columns: list[str] | None = None):
            super().__init__()
            self.file_patterns = list(file_patterns)
            self.batch_size = batch_size
            self.columns = columns

        def expand(self, pbegin):
            files = match_files(self.file_patterns)
            names = pbegin | "ListFiles" >> beam.Create(files)
            if len(files) > 1:  # spread files over workers; a lone file gains nothing from it
                names = names | "Distribute" >> beam.Reshuffle()
            return names | "ReadBatches" >> beam.FlatMap(
                read_parquet_batches, self.batch_size, self.columns
            ).with_output_types(pa.RecordBatch)

    return ReadParquetBatches


def _parquet_statistics_transform():
    import apache_beam as beam

    class ComputeParquetStatistics(beam.PTransform):
        """{split: file patterns} -> PCollection of (split, DatasetFeatureStatisticsList), one per split.

        What the component runs: each worker reads whole Parquet files (those of a
        bundle concurrently) and folds their batches straight into an accumulator
        per file (the next batch is read while the current one is summarized), so
        batches never travel through Beam as elements. Up to ``FILES_PER_ELEMENT``
        files, a split's files are one element, merged by the worker that reads them;
        more files are spread over workers one by one and a combine per split merges
        them. Same statistics as ``ReadParquetBatches | ComputeStatistics``, far
        fewer Beam stages and elements.
        """

        def __init__(self, file_patterns_by_split: dict[str, list[str]],
                     categorical_int_features: Iterable[str] = (), batch_size: int = DEFAULT_BATCH_SIZE):
            super().__init__()
            self.file_patterns_by_split = {split: list(p) for split, p in file_patterns_by_split.items()}
            self.categorical_int_features = frozenset(categorical_int_features)
            self.batch_size = batch_size

        def expand(self, pbegin):
            by_split = {split: tuple(match_files(patterns)) for split, patterns in self.file_patterns_by_split.items()}
            if sum(len(paths) for paths in by_split.values()) <= FILES_PER_ELEMENT:
                # A few files: one element per split (that has files), nothing to merge.
                files = [(split, paths) for split, paths in by_split.items() if paths]
            else:
                files = [(split, (path,)) for split, paths in by_split.items() for path in paths]
            # Declared output types spare Beam's type inference (a noticeable part of its fixed cost).
            names = pbegin | "ListFiles" >> beam.Create(files, reshuffle=False).with_output_types(Any)
            several_files_in_a_split = len(files) > sum(1 for paths in by_split.values() if paths)
            if several_files_in_a_split:  # spread them over workers
                names = names | "Distribute" >> beam.Reshuffle().with_output_types(Any)
            summaries = names | "SummarizeFiles" >> beam.ParDo(
                _summarize_files_fn(self.batch_size, self.categorical_int_features)).with_output_types(Any)
            if several_files_in_a_split:  # with one element per split (the usual case) there is nothing to merge
                summaries = summaries | "MergeFiles" >> beam.CombinePerKey(
                    _merge_only_combine_fn()).with_output_types(Any)
            return summaries | "ToProto" >> beam.MapTuple(
                lambda split, merged: (split, _to_statistics_proto(merged, split))).with_output_types(Any)

    return ComputeParquetStatistics


def _summarize_files_fn(batch_size: int, categorical_int_features: frozenset[str]):
    import apache_beam as beam

    class _SummarizeFilesFn(beam.DoFn):
        """(split, paths) -> (split, compacted _DatasetAccumulator of those Parquet files).

        The files of one bundle (e.g. the train and the eval files), and the pieces of a
        big file (``_file_pieces``), are summarized concurrently on ``_file_pool``, one
        thread per piece with its columns done inline: this keeps the cores busy without
        the per-batch wait for the slowest column that a column pool has. The bundle's
        ``_ReadAhead`` decodes the pieces ahead of them, in order. An element's pieces are
        merged in file order. At most ``_FILES_IN_FLIGHT`` elements are held
        back; the rest are emitted when the bundle finishes.
        """

        def start_bundle(self):
            self._pending = []  # (split, futures of the element's pieces), in file order
            self._read_ahead = _ReadAhead(_BATCHES_AHEAD)

        def process(self, split_and_paths):
            split, paths = split_and_paths
            futures = []
            for path in paths:
                for row_groups in _file_pieces(path, PIECE_ROWS):
                    handoff = self._read_ahead.add(path, row_groups, batch_size)
                    futures.append(_file_pool().submit(_summarize_piece, self._read_ahead, handoff,
                                                       categorical_int_features))
            self._pending.append((split, futures))
            while len(self._pending) > _FILES_IN_FLIGHT:
                yield self._next_result()

        def finish_bundle(self):
            from apache_beam.transforms.window import GlobalWindows

            while self._pending:
                yield GlobalWindows.windowed_value(self._next_result())
            self._read_ahead.stop()

        def teardown(self):
            read_ahead = getattr(self, "_read_ahead", None)
            if read_ahead is not None:  # a bundle that failed downstream: its reading thread ends
                read_ahead.stop()

        def _next_result(self):
            split, futures = self._pending.pop(0)
            try:
                pieces = [future.result() for future in futures]
            except BaseException:
                for _, others in self._pending:  # files not started yet are not read for nothing
                    for future in others:
                        future.cancel()
                for future in futures:
                    future.cancel()
                self._pending = []
                self._read_ahead.stop()  # summaries still running get an error for what was not read
                raise
            return split, _compact(_merge_datasets(pieces)) if len(pieces) > 1 else pieces[0]

    return _SummarizeFilesFn()


# Pieces of files summarized at once per process.
_FILES_IN_FLIGHT = min(4, os.cpu_count() or 1)
# Decoded batches waiting for a summarizing thread, per bundle (see _ReadAhead): one being
# summarized and one ready, per thread.
_BATCHES_AHEAD = 2 * _FILES_IN_FLIGHT
# Up to this many files in all, each split's files are one element (read and merged by one worker).
FILES_PER_ELEMENT = 16
_FILE_POOL = None
# A file of more rows is summarized in pieces of whole row groups, about this many rows each,
# at the same time: a big train file beside a small eval file then keeps every core busy to
# the end. Fixed, not a function of the cores, so the statistics do not depend on the machine.
PIECE_ROWS = DEFAULT_BATCH_SIZE


def _file_pool():
    """A process-wide thread pool of ``_FILES_IN_FLIGHT`` threads summarizing pieces of files."""
    global _FILE_POOL
    if _FILE_POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _FILE_POOL = ThreadPoolExecutor(max_workers=_FILES_IN_FLIGHT, thread_name_prefix="statistics-file")
    return _FILE_POOL


def _file_pieces(path: str, piece_rows: int) -> list[list[int] | None]:
    """One Parquet file as runs of consecutive row groups of about ``piece_rows`` rows each.

    ``[None]`` (the whole file, one piece) when it has fewer than ~1.5 pieces of rows or a
    single row group; a broken file is reported by the read that follows.
    """
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(_parquet_source(path)).metadata
    except (OSError, ValueError):
        return [None]
    if metadata.num_row_groups < 2 or metadata.num_rows < piece_rows * 3 // 2:
        return [None]
    pieces, current, rows = [], [], 0
    for index in range(metadata.num_row_groups):
        current.append(index)
        rows += metadata.row_group(index).num_rows
        if rows >= piece_rows:
            pieces.append(current)
            current, rows = [], 0
    if current:
        if rows < piece_rows // 2 and pieces:  # a short tail joins the piece before it
            pieces[-1].extend(current)
        else:
            pieces.append(current)
    return pieces


def _summarize_piece(read_ahead: "_ReadAhead", handoff, categorical_int_features: frozenset[str]):
    """The compacted _DatasetAccumulator of one piece of a file, its batches as ``read_ahead`` decodes them."""
    accumulator = _DatasetAccumulator()
    for batch in read_ahead.batches(handoff):
        _add_batch(accumulator, batch, categorical_int_features, parallel_columns=False)
    return _compact(accumulator)


class _ReadAhead:
    """Decodes a bundle's pieces of files in order on one helper thread, ahead of the threads
    that summarize them, with at most ``limit`` decoded batches waiting in all.

    Decoding (pyarrow, without the GIL, a batch's columns on Arrow's own threads) then overlaps
    with summarizing, which holds the GIL much of the time, and a piece's first batch is ready
    when a thread comes to it (decoded only once its thread started, a one-batch piece waited for
    all of its decoding: StatisticsGen's second call on the 100x taxi data, 0.335 -> 0.302 s).
    Each piece has its queue (``add``), which its summary drains (``batches``). Pieces are decoded
    in the order they are added and summarized in that order too (``_file_pool`` is first come,
    first served), so the oldest unfinished piece always has its batches coming: with ``limit``
    at least the summarizing threads, waiting on it cannot deadlock.
    """

    _DONE = object()

    def __init__(self, limit: int):
        import collections
        import threading

        self.limit = limit
        self.waiting = 0  # batches decoded, not yet summarized
        self.pieces: collections.deque = collections.deque()  # (path, row groups, batch size, queue) to decode
        self.changed = threading.Condition()
        self.stopped = False
        self.thread = None

    def add(self, path: str, row_groups: list[int] | None, batch_size: int):
        """Queues one piece for decoding; returns the queue its batches will come through."""
        import queue
        import threading

        handoff: queue.Queue = queue.Queue()
        with self.changed:
            self.pieces.append((path, row_groups, batch_size, handoff))
            self.changed.notify_all()
        if self.thread is None:  # one thread: a batch's columns are decoded on Arrow's threads (two did no better)
            self.thread = threading.Thread(target=self._decode, name="statistics-read", daemon=True)
            self.thread.start()
        return handoff

    def batches(self, handoff):
        """A piece's batches as they are decoded; its read error is raised here."""
        while True:
            batch, error = handoff.get()
            if batch is self._DONE:
                if error is not None:
                    raise error
                return
            try:
                yield batch
            finally:  # summarized (or given up on): room for one more
                with self.changed:
                    self.waiting -= 1
                    self.changed.notify_all()

    def stop(self) -> None:
        """Ends the decoding; a piece not fully decoded ends with an error for whoever waits on it."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
        if self.thread is not None:
            self.thread.join()

    def _decode(self) -> None:
        while True:
            with self.changed:
                while not self.pieces and not self.stopped:
                    self.changed.wait()
                if self.stopped:
                    break
                path, row_groups, batch_size, handoff = self.pieces.popleft()
            try:
                for batch in read_parquet_batches(path, batch_size, strings_as_dictionary=True,
                                                  row_groups=row_groups):
                    with self.changed:
                        while self.waiting >= self.limit and not self.stopped:
                            self.changed.wait()
                        if self.stopped:
                            break
                        self.waiting += 1
                    handoff.put((batch, None))
                else:
                    handoff.put((self._DONE, None))
                    continue
            except BaseException as exc:  # noqa: BLE001 - handed to the piece's summary, which raises it
                handoff.put((self._DONE, exc))
                continue
            handoff.put((self._DONE, self._stopped_error()))  # stopped in the middle of this piece
            break
        with self.changed:
            left, self.pieces = list(self.pieces), type(self.pieces)()
        for *_, handoff in left:
            handoff.put((self._DONE, self._stopped_error()))

    @staticmethod
    def _stopped_error() -> ComponentError:
        return ComponentError("StatisticsGen: reading stopped before the end of a file")


def _merge_only_combine_fn():
    import apache_beam as beam

    class _MergeDatasetsFn(beam.CombineFn):
        """Merges per-file accumulators; the output is the merged accumulator itself."""

        def create_accumulator(self):
            return _DatasetAccumulator()

        def add_input(self, accumulator, other):
            return _merge_datasets([accumulator, other])

        def merge_accumulators(self, accumulators):
            return _merge_datasets(accumulators)

        def compact(self, accumulator):
            return _compact(accumulator)

        def extract_output(self, accumulator):
            return accumulator

    return _MergeDatasetsFn()


def match_files(file_patterns: list[str]) -> list[str]:
    """All files matching the patterns (sorted); ComponentError if a pattern matches nothing."""
    from apache_beam.io.filesystems import FileSystems

    files = []
    for pattern, result in zip(file_patterns, FileSystems.match(file_patterns)):
        matched = sorted(m.path for m in result.metadata_list)
        if not matched:
            raise ComponentError(f"StatisticsGen: no files match {pattern}")
        files.extend(matched)
    return files


def _parquet_source(path: str):
    """What pyarrow opens for ``path``: the path itself when local, else a Beam filesystem stream."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    if "://" not in path:
        return path
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_parquet_batches(path: str, batch_size: int = DEFAULT_BATCH_SIZE, columns: list[str] | None = None,
                         strings_as_dictionary: bool = False, row_groups: list[int] | None = None):
    """Yields the RecordBatches of one Parquet file; ComponentError names a broken file.

    ``strings_as_dictionary`` reads string columns as Arrow dictionary arrays:
    decoding Parquet's dictionary pages then skips building every string, and
    value counts count small integer indices instead of hashing strings.
    ``row_groups``: only these row groups (None: all).
    """
    import pyarrow.parquet as pq

    try:
        parquet_file = pq.ParquetFile(_parquet_source(path))
        if strings_as_dictionary:
            strings = [field.name for field in parquet_file.schema_arrow if _type_name(field.type) == "STRING"]
            if strings:
                # The footer already read serves again (one read less, a round trip on remote files).
                parquet_file = pq.ParquetFile(_parquet_source(path), metadata=parquet_file.metadata,
                                              read_dictionary=strings)
        yield from parquet_file.iter_batches(batch_size=batch_size, columns=columns, row_groups=row_groups)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for bad files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ComponentError(f"StatisticsGen: cannot read Parquet file {path}: {message}") from None


def __getattr__(name: str):
    # The PTransform classes subclass beam.PTransform; they are built on first
    # access so that importing this module does not import Beam.
    factories = {
        "ComputeStatistics": _compute_statistics_transform,
        "ReadParquetBatches": _read_parquet_transform,
        "ComputeParquetStatistics": _parquet_statistics_transform,
    }
    if name in factories:
        cls = factories[name]()
        cls.__module__ = __name__
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- building the proto ------------------------------------------------------
# The histogram helpers follow tensorflow_data_validation/utils/quantiles_util.py
# (Apache 2.0), so bucket boundaries and counts match TFDV's.


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


def _fill_top_values(string_stats, value_counts: _ValueCounts) -> None:
    unique, top = value_counts.unique_and_top(max(NUM_TOP_VALUES, NUM_RANK_HISTOGRAM_BUCKETS))
    string_stats.unique = unique
    for rank, (value, count) in enumerate(top):
        label = _as_text(value)
        if rank < NUM_TOP_VALUES:
            string_stats.top_values.add(value=label, frequency=count)
        if rank < NUM_RANK_HISTOGRAM_BUCKETS:
            string_stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)


def _feature_proto(name: str, column, num_examples: int, statistics_pb2):
    import numpy as np

    Type = statistics_pb2.FeatureNameStatistics
    feature = statistics_pb2.FeatureNameStatistics()
    feature.path.step.append(name)
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


def _to_statistics_proto(accumulator: _DatasetAccumulator, dataset_name: str):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    result = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = result.datasets.add(name=dataset_name, num_examples=accumulator.num_examples)
    for name, column in accumulator.columns.items():
        dataset.features.append(_feature_proto(name, column, accumulator.num_examples, statistics_pb2))
    return result


# --- the HTML report ---------------------------------------------------------


def _feature_summary(feature, num_examples: int) -> dict[str, Any]:
    """The values the report shows for one feature (plain Python, for the template)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    kind = feature.WhichOneof("stats")
    stats = getattr(feature, kind) if kind else None
    common = stats.common_stats if stats is not None else None
    num_missing = common.num_missing if common else num_examples
    summary = {
        "name": "/".join(feature.path.step),
        "type": statistics_pb2.FeatureNameStatistics.Type.Name(feature.type),
        "count": common.num_non_missing if common else 0,
        "missing": num_missing,
        "missing_pct": 100.0 * num_missing / num_examples if num_examples else 0.0,
        "numeric": None,
        "histogram": [],
        "top_values": [],
        "unique": None,
        "avg_length": None,
    }
    if kind == "num_stats":
        summary["numeric"] = {k: getattr(stats, k) for k in ("mean", "std_dev", "min", "median", "max", "num_zeros")}
        standard = [h for h in stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
        if standard and standard[0].buckets:
            buckets = standard[0].buckets
            peak = max(b.sample_count for b in buckets) or 1.0
            summary["histogram"] = [
                {"low": b.low_value, "high": b.high_value, "count": b.sample_count,
                 "height": 40.0 * b.sample_count / peak}
                for b in buckets
            ]
    elif kind == "string_stats":
        summary["unique"] = stats.unique
        summary["avg_length"] = stats.avg_length
        summary["top_values"] = [(v.value, v.frequency) for v in stats.top_values[:10]]
    return summary


_REPORT_TEMPLATE = None


def render_report(statistics, split: str) -> str:
    """A self-contained HTML page (inline CSS and SVG) summarizing one split's statistics."""
    import jinja2

    global _REPORT_TEMPLATE
    if _REPORT_TEMPLATE is None:  # compiled once per process
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
            autoescape=True,
        )
        _REPORT_TEMPLATE = environment.get_template("statistics_gen_report.html.j2")
    template = _REPORT_TEMPLATE
    dataset = statistics.datasets[0]
    features = [_feature_summary(f, dataset.num_examples) for f in dataset.features]
    return template.render(split=split, num_examples=dataset.num_examples, features=features)


# --- the component -----------------------------------------------------------


def _categorical_int_features(schema: Schema | None) -> list[str]:
    """INT features the schema marks categorical (int_domain.is_categorical or bool_domain)."""
    if schema is None:
        return []
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        with open(schema.file) as handle:
            parsed = text_format.Parse(handle.read(), schema_pb2.Schema())
    except OSError as exc:
        raise ComponentError(f"StatisticsGen: cannot read schema {schema.file}: {exc.strerror}") from None
    except text_format.ParseError as exc:
        raise ComponentError(f"StatisticsGen: invalid schema {schema.file}: {exc}") from None
    return [
        f.name for f in parsed.feature
        if f.type == schema_pb2.INT and (f.int_domain.is_categorical or f.HasField("bool_domain"))
    ]


def generate_statistics(
    examples: Input[Examples],
    statistics: Output[ExampleStatistics],
    schema: Input[Schema] | None = None,
    exclude_splits: list[str] = [],  # noqa: B006 (validated, never mutated)
    ctx: ExecutionContext = None,
) -> None:
    """Computes TFDV-format statistics of every split of ``examples`` not in ``exclude_splits``.

    ``schema`` (optional) marks INT features as categorical (``int_domain
    { is_categorical: true }``): those get string stats (top values), as TFDV.
    """
    ctx = ctx or ExecutionContext()
    if examples.file_format != "parquet":
        raise ComponentError(
            f"StatisticsGen: examples file_format '{examples.file_format}' is not supported (only 'parquet')"
        )
    unknown = sorted(set(exclude_splits) - set(examples.split_names))
    if unknown:
        raise ComponentError(
            f"StatisticsGen: parameter 'exclude_splits' names unknown splits {unknown} "
            f"(splits: {examples.split_names})"
        )
    splits = [s for s in examples.split_names if s not in exclude_splits]
    categorical = _categorical_int_features(schema)

    import apache_beam as beam
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from sluice.components import statistics_gen as this

    outputs = {}
    for split in splits:
        os.makedirs(statistics.split_uri(split), exist_ok=True)
        outputs[split] = os.path.join(statistics.split_uri(split), FEATURE_STATS_FILE)
    patterns = {split: [examples.parquet_pattern(split)] for split in splits}
    try:
        # One pipeline for all splits: one start-up cost, and the runner may overlap them.
        with ctx.beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "Statistics" >> this.ComputeParquetStatistics(patterns, categorical)
                | "Write" >> beam.MapTuple(
                    lambda split, proto: _write_outputs(proto, outputs[split], split)).with_output_types(Any)
            )
    except ComponentError as exc:
        # Beam appends the failing step and a traceback; keep the one-line message.
        raise ComponentError(str(exc).splitlines()[0]) from None
    for split, output in outputs.items():
        with open(output, "rb") as handle:
            dataset = statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read()).datasets[0]
        ctx.log_metric(f"num_examples_{split}", dataset.num_examples)
    statistics.split_names = splits
    statistics.span = examples.span


def _write_outputs(proto, output_path: str, split: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(output_path) as handle:
        handle.write(proto.SerializeToString())
    report_path = FileSystems.join(output_path.rsplit("/", 1)[0], REPORT_FILE)
    with FileSystems.create(report_path) as handle:
        handle.write(render_report(proto, split).encode("utf-8"))


StatisticsGen = component(generate_statistics, name="StatisticsGen")
