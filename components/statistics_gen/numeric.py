"""The accumulator of one INT or FLOAT column: moments, extremes, zeros and a quantiles sketch.

Quantiles, the median and both histograms come from a tfx_bsl ``QuantilesSketch``
(eps = 0.01, as TFDV); moments are merged with Chan's parallel formula. Numeric
batches are summarized one of two ways, neither of which sorts (numpy's sort is
slow where its AVX-512 sort is not used, e.g. on AMD EPYC):

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
"""

from __future__ import annotations

import functools
import math

from sluice.components.statistics_gen.order_statistics import order_statistics
from sluice.components.statistics_gen.values import ValueCounts, code_counts

QUANTILES_EPSILON = 0.01  # TFDV's
# Batches larger than this are pre-summarized before entering the quantiles sketch.
SUMMARY_THRESHOLD = 16384
SUMMARY_SIZE = 2048
# A reported quantile's rank is within this fraction of the rows of the rank asked for (see above).
QUANTILES_RANK_BOUND = QUANTILES_EPSILON + 2 / SUMMARY_SIZE
# A batch with at most this fraction of distinct values is summarized from its value counts.
COUNTING_MAX_DISTINCT = 0.25
# Integers spanning at most this many values (and 4x the batch) are counted by np.bincount.
BINCOUNT_MAX_RANGE = 1 << 20
# Values of a big batch looked at before counting it, and the most of them that may be distinct.
COUNTING_SAMPLE = 2048
COUNTING_SAMPLE_MAX_DISTINCT = 0.75
# Decimal places a float column may have to be counted in units of its last place.
DECIMAL_MAX_PLACES = 6


class NumericAccumulator:
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
        self.value_counts: ValueCounts | None = None  # only for categorical INT columns
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
        else:  # numpy on the values in place: far less GIL-held time than pc.min_max
            values = array.to_numpy()
            low, high = int(values.min()), int(values.max())
        if high - low > BINCOUNT_MAX_RANGE or high - low > 4 * present:
            return False
        counts = code_counts(array, high - low + 1, low)
        present_codes = np.flatnonzero(counts > 0)  # of a bool array: much faster than of the int64 counts
        self._add_distinct_values((present_codes + low).astype(np.float64), counts[present_codes])
        return True

    def _add_decimals(self, array, present: int, sample) -> bool:
        """Counts floats that are all decimals of a few places over a small range (prices, miles:
        what CSV text holds) as integers in units of their last place, with ``np.bincount``
        instead of hashing; False, having added nothing, if they are not.

        Exact: a value is counted only when ``rint(x * scale) / scale`` gives ``x`` back bit for
        bit, and the distinct values are rebuilt by that same division. Cheaper than
        ``pc.value_counts`` and sorting its distinct values. ``sample``: the batch's
        ``_strided_sample``, which chooses the scale (or rules the batch out at once).
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
        counts = code_counts(pa.array(units.astype(np.int64)), int(high) - start + 1, start)
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
            self.quantiles = new_quantiles_sketch()
        return self.quantiles

    def merge(self, other: NumericAccumulator) -> None:
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
                self.quantiles = new_quantiles_sketch()
            self.quantiles.Merge(other.quantiles)
        if other.value_counts is not None:
            if self.value_counts is None:
                self.value_counts = ValueCounts()
            self.value_counts.merge(other.value_counts)


def new_quantiles_sketch():
    """An empty quantiles sketch with TFDV's error bound."""
    from tfx_bsl import sketches

    return sketches.QuantilesSketch(QUANTILES_EPSILON, 1 << 32, 1)


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
    ``order_statistics`` within it), so a sample does, at a small part of the cost of counting
    the distinct values of the batch's head. A sample of 5k distinct prices in 131k rows is
    about 58% distinct, of jittered coordinates about 97%.
    """
    import numpy as np

    sample = np.sort(sample)
    # Each NaN counts as distinct: no matter. An empty sample (all nulls) has none.
    distinct = np.count_nonzero(sample[1:] != sample[:-1]) + (sample.size > 0)
    return distinct <= sample.size * COUNTING_SAMPLE_MAX_DISTINCT


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


@functools.lru_cache(maxsize=64)
def _summary_ranks(size: int, count: int):
    """``count`` evenly spaced 0-based ranks in ``range(size)`` (min and max included), read-only.

    Remembered: batches mostly have the same size, and ``np.linspace`` is Python code run under the GIL.
    """
    import numpy as np

    ranks = np.linspace(0, size - 1, count).round().astype(np.int64)
    ranks.flags.writeable = False
    return ranks
