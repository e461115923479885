"""A dataset's accumulator: one accumulator per column, fed Arrow RecordBatches, merged, compacted.

Everything here is mergeable, so the statistics of any number of workers' batches
merge into those of the whole dataset. A batch's columns are flat Arrow arrays or
one-level list arrays (nulls are missing values); a column missing from a batch counts
as missing there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from sluice.components.sdk import ComponentError
from sluice.components.statistics_gen.lists import ListAccumulator, list_value_type
from sluice.components.statistics_gen.numeric import NumericAccumulator
from sluice.components.statistics_gen.values import StringAccumulator, ValueCounts


class MissingOnlyAccumulator:
    """A column whose values were all null so far (Arrow type ``null``): its type is unknown yet."""

    type_name = "NULL"

    def __init__(self):
        self.num_non_missing = 0

    def add(self, array) -> None:
        pass

    def merge(self, other) -> None:
        pass


@dataclasses.dataclass
class DatasetAccumulator:
    num_examples: int = 0
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)


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
    value_type = list_value_type(arrow_type)
    if value_type is not None and list_value_type(value_type) is None:  # one level of lists only
        value_name = _type_name(value_type)
        return "LIST:" + value_name if value_name else ""
    return ""


# Batches an accumulator takes in place: ints join floats; lists of unknown value type (nulls or
# empty lists only) join any list.
_WIDENING = {("FLOAT", "INT"), ("LIST:FLOAT", "LIST:INT"), ("LIST:INT", "LIST:NULL"),
             ("LIST:FLOAT", "LIST:NULL"), ("LIST:STRING", "LIST:NULL")}
_MERGEABLE = {frozenset({"INT", "FLOAT"}), frozenset({"LIST:INT", "LIST:FLOAT"})}


def _new_accumulator(type_name: str, categorical: bool):
    if type_name.startswith("LIST:"):
        return ListAccumulator(_new_accumulator(type_name[len("LIST:"):], categorical))
    if type_name == "STRING":
        return StringAccumulator()
    if type_name == "NULL":
        return MissingOnlyAccumulator()
    accumulator = NumericAccumulator(type_name)
    if categorical and type_name == "INT":
        accumulator.value_counts = ValueCounts()
    return accumulator


def _merge_columns(left, right, column: str):
    """Merges two accumulators of one column, reconciling NULL/INT/FLOAT types."""
    if right.type_name == "NULL":
        left.num_non_missing += right.num_non_missing
        return left
    if left.type_name == "NULL":
        right.num_non_missing += left.num_non_missing
        return right
    if left.type_name != right.type_name and not _compatible(left.type_name, right.type_name):
        raise ComponentError(
            f"StatisticsGen: column '{column}' has mixed types across files/batches "
            f"({left.type_name} and {right.type_name})"
        )
    left.merge(right)
    return left


def _compatible(left: str, right: str) -> bool:
    """Whether accumulators of these types merge: ints with floats, lists of unknown type with any list."""
    if "LIST:NULL" in (left, right):
        return left.startswith("LIST:") and right.startswith("LIST:")
    return frozenset({left, right}) in _MERGEABLE


def add_batch(accumulator: DatasetAccumulator, batch, categorical_int_features: frozenset[str],
              parallel_columns: bool = True):
    """Adds one Arrow RecordBatch to a dataset accumulator (in place) and returns it.

    ``categorical_int_features``: INT columns that also get value counts (TFDV's string stats).
    ``parallel_columns``: update the columns on ``column_pool`` (else one after the other).
    """
    accumulator.num_examples += batch.num_rows
    updates = []
    for name, column in zip(batch.schema.names, batch.columns):
        type_name = _type_name(column.type)
        if not type_name:
            raise ComponentError(
                f"StatisticsGen: column '{name}' has unsupported Arrow type {column.type} "
                "(expected integer, floating point or string, or a list of them)"
            )
        current = accumulator.columns.get(name)
        if current is None or current.type_name == type_name or (current.type_name, type_name) in _WIDENING:
            target = current or _new_accumulator(type_name, name in categorical_int_features)
            accumulator.columns[name] = target
            updates.append((target, column))
        else:  # e.g. an INT column meeting floats, or a NULL column meeting values
            incoming = _new_accumulator(type_name, name in categorical_int_features)
            incoming.add(column)
            accumulator.columns[name] = _merge_columns(current, incoming, name)
    # Columns are independent and numpy/Arrow release the GIL: update them in parallel, unless
    # the caller already runs several of these at once (whole files on read_ahead.file_pool).
    if parallel_columns:
        list(column_pool().map(lambda update: update[0].add(update[1]), updates))
    else:
        for target, column in updates:
            target.add(column)
    return accumulator


def merge_datasets(accumulators: Iterable[DatasetAccumulator]) -> DatasetAccumulator:
    accumulators = iter(accumulators)
    merged = next(accumulators)
    for other in accumulators:
        merged.num_examples += other.num_examples
        for name, column in other.columns.items():
            current = merged.columns.get(name)
            merged.columns[name] = column if current is None else _merge_columns(current, column, name)
    return merged


def compact(accumulator: DatasetAccumulator) -> DatasetAccumulator:
    # Shrinks the sketches before Beam serializes the accumulator.
    for column in accumulator.columns.values():
        if getattr(column, "quantiles", None) is not None:
            column.quantiles.Compact()
        elif isinstance(column, ListAccumulator):
            column.compact()
    return accumulator


_POOL = None


def column_pool():
    """A process-wide thread pool for per-column work (never pickled with a CombineFn)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="statistics")
    return _POOL
