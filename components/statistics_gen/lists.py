"""The accumulator of one list column (list, large_list or fixed_size_list of INT, FLOAT or STRING).

As TFDV's basic stats generator for a multivalent feature: a null row is a missing example, an
empty list a present one with no values. Per example it counts the values (min, max, total,
and a quantiles sketch of the counts for ``num_values_histogram``); the flattened values of
all examples then get the numeric or string stats a scalar column gets, computed by the
same accumulators (``NumericAccumulator``, ``StringAccumulator``). A null inside a numeric
list is a NaN value to TFDV (it reads the values through numpy), so it is counted as one.
"""

from __future__ import annotations

import sys

# Flattened values are fed to the value accumulator in slices of at most this many: its float64
# copy of a slice stays small whatever the batch's rows hold (an image per row).
VALUES_SLICE = 1 << 22


def list_value_type(arrow_type):
    """The value type of a list, large_list or fixed_size_list Arrow type; None for other types."""
    import pyarrow as pa

    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) \
            or pa.types.is_fixed_size_list(arrow_type):
        return arrow_type.value_type
    return None


class ListAccumulator:
    """Presence and values per example of one list column, and the stats of its flattened values.

    ``values``: the accumulator of the flattened values; ``type_name`` is ``"LIST:"`` and its type.
    """

    def __init__(self, values):
        self.values = values
        self.num_non_missing = 0  # examples with a list (empty ones included)
        self.min_num_values = sys.maxsize
        self.max_num_values = 0
        self.tot_num_values = 0
        self.num_values = None  # tfx_bsl QuantilesSketch of the values per example

    @property
    def type_name(self) -> str:
        return "LIST:" + self.values.type_name

    def add(self, array) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        present = len(array) - array.null_count
        self.num_non_missing += present
        if present == 0:
            return
        lengths = pc.list_value_length(array)
        # Few distinct counts (one for a fixed length): the sketch gets them weighted, as TFDV feeds it.
        counted = pc.value_counts(lengths.drop_null() if array.null_count else lengths)
        counts, weights = counted.field("values"), counted.field("counts")
        numbers = counts.to_numpy(zero_copy_only=False).astype(np.int64)
        self.min_num_values = min(self.min_num_values, int(numbers.min()))
        self.max_num_values = max(self.max_num_values, int(numbers.max()))
        self.tot_num_values += int(np.dot(numbers, weights.to_numpy(zero_copy_only=False)))
        self._sketch().AddValues(counts.cast(pa.float64()), weights.cast(pa.float64()))
        values = array.flatten()  # the values of the present rows only
        if values.null_count and self.values.type_name in ("INT", "FLOAT") and not pa.types.is_null(values.type):
            self.values.num_nan += values.null_count
        for start in range(0, len(values), VALUES_SLICE):
            self.values.add(values.slice(start, VALUES_SLICE))

    def _sketch(self):
        if self.num_values is None:
            from sluice.components.statistics_gen.numeric import new_quantiles_sketch

            self.num_values = new_quantiles_sketch()
        return self.num_values

    def merge(self, other: ListAccumulator) -> None:
        self.num_non_missing += other.num_non_missing
        self.min_num_values = min(self.min_num_values, other.min_num_values)
        self.max_num_values = max(self.max_num_values, other.max_num_values)
        self.tot_num_values += other.tot_num_values
        if other.num_values is not None:
            self._sketch().Merge(other.num_values)
        if self.values.type_name == "NULL":  # only empty lists of unknown type so far
            self.values = other.values
        elif other.values.type_name != "NULL":
            self.values.merge(other.values)

    def compact(self) -> None:
        for sketch in (self.num_values, getattr(self.values, "quantiles", None)):
            if sketch is not None:
                sketch.Compact()


def list_common_stats(column: ListAccumulator, num_examples: int, num_values_buckets: int, histogram_fn,
                      statistics_pb2):
    """TFDV's CommonStatistics of a list column; ``histogram_fn(boundaries, cumulative)``: its
    QUANTILES histogram builder."""
    common = statistics_pb2.CommonStatistics(
        num_non_missing=column.num_non_missing,
        num_missing=num_examples - column.num_non_missing,
    )
    if not column.num_non_missing:
        return common
    common.tot_num_values = column.tot_num_values
    common.min_num_values = column.min_num_values
    common.max_num_values = column.max_num_values
    common.avg_num_values = column.tot_num_values / column.num_non_missing
    boundaries, cumulative = column.num_values.GetQuantilesAndCumulativeWeights(num_values_buckets)
    common.num_values_histogram.CopyFrom(histogram_fn(boundaries.flatten().to_numpy(zero_copy_only=False),
                                                      cumulative.flatten().to_numpy(zero_copy_only=False)))
    return common
