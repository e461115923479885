"""Split assignment: a stable hash per row, dealt into hash buckets and so into splits.

The hash is of the partition feature's value (equal values share a split) or of all scalar
columns of the row: numbers by their 64 bits, strings by pandas' stable ``hash_array``,
combined and mixed with numpy (never Python's ``hash()``), so a row lands in the same split on
every run, whatever the block size, runner or number of workers.
"""

from __future__ import annotations

from sluice.components.example_gen.config import InputFile, SplitConfig
from sluice.components.sdk import ComponentError

_NULL_BITS = 0x9E3779B97F4A7C15


def row_hashes(batch, partition_feature: str | None = None):
    """A stable uint64 per row: of the partition feature's value, or of all scalar columns.

    A value hashes the same whatever batch it is in (nulls get a fixed hash), so the split
    does not depend on block sizes, runners or the number of workers.
    """
    import numpy as np
    import pyarrow as pa

    if partition_feature is not None:
        if partition_feature not in batch.schema.names:
            raise ComponentError(
                f"output_config.partition_feature '{partition_feature}' is not a column "
                f"(columns: {', '.join(batch.schema.names)})"
            )
        columns = [batch.column(partition_feature)]
    else:
        columns = [c for c in batch.columns if not pa.types.is_nested(c.type)]
    hashes = np.full(batch.num_rows, 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for column in columns:
            # FNV-style combination of the columns in order (in place), then one strong mix (splitmix64).
            bits, nulls = _value_bits(column)
            np.bitwise_xor(hashes, bits, out=hashes)
            if nulls is not None:  # the bits under a null are not its value: _NULL_BITS instead
                hashes[nulls] ^= bits[nulls] ^ np.uint64(_NULL_BITS)
            np.multiply(hashes, prime, out=hashes)
        hashes ^= hashes >> np.uint64(30)
        hashes *= np.uint64(0xBF58476D1CE4E5B9)
        hashes ^= hashes >> np.uint64(27)
        hashes *= np.uint64(0x94D049BB133111EB)
        hashes ^= hashes >> np.uint64(31)
    return hashes


def _value_bits(column):
    """64 bits per value, a function of the value alone (numbers' own bits, strings' stable hash),
    and the positions of the nulls, whose bits are to count as ``_NULL_BITS`` (None: done here).

    Strings go through a dictionary, so each distinct string is hashed once (pandas' hash_array);
    a dictionary array's own dictionary serves (the same bits as its decoded strings). Numbers
    are read in place; a few nulls are patched by the caller (a copy with the nulls filled, as
    ``fill_null`` makes, costs more), many are filled here.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type) and not is_text(column.type.value_type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_dictionary(kind) or is_text(kind):
        encoded = column if pa.types.is_dictionary(kind) else pc.dictionary_encode(column)
        # Dictionary values are distinct: no need for hash_array to factorize them first (same hashes).
        distinct = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False), categorize=False)
        # A null points one past the dictionary, at _NULL_BITS.
        distinct = np.append(distinct, np.uint64(_NULL_BITS))
        return distinct[encoded.indices.fill_null(len(distinct) - 1).to_numpy(zero_copy_only=False)], None
    elif kind == pa.int64() or kind == pa.float64():
        nulls = None
        if column.null_count > len(column) // 16:  # one pass in Arrow: a null becomes a value with _NULL_BITS
            null_value = np.array([_NULL_BITS], dtype=np.uint64).view(kind.to_pandas_dtype())[0]
            column = pc.fill_null(column, pa.scalar(null_value, kind))
        elif column.null_count:
            valid = np.unpackbits(np.frombuffer(column.buffers()[0], dtype=np.uint8),
                                  count=column.offset + len(column), bitorder="little")[column.offset:]
            nulls = np.flatnonzero(valid == 0)
        # The values' own bits, read in place.
        bits = np.frombuffer(column.buffers()[1], dtype=np.uint64, count=column.offset + len(column))[column.offset:]
        return bits, nulls
    elif pa.types.is_floating(kind):
        return _value_bits(column.cast(pa.float64()))
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return _value_bits(column.cast(pa.int64()))
    else:  # dates, timestamps, decimals: through their text
        return _value_bits(column.cast(pa.string()))


def is_text(kind) -> bool:
    """Whether an Arrow type holds strings or bytes."""
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
        or pa.types.is_large_binary(kind)


class AssignSplits:
    """DoFn body: (None, file index, batch) -> (split, file index, sub-batch) by hash bucket."""

    def __init__(self, config: SplitConfig):
        self.config = config

    def __call__(self, element):
        import numpy as np
        import pyarrow as pa

        split, index, batch = element
        if split is not None:  # input_config already named the split
            yield split, index, batch
            return
        names = list(self.config.splits)
        bucket_to_split = np.repeat(np.arange(len(names)), list(self.config.splits.values()))
        chosen = bucket_to_split[row_hashes(batch, self.config.partition_feature) % np.uint64(len(bucket_to_split))]
        for i, name in enumerate(names):
            mask = chosen == i
            if mask.all():
                yield name, index, batch
            elif mask.any():
                yield name, index, batch.filter(pa.array(mask))


def split_names(files: list[InputFile], config: SplitConfig) -> list[str]:
    """The output's splits: those input_config named, else the SplitConfig's."""
    named = list(dict.fromkeys(f.split for f in files if f.split is not None))
    return named if named else list(config.splits)
