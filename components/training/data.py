"""The Trainer's (and the Tuner's) input pipeline: Parquet examples as a ``tf.data.Dataset``.

Files are listed and opened through the shared Examples reader
(``sluice.components.io.examples``), so remote pipeline roots work as local ones do.
"""

from __future__ import annotations

from typing import Any

from sluice.components.artifacts import Examples
from sluice.components.sdk import ComponentError

OWNER = "Trainer"  # the component named in errors, unless the caller names another (e.g. the Tuner)

# Above this many rows, or this many (uncompressed Parquet) bytes, the input is streamed
# instead of held in memory.
IN_MEMORY_ROW_LIMIT = 2_000_000
IN_MEMORY_BYTE_LIMIT = 256 * 1024 * 1024
# Also streamed when it holds more than this many times the rows training will read
# (``rows_needed``): loading far more rows than are used costs memory and time for nothing.
STREAM_WHEN_ROWS_EXCEED_NEEDED = 4
# Rows read from Parquet per chunk when streaming.
STREAM_CHUNK_ROWS = 65_536
# Rows gathered (from row groups taken in random order) and shuffled together when streaming:
# the bound on the streamed input's memory.
STREAM_SHUFFLE_ROWS = 262_144
# Arrow field metadata key of a column's fixed shape, as the Transform component writes it.
SHAPE_METADATA = "tft.shape"
# ... and of a variable-length column Transform got as a RaggedTensor: given back ragged, as tfxio does.
RAGGED_METADATA = "tft.ragged"


def split_files(examples: Examples, split: str, owner: str = OWNER) -> list[str]:
    """The Parquet files of one split, sorted; a ComponentError if there are none."""
    from sluice.components.io import examples as example_io

    return example_io.split_files(examples, split, owner)


def expand_patterns(files: list[str], owner: str = OWNER) -> list[str]:
    """``files`` with each glob pattern replaced by the files it matches (sorted)."""
    from sluice.components.io import examples as example_io

    return [p for f in files for p in (example_io.match_files([f], owner) if any(c in f for c in "*?[") else [f])]


