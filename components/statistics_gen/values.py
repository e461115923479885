"""Value counts of a column: exact while small, then sketches; the STRING column's accumulator.

String columns (and INT columns a schema marks categorical) get TFDV's string
stats: distinct count, top values and the rank histogram. Counts are exact up to
``EXACT_VALUE_COUNTS_LIMIT`` distinct values per column, after which a
``MisraGriesSketch`` (top-k) and a ``KmvSketch`` (distinct count) take over.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MISRA_GRIES_BUCKETS = 1024
KMV_BUCKETS = 16384
# Beyond this many distinct values, a string column switches from exact counts to sketches.
EXACT_VALUE_COUNTS_LIMIT = 100_000


class ValueCounts:
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

    def merge(self, other: ValueCounts) -> None:
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


def _copy_to_sketches(counts: ValueCounts) -> ValueCounts:
    copy = ValueCounts()
    copy.exact = Counter(counts.exact)
    copy._switch_to_sketches()
    return copy


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def as_text(value: Any) -> str:
    """A value as TFDV labels it: UTF-8 text, or TFDV's placeholder for bytes that are not."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "__BYTES_VALUE__"  # TFDV's placeholder for non-UTF-8 values
    return str(value)


def code_counts(codes, size: int, low: int = 0):
    """How often each value of ``low .. low + size - 1`` occurs in ``codes`` (an Arrow integer array
    holding no other values; nulls skipped).

    The values are counted in place (a numpy view), shifted by numpy: pyarrow calls cost more
    GIL-held time. Nulls are counted as ``low`` and taken off again.
    """
    import numpy as np

    nulls = codes.null_count
    values = (codes.fill_null(low) if nulls else codes).to_numpy()
    counts = np.bincount(values - low if low else values, minlength=size)
    if nulls:
        counts[0] -= nulls
    return counts


class StringAccumulator:
    """Counts, byte lengths and value frequencies of one STRING column."""

    def __init__(self):
        self.type_name = "STRING"
        self.num_non_missing = 0
        self.total_bytes = 0
        self.value_counts = ValueCounts()

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
        counts = code_counts(array.indices, len(dictionary))
        lengths = pc.binary_length(dictionary).to_numpy(zero_copy_only=False)
        self.total_bytes += int(np.dot(counts, np.nan_to_num(lengths.astype(np.float64))))
        used = np.flatnonzero(counts > 0)
        self.value_counts.add_counted(dictionary.take(used), counts[used])

    def merge(self, other: StringAccumulator) -> None:
        self.num_non_missing += other.num_non_missing
        self.total_bytes += other.total_bytes
        self.value_counts.merge(other.value_counts)
