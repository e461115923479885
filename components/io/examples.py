"""The one reader of an ``Examples`` artifact: its Parquet shards, listed and read through Beam's filesystems.

Every component that reads examples (StatisticsGen, Transform, Trainer, Evaluator) reads
them here, so a ``gs://`` or ``s3://`` pipeline root works wherever a local one does. Errors
are ``ComponentError`` lines naming the component (``owner``) and the file.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from sluice.components.artifacts import Examples
from sluice.components.io.files import is_remote
from sluice.components.sdk import ComponentError

# Rows per batch; memory stays bounded by a few batches per reading thread.
DEFAULT_BATCH_ROWS = 131072


def _match(patterns: list[str]) -> list[list[str]]:
    """The sorted files each glob pattern matches: local ones with ``glob`` (no Beam import), others
    through Beam's filesystems."""
    if not any(is_remote(p) for p in patterns):
        return [sorted(glob.glob(p)) for p in patterns]
    from apache_beam.io.filesystems import FileSystems

    return [sorted(m.path for m in result.metadata_list) for result in FileSystems.match(patterns)]


def match_files(patterns: list[str], owner: str) -> list[str]:
    """All files matching the glob patterns, sorted per pattern; an error if one matches nothing."""
    files: list[str] = []
    for pattern, matched in zip(patterns, _match(patterns)):
        if not matched:
            raise ComponentError(f"{owner}: no files match {pattern}")
        files.extend(matched)
    return files


def split_files(examples: Examples, split: str, owner: str) -> list[str]:
    """The Parquet shards of one split, sorted; an error naming the split's folder when there are none."""
    (files,) = _match([examples.parquet_pattern(split)])
    if not files:
        raise ComponentError(
            f"{owner}: examples split {split!r} has no Parquet files in {examples.split_uri(split)}")
    return files


def _source(path: str):
    """What pyarrow opens for ``path``: the path itself when local, else a Beam filesystem stream."""
    if not is_remote(path):
        return path
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def is_text(arrow_type: pa.DataType) -> bool:
    """Strings and bytes: the columns Parquet stores with dictionary pages worth keeping."""
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))


def _broken(path: str, exc: Exception, owner: str) -> ComponentError:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ComponentError(f"{owner}: cannot read Parquet file {path}: {message}")


def open_parquet(path: str, owner: str, **options) -> pq.ParquetFile:
    """A ``ParquetFile`` (``options`` as pyarrow's); an error naming a broken file."""
    try:
        return pq.ParquetFile(_source(path), **options)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for bad files
        raise _broken(path, exc, owner) from None


def read_schema(path: str, owner: str) -> pa.Schema:
    """The Arrow schema of one Parquet file (its footer only)."""
    return open_parquet(path, owner).schema_arrow


def read_batches(path: str, owner: str, batch_size: int = DEFAULT_BATCH_ROWS, columns: list[str] | None = None,
                 strings_as_dictionary: bool = False, row_groups: list[int] | None = None,
                 use_threads: bool = True) -> Iterator[pa.RecordBatch]:
    """Yields the RecordBatches of one Parquet file.

    ``strings_as_dictionary`` reads string and binary columns, and the values of lists of them,
    as Arrow dictionary arrays: decoding Parquet's dictionary pages then skips building every
    string. ``row_groups``: only these row groups (None: all). ``use_threads=False`` decodes on
    this thread only.

    Opened without pyarrow's pre-buffering (its default since pyarrow 15): that reads every
    selected row group's column chunks up front and holds them until the reader goes, so memory
    grew with the file, not the batch (bench/PROFILES.md, "Issue 22: the readers' pre-buffering").
    """
    parquet_file = open_parquet(path, owner, pre_buffer=False)
    try:
        nested = False
        if strings_as_dictionary:
            strings, nested = _text_leaves(parquet_file)
            if strings:
                # The footer already read serves again (one read less, a round trip on remote files).
                parquet_file = pq.ParquetFile(_source(path), metadata=parquet_file.metadata,
                                              read_dictionary=strings, pre_buffer=False)
        # A batch across row groups holds two dictionaries of a column, which Arrow cannot give
        # for the values of a list: with lists of text read as dictionaries, each row group apart.
        groups = row_groups if row_groups is not None else range(parquet_file.metadata.num_row_groups)
        for part in ([[group] for group in groups] if nested else [row_groups]):
            yield from parquet_file.iter_batches(batch_size=batch_size, columns=columns, row_groups=part,
                                                 use_threads=use_threads)
    except (OSError, ValueError) as exc:
        raise _broken(path, exc, owner) from None


def _text_leaves(parquet_file: pq.ParquetFile) -> tuple[list[str], bool]:
    """The Parquet paths of a file's text columns and of the values of its lists of text (a list's
    values are a leaf of their own, such as ``tokens.list.element``), and whether there are lists."""
    def listed(arrow_type: pa.DataType) -> bool:
        return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)) and is_text(arrow_type.value_type)

    metadata = parquet_file.metadata
    if metadata.num_row_groups == 0:  # no rows to read
        return [], False
    # The paths from a row group's columns, not from ``metadata.schema``: that schema and the
    # footer hold each other, a cycle only the garbage collector frees, and until then it held
    # about 5 MB per file read (StatisticsGen's memory at 1000x: bench/PROFILES.md).
    columns = metadata.row_group(0)
    owners = leaf_owners(parquet_file.schema_arrow)
    text = {f.name for f in parquet_file.schema_arrow if is_text(f.type) or listed(f.type)}
    nested = any(listed(f.type) for f in parquet_file.schema_arrow)
    return [columns.column(leaf).path_in_schema for leaf, name in enumerate(owners) if name in text], nested


def leaf_owners(schema: pa.Schema) -> list[str]:
    """The top-level field of each of a Parquet file's leaf columns, in the file's column order."""
    return [field.name for field in schema for _ in range(_leaves(field.type))]


def _leaves(arrow_type: pa.DataType) -> int:
    # At module level: a nested function calling itself is a reference cycle, garbage at each call.
    return sum(_leaves(arrow_type.field(i).type) for i in range(arrow_type.num_fields)) if arrow_type.num_fields else 1


def read_table(files: list[str], owner: str, columns: list[str] | None = None,
               limit: int | None = None) -> pa.Table:
    """The rows of ``files`` as one table (the first ``limit`` rows when given).

    Not ``pq.read_table``: that imports ``pyarrow.dataset``, a large import.
    """
    tables, rows = [], 0
    for path in files:
        try:
            table = open_parquet(path, owner).read(columns=columns)
        except (OSError, ValueError) as exc:
            raise _broken(path, exc, owner) from None
        tables.append(table)
        rows += table.num_rows
        if limit is not None and rows >= limit:
            break
    if not tables:
        raise ComponentError(f"{owner}: no Parquet files to read")
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.slice(0, limit) if limit is not None else table