class VarLen:
    """A variable-length (Arrow ``list``) column held as numpy: values per row and the flat values."""

    def __init__(self, lengths, values):
        self.lengths, self.values = lengths, values

    def __len__(self):
        return len(self.lengths)

    @staticmethod
    def concatenate(parts):
        import numpy as np

        return VarLen(np.concatenate([p.lengths for p in parts]), np.concatenate([p.values for p in parts]))

    def take(self, order):
        """The rows in ``order`` (vectorized: one gather of the flat values)."""
        import numpy as np

        starts = np.cumsum(self.lengths) - self.lengths
        lengths = self.lengths[order]
        new_starts = np.cumsum(lengths) - lengths
        flat = np.repeat(starts[order] - new_starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        return VarLen(lengths, self.values[flat])

    def ragged(self):
        import tensorflow as tf

        return tf.RaggedTensor.from_row_lengths(self.values, self.lengths)


def _concatenate(parts):
    import numpy as np

    return VarLen.concatenate(parts) if isinstance(parts[0], VarLen) else np.concatenate(parts)


def _take(values, order):
    return values.take(order) if isinstance(values, VarLen) else values[order]


def _scalars_to_numpy(column, name: str, path: str, owner: str):
    """A scalar Arrow column as numpy that TF accepts; nulls become 0 / ''."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        return pc.fill_null(column, 0.0).to_numpy().astype(np.float32, copy=False)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return np.asarray(pc.fill_null(column.cast(pa.large_binary()), b"").to_pylist(), dtype=object)
    raise ComponentError(f"{owner}: column '{name}' in {path} has type {kind}, which is not an int, float or "
                         f"string column, or a list of them")


def _column_to_numpy(column, name: str, path: str, owner: str):
    """One Arrow column as numpy: scalars ``[rows]``, a ``fixed_size_list`` (nested per dimension)
    ``[rows, *dims]``, a variable-length ``list`` as ``VarLen``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_fixed_size_list(kind):
        dims = []
        while pa.types.is_fixed_size_list(column.type):
            if column.null_count:
                raise ComponentError(f"{owner}: column '{name}' in {path} has null rows in a fixed-shape list")
            dims.append(column.type.list_size)
            column = column.flatten()
        return _scalars_to_numpy(column, name, path, owner).reshape([-1, *dims])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype("int64")
        return VarLen(lengths, _scalars_to_numpy(column.flatten(), name, path, owner))
    return _scalars_to_numpy(column, name, path, owner)


def _table_to_arrays(table, path: str, shapes: dict | None, owner: str) -> dict[str, Any]:
    """Numpy per column; a column with a fixed shape (from ``shapes``, else from the field metadata
    Transform writes, e.g. [1] for a plain column) is dense ``[rows, *shape]``."""
    import json

    arrays = {}
    for field in table.schema:
        column = table.column(field.name)
        values = _column_to_numpy(column.combine_chunks() if hasattr(column, "combine_chunks") else column,
                                  field.name, path, owner)
        shape = (shapes or {}).get(field.name)
        if shape is None and (field.metadata or {}).get(SHAPE_METADATA.encode()) is not None:
            shape = json.loads(field.metadata[SHAPE_METADATA.encode()])
        if shape is not None:
            values = _fixed(values, tuple(shape), field.name, path, owner)
        arrays[field.name] = values
    return arrays


def _fixed(values, shape: tuple, name: str, path: str, owner: str):
    """``values`` as dense ``[rows, *shape]``; a list column must hold that many values per row."""
    size = 1
    for dim in shape:
        size *= dim
    if isinstance(values, VarLen):
        wrong = (values.lengths != size).nonzero()[0]
        if len(wrong):
            raise ComponentError(f"{owner}: column '{name}' in {path}: row {int(wrong[0])} has "
                                 f"{int(values.lengths[wrong[0]])} values, but its shape is {list(shape)}")
        values = values.values
    elif values.ndim > 1 and len(values) and values[0].size != size:
        raise ComponentError(f"{owner}: column '{name}' in {path}: row 0 has {values[0].size} values, "
                             f"but its shape is {list(shape)}")
    return values.reshape([-1, *shape])


def shapes_from_schema(schema) -> dict[str, tuple]:
    """``{feature: shape}`` of a tensorflow_metadata Schema's fixed-length features (a ``shape``
    and ``presence.min_fraction: 1``, as tf.Transform and tfxio read them); for ``parquet_dataset``."""
    return {f.name: tuple(d.size for d in f.shape.dim) for f in schema.feature
            if f.HasField("shape") and f.presence.min_fraction == 1.0}


def _check_columns(files: list[str], label_key: str | None, feature_keys: list[str] | None,
                   owner: str) -> list[str]:
    """Validates the requested columns against every file's schema; returns the columns to read."""
    from sluice.components.io.examples import read_schema

    columns = None
    for path in files:
        names = read_schema(path, owner).names
        if label_key is not None and label_key not in names:
            raise ComponentError(f"{owner}: label '{label_key}' is not a column of {path} "
                                 f"(columns: {', '.join(names)})")
        for key in feature_keys or []:
            if key not in names:
                raise ComponentError(f"{owner}: feature '{key}' is not a column of {path}")
        wanted = list(feature_keys) if feature_keys is not None else [n for n in names if n != label_key]
        if label_key is not None and label_key not in wanted:
            wanted.append(label_key)
        columns = columns or wanted
    return columns


def _uncompressed_bytes(files: list[str], columns: list[str], owner: str) -> int:
    """The Parquet metadata's uncompressed size of ``columns`` (a cheap proxy for memory held)."""
    from sluice.components.io.examples import open_parquet

    wanted, total = set(columns), 0
    for path in files:
        metadata = open_parquet(path, owner).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                if chunk.path_in_schema.split(".")[0] in wanted:
                    total += chunk.total_uncompressed_size
    return total


def _should_stream(total_rows: int, total_bytes: int, rows_needed: int | None) -> bool:
    if total_rows > IN_MEMORY_ROW_LIMIT or total_bytes > IN_MEMORY_BYTE_LIMIT:
        return True
    # Small inputs stay in memory (fast, fully shuffled) even when only a part is used.
    return rows_needed is not None and total_rows > STREAM_SHUFFLE_ROWS \
        and total_rows > STREAM_WHEN_ROWS_EXCEED_NEEDED * rows_needed


def parquet_dataset(
    files: list[str],
    batch_size: int,
    label_key: str | None = None,
    feature_keys: list[str] | None = None,
    shuffle: bool = True,
    repeat: bool = True,
    seed: int | None = None,
    rows_needed: int | None = None,
    shapes: dict[str, tuple] | None = None,
    owner: str = OWNER,
):
    """A ``tf.data.Dataset`` of batches read from Parquet files.

    Yields ``features`` (a dict of tensors: float columns as float32, integer columns as
    int64, strings as tf.string; scalar columns dense ``[batch]`` with nulls as 0 / '',
    ``fixed_size_list`` columns dense ``[batch, *dims]``, variable-length ``list`` columns
    ``tf.SparseTensor [batch, longest]``, as the transformed schema's fixed/var-len shapes
    say; ``shapes`` (e.g. ``shapes_from_schema(schema)``) makes those columns dense of that
    shape, as tfxio does for a schema's fixed-length features) or ``(features, label)`` when
    ``label_key`` is given. Small inputs are held in
    memory and shuffled per epoch with one vectorized gather per batch. Inputs
    over ``IN_MEMORY_ROW_LIMIT`` rows or ``IN_MEMORY_BYTE_LIMIT`` bytes, or holding
    more than ``STREAM_WHEN_ROWS_EXCEED_NEEDED`` times ``rows_needed`` (about how
    many rows the consumer reads, e.g. steps x batch_size) are streamed: each pass
    takes the row groups in a new random order, and rows are shuffled within
    buffers of ``STREAM_SHUFFLE_ROWS`` (bounded memory). With ``repeat`` every batch
    is full. ``owner``: the component its errors name.

    >>> ds = parquet_dataset(["/data/part-00000-of-00001.parquet"], 32, label_key="label")  # doctest: +SKIP
    >>> features, label = next(iter(ds))                                                      # doctest: +SKIP
    """
    import tensorflow as tf

    from sluice.components.io.examples import open_parquet

    if not files:
        raise ComponentError(f"{owner}: parquet_dataset got no files")
    columns = _check_columns(files, label_key, feature_keys, owner)
    total_rows = sum(open_parquet(path, owner).metadata.num_rows for path in files)
    if total_rows == 0:
        raise ComponentError(f"{owner}: the Parquet files hold no rows ({files[0]} ...)")

    def split_label(batch):
        if label_key is None:
            return batch
        features = {k: v for k, v in batch.items() if k != label_key}
        return features, batch[label_key]

    if _should_stream(total_rows, _uncompressed_bytes(files, columns, owner), rows_needed):
        dataset = _streamed_dataset(files, columns, batch_size, shuffle, repeat, seed, shapes, owner)
    else:
        dataset = _in_memory_dataset(files, columns, total_rows, batch_size, shuffle, repeat, seed, shapes, owner)
    return dataset.map(split_label).prefetch(tf.data.AUTOTUNE)


def _in_memory_dataset(files, columns, num_rows, batch_size, shuffle, repeat, seed, shapes, owner):
    """Every row held as one tensor per column, reshuffled per epoch."""
    import tensorflow as tf

    from sluice.components.io.examples import open_parquet

    arrays: dict[str, list] = {c: [] for c in columns}
    for path in files:
        table = open_parquet(path, owner).read(columns=columns)
        for name, values in _table_to_arrays(table, path, shapes, owner).items():
            arrays[name].append(values)
    merged = {name: _concatenate(parts) for name, parts in arrays.items()}
    tensors = {name: values.ragged() if isinstance(values, VarLen) else tf.constant(values)
               for name, values in merged.items()}

    # One vectorized gather per epoch, then rebatch (one slice copy per batch): no
    # per-row tf.data work.
    def epoch(_):
        if not shuffle:
            return tensors
        order = tf.random.shuffle(tf.range(num_rows, dtype=tf.int64), seed=seed)
        return {name: tf.gather(values, order) for name, values in tensors.items()}

    epochs = tf.data.Dataset.range(1).repeat() if repeat else tf.data.Dataset.range(1)
    # rebatch(n) == unbatch().batch(n); over endless epochs every batch is full.
    keep = _ragged_columns(files[0], columns, owner)
    return epochs.map(epoch).rebatch(batch_size).map(lambda batch: _ragged_to_sparse(batch, keep))


def _ragged_to_sparse(batch, keep_ragged=frozenset()):
    """Variable-length columns as SparseTensors ``[batch, longest]`` (what tfxio gives for them),
    except those Transform wrote from RaggedTensors."""
    import tensorflow as tf

    return {k: v.to_sparse() if isinstance(v, tf.RaggedTensor) and k not in keep_ragged else v
            for k, v in batch.items()}


def _ragged_columns(path: str, columns: list[str], owner: str) -> frozenset:
    from sluice.components.io.examples import read_schema

    schema = read_schema(path, owner)
    return frozenset(f.name for f in schema if f.name in columns and (f.metadata or {}).get(RAGGED_METADATA.encode()))


def _element_spec(values):
    import tensorflow as tf

    if isinstance(values, VarLen):
        dtype = tf.string if values.values.dtype == object else tf.as_dtype(values.values.dtype)
        return tf.RaggedTensorSpec([None, None], dtype, ragged_rank=1, row_splits_dtype=tf.int64)
    dtype = tf.string if values.dtype == object else tf.as_dtype(values.dtype)
    return tf.TensorSpec([None, *values.shape[1:]], dtype)


def _streamed_dataset(files, columns, batch_size, shuffle, repeat, seed, shapes, owner):
    """(file, row group) units in random order per pass, read in chunks, shuffled together in
    buffers of ``STREAM_SHUFFLE_ROWS`` rows."""
    import numpy as np
    import tensorflow as tf

    from sluice.components.io.examples import open_parquet, read_batches

    # One row gives the signature (reading a whole file here held a 15M-row split in memory).
    path, head = next((path, batch) for path in files for batch in read_batches(path, owner, 1, columns=columns))
    first = _table_to_arrays(head, path, shapes, owner)
    signature = {name: _element_spec(values) for name, values in first.items()}
    units = [(path, group) for path in files for group in range(open_parquet(path, owner).metadata.num_row_groups)]
    chunk_rows, buffer_rows = STREAM_CHUNK_ROWS, STREAM_SHUFFLE_ROWS

    def chunks():
        rng = np.random.default_rng(seed)

        def emit(buffer):
            merged = {k: _concatenate([part[k] for part in buffer]) for k in buffer[0]}
            if shuffle:
                order = rng.permutation(len(next(iter(merged.values()))))
                merged = {k: _take(v, order) for k, v in merged.items()}
            return {k: v.ragged() if isinstance(v, VarLen) else v for k, v in merged.items()}

        while True:
            order = rng.permutation(len(units)) if shuffle else range(len(units))
            buffer, held = [], 0
            for i in order:
                path, group = units[i]
                for record_batch in read_batches(path, owner, chunk_rows, columns=columns, row_groups=[group]):
                    buffer.append(_table_to_arrays(record_batch, path, shapes, owner))
                    held += record_batch.num_rows
                    if held >= buffer_rows:
                        yield emit(buffer)
                        buffer, held = [], 0
            if buffer:
                yield emit(buffer)
            if not repeat:
                return

    dataset = tf.data.Dataset.from_generator(chunks, output_signature=signature)
    keep = _ragged_columns(files[0], columns, owner)
    return dataset.rebatch(batch_size, drop_remainder=repeat).map(lambda batch: _ragged_to_sparse(batch, keep))
