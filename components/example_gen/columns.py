"""CSV column kinds and types: what a column's text holds, and how pyarrow reads it.

Every CSV column becomes int64, float64 or string, nullable. The kinds are ordered so that
merging two observations of a column is ``max()``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sluice.components.example_gen import config

EMPTY, INT, INTFLOAT, FLOAT, STRING = range(5)
KIND_NAMES = {EMPTY: "empty (int64)", INT: "int64", INTFLOAT: "int64", FLOAT: "float64", STRING: "string"}


def classify_strings(values) -> int:
    """The kind of a string Arrow array: EMPTY, INT, INTFLOAT (integral, written like 480.0), FLOAT or STRING.

    A cast of text that fails costs pyarrow far more than one that succeeds, so the order
    avoids failures: a few values Python cannot read as numbers settle STRING first, and the
    text is cast to int64 only once its numbers are known to be integral.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.null_count == len(values):
        return EMPTY
    if not _looks_numeric(values):
        return STRING
    try:
        floats = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return STRING
    try:
        pc.cast(floats, pa.int64())  # safe cast: fails on fractions, NaN, inf and overflow
    except pa.ArrowInvalid:
        return FLOAT
    try:
        pc.cast(values, pa.int64())
        return INT
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return INTFLOAT


def _looks_numeric(values, probes: int = 16) -> bool:
    """False when one of the first ``probes`` values is no number even to Python's float().

    (Python reads more than pyarrow does, e.g. "1_000": True only means pyarrow must decide.)
    """
    for value in values.drop_null().slice(0, probes).to_pylist():
        try:
            float(value)
        except ValueError:
            return False
    return True


def arrow_type(kind: int):
    import pyarrow as pa

    # A column without any value is int64: its (no) values are all integral, and the same column
    # with values in another span (taxi's pickup_census_tract) then gets the same type.
    return {EMPTY: pa.int64(), INT: pa.int64(), INTFLOAT: pa.int64(), FLOAT: pa.float64()}.get(kind, pa.string())


def read_type(kind: int, dictionary: bool = False):
    """How pyarrow's CSV reader converts a column of this kind (INTFLOAT goes through float64).

    ``dictionary``: a STRING column is read dictionary-encoded (see ``CsvColumns``).
    """
    import pyarrow as pa

    if kind == STRING and dictionary:
        return dictionary_string()
    return {EMPTY: pa.int64(), INT: pa.int64(), INTFLOAT: pa.float64(), FLOAT: pa.float64()}.get(kind, pa.string())


def dictionary_string():
    """The type of a dictionary-encoded string column (a function so that pyarrow loads lazily)."""
    import pyarrow as pa

    return pa.dictionary(pa.int32(), pa.string())


@dataclasses.dataclass(frozen=True)
class CsvColumns:
    """Column names and kinds; ``exact`` when inferred over all rows, not sniffed.

    ``dictionary`` names the STRING columns that are read dictionary-encoded, a speed hint
    (few distinct values in the first block): their batches carry dictionary arrays, which
    Parquet stores as its own dictionary pages, and the files read back as plain strings.
    """

    names: tuple[str, ...]
    kinds: tuple[int, ...]
    exact: bool = False
    null_values: tuple[str, ...] = ("",)
    dictionary: frozenset[str] = frozenset()

    def arrow_schema(self):
        """The columns' types as stored (and read back): int64, float64 or string."""
        import pyarrow as pa

        return pa.schema([(n, arrow_type(k)) for n, k in zip(self.names, self.kinds)])

    def batch_schema(self):
        """The types of the batches read: ``arrow_schema`` with the ``dictionary`` columns encoded."""
        import pyarrow as pa

        return pa.schema([(n, dictionary_string() if k == STRING and n in self.dictionary else arrow_type(k))
                          for n, k in zip(self.names, self.kinds)])

    def read_types(self) -> dict:
        """pyarrow CSV ``column_types`` for these columns."""
        return {n: read_type(k, n in self.dictionary) for n, k in zip(self.names, self.kinds)}

    def describe(self) -> dict[str, str]:
        return {n: KIND_NAMES[k] for n, k in zip(self.names, self.kinds)}


def few_distinct(values) -> bool:
    import pyarrow.compute as pc

    present = len(values) - values.null_count
    return present > 0 and pc.count_distinct(values).as_py() <= present * config.DICTIONARY_MAX_DISTINCT


def merge_kinds(a: tuple[int, ...] | None, b: tuple[int, ...] | None):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(max(x, y) for x, y in zip(a, b))


def csv_options(names: list[str], read_types: dict[str, Any], block_size: int, on_invalid_row=None,
                null_values: tuple[str, ...] = ("",)):
    """pyarrow CSV reader options (read, parse, convert) for a file with these columns."""
    import pyarrow.csv as pacsv

    return dict(
        # use_threads=False: pyarrow then numbers rows in its errors ("Row #N"), and one worker
        # per file is the unit of parallelism anyway.
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
        # newlines_in_values: blocks are then cut at line ends outside quotes (a quoted value
        # may span lines, even across a block boundary).
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types, null_values=list(null_values), strings_can_be_null=True, check_utf8=True
        ),
    )


def buffer(data: bytes):
    """An Arrow stream over bytes in memory."""
    import pyarrow as pa

    return pa.BufferReader(pa.py_buffer(data))
