"""Order statistics of a batch without sorting it: equal-width buckets, refined where crowded.

A big batch of mostly distinct values enters the quantiles sketch as order
statistics at evenly spaced ranks. Sorting would give them exactly, but numpy's
sort is slow where its AVX-512 sort is not used (e.g. on AMD EPYC); bucketing
with ``np.bincount`` needs no sort and gives each one within a stated rank slack.
"""

from __future__ import annotations

import math

# Equal-width buckets per refinement level (np.bincount and ufunc.at need no sort), at most;
# n values get about n / 2 (``_grid_buckets``), at every level. Many buckets keep clustered values
# (taxi coordinates) in few crowded buckets; far fewer only meant more refinements.
GRID_BUCKETS = 1 << 16
MIN_GRID_BUCKETS = 1 << 14
# Refinements of crowded buckets before the values still crowded are sorted.
MAX_REFINEMENTS = 3
# When 90% of a sample falls in fewer buckets than this, the values are sorted instead.
SKEWED_BUCKETS = 64


def _grid_buckets(size: int) -> int:
    """Buckets per level for ``size`` values: the power of two at or above ``size / 2``, within bounds
    (a 131k-row batch with a few nulls gets as many as one without)."""
    return min(GRID_BUCKETS, max(MIN_GRID_BUCKETS, 1 << max(0, (size - 1).bit_length() - 1)))


def order_statistics(x, ranks, slack: int, low: float | None = None, high: float | None = None):
    """Values of ``x`` (float64, no NaN) at the 0-based ascending ``ranks`` of its sorted order, each one's
    true rank within ``slack`` of the rank asked for, without sorting ``x``.

    ``x`` is cut into ``_grid_buckets(x.size)`` equal-width buckets between ``low`` and ``high`` (its
    min and max); as the buckets are ordered, their counts give the bucket holding each rank,
    and a value of that bucket stands for it: off by less than the bucket's count. Buckets
    holding a rank and more than ``slack`` values are cut again (their values only, in one
    pass for all of them), up to ``MAX_REFINEMENTS`` times; what is still crowded then, or
    crowded buckets holding most of the values (a spike of one value), is sorted. This costs
    a fraction of ``np.sort`` where the CPU's AVX-512 sort is not used.

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
