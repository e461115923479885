"""Slices of the eval rows: one per present value of each slicing feature."""

from __future__ import annotations

from collections.abc import Iterator

from sluice.components.sdk import ComponentError


def slice_masks(table, features: list[str], data_file: str) -> Iterator[tuple[str, object]]:
    """(``"feature=value"``, row mask) for each present value of each slicing feature."""
    import pyarrow.compute as pc

    for feature in features:
        if feature not in table.column_names:
            raise ComponentError(f"Evaluator: slicing feature '{feature}' is not a column of {data_file}")
        encoded = pc.dictionary_encode(table.column(feature).combine_chunks())
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
        for code, value in enumerate(encoded.dictionary.to_pylist()):
            yield f"{feature}={value}", valid & (indices == code)
