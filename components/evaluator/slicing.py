"""Slices of the eval rows: each value of a feature, numeric features in buckets, and crosses.

A slicing spec is a feature name (``"payment_type"``: one slice per value) or a list of
names (``["payment_type", "trip_start_hour"]``: one slice per combination present). Float
features, and any feature given a count in ``buckets``, are cut into that many quantile
buckets (4 by default) named ``[low, high)``. Slices come out in the specs' order, then by
value: numerically where the values are numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from sluice.components.reports import fmt
from sluice.components.sdk import ComponentError

DEFAULT_BUCKETS = 4


@dataclasses.dataclass(frozen=True)
class _Coded:
    """One feature's rows as codes (-1: missing) into ``labels``, which are in display order."""

    feature: str
    codes: object
    labels: list[str]
    keys: list  # each label's sort key: the same in every batch of rows


def spec_name(spec: str | list[str]) -> str:
    """A spec as text: ``payment_type`` or ``payment_type × trip_start_hour``."""
    return spec if isinstance(spec, str) else " × ".join(spec)


def slice_masks(table, specs: list[str | list[str]], data_file: str, buckets: dict[str, int] | None = None,
                edges: dict[str, object] | None = None) -> Iterator[tuple[str, str, object]]:
    """(spec name, slice name, row mask) for each slice present: ``payment_type=Cash``, or for a
    cross ``payment_type=Cash, trip_start_hour=3``. ``edges``: fixed bucket edges by feature
    (``bucket_edges``) instead of the table's own quantiles."""
    for spec, name, mask, _key in keyed_slices(table, specs, data_file, buckets, edges):
        yield spec, name, mask


def keyed_slices(table, specs: list[str | list[str]], data_file: str, buckets: dict[str, int] | None = None,
                 edges: dict[str, object] | None = None) -> Iterator[tuple[str, str, object, tuple]]:
    """As ``slice_masks``, each slice with its sort key among its spec's slices: batches of rows cut
    with the same ``edges`` give the same key to the same slice, so their slices sort alike."""
    import numpy as np

    coded: dict[str, _Coded] = {}
    for spec in specs:
        features = [spec] if isinstance(spec, str) else list(spec)
        for feature in features:
            if feature not in coded:
                coded[feature] = _code(table, feature, data_file, (buckets or {}).get(feature), edges)
        parts = [coded[f] for f in features]
        combined = np.zeros(table.num_rows, dtype=np.int64)
        valid = np.ones(table.num_rows, dtype=bool)
        for part in parts:
            combined = combined * max(len(part.labels), 1) + np.maximum(part.codes, 0)
            valid &= part.codes >= 0
        for code in np.unique(combined[valid]):  # ascending: the display order, feature by feature
            names, keys, rest = [], [], int(code)
            for part in reversed(parts):
                rest, index = divmod(rest, max(len(part.labels), 1))
                names.append(f"{part.feature}={part.labels[index]}")
                keys.append(part.keys[index])
            yield spec_name(spec), ", ".join(reversed(names)), valid & (combined == code), tuple(reversed(keys))


def bucketed_features(schema, specs: list[str | list[str]], buckets: dict[str, int]) -> list[str]:
    """The slicing features cut in quantile buckets: those in ``buckets`` and the floats of ``schema``."""
    import pyarrow as pa

    features = {f for spec in specs for f in ([spec] if isinstance(spec, str) else spec)}
    return sorted(f for f in features if f in buckets or (
        f in schema.names and pa.types.is_floating(schema.field(f).type)))


def bucket_edges(table, feature: str, data_file: str, bucket_count: int | None):
    """The quantile bucket edges of ``feature`` over the table's rows (what ``edges`` takes)."""
    column = _numeric_column(table, feature, data_file)
    return _quantile_edges(feature, column, bucket_count or DEFAULT_BUCKETS)


def _numeric_column(table, feature: str, data_file: str):
    import pyarrow as pa

    if feature not in table.column_names:
        raise ComponentError(f"Evaluator: slicing feature '{feature}' is not a column of {data_file}")
    column = table.column(feature).combine_chunks()
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise ComponentError(f"Evaluator: parameter 'slice_buckets' names '{feature}', which is not numeric "
                             f"in {data_file} (type {column.type})")
    return column


def _code(table, feature: str, data_file: str, bucket_count: int | None, edges: dict | None = None) -> _Coded:
    import pyarrow as pa

    if feature not in table.column_names:
        raise ComponentError(f"Evaluator: slicing feature '{feature}' is not a column of {data_file}")
    column = table.column(feature).combine_chunks()
    if bucket_count is not None or pa.types.is_floating(column.type):
        column = _numeric_column(table, feature, data_file)
        if edges is not None and feature in edges:
            return _bucketed(feature, column, edges[feature])
        return _bucketed(feature, column, _quantile_edges(feature, column, bucket_count or DEFAULT_BUCKETS))
    return _by_value(feature, column)


def _by_value(feature: str, column) -> _Coded:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column)
    values = encoded.dictionary.to_pylist()
    numeric = pa.types.is_integer(column.type) or pa.types.is_boolean(column.type)
    order = sorted(range(len(values)), key=lambda i: values[i] if numeric else str(values[i]))
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(indices >= 0, rank[np.maximum(indices, 0)] if len(values) else -1, -1)
    keys = [(0, values[i]) if numeric else (1, str(values[i])) for i in order]
    return _Coded(feature, codes, [str(values[i]) for i in order], keys)


def _quantile_edges(feature: str, column, bucket_count: int):
    """Quantile bucket edges of the column's finite values (fewer when values repeat; none without)."""
    import numpy as np

    if bucket_count < 1:
        raise ComponentError(f"Evaluator: parameter 'slice_buckets'['{feature}'] must be at least 1, "
                             f"got {bucket_count}")
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.zeros(0)
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bucket_count + 1)))


def _bucketed(feature: str, column, edges) -> _Coded:
    """The column's finite values coded by the buckets between ``edges``."""
    import numpy as np

    values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    finite = np.isfinite(values)
    if not len(edges):
        return _Coded(feature, np.full(len(values), -1, dtype=np.int64), [], [])
    inner = edges[1:-1]
    codes = np.where(finite, np.searchsorted(inner, np.where(finite, values, 0.0), side="right"), -1)
    if len(edges) == 1:
        return _Coded(feature, codes.astype(np.int64), [f"[{fmt(float(edges[0]))}]"], [0])
    labels = [f"[{fmt(float(low))}, {fmt(float(high))}{']' if i == len(edges) - 2 else ')'}"
              for i, (low, high) in enumerate(zip(edges[:-1], edges[1:]))]
    return _Coded(feature, codes.astype(np.int64), labels, list(range(len(labels))))
