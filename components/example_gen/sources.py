"""Reading Parquet files and TFRecord files of tf.Example into RecordBatches of Sluice's types.

Sluice's column types: int64, float64, string (and binary, lists). Parquet columns are widened
to them; single-valued tf.Example features become scalar columns, others stay lists.
"""

from __future__ import annotations

import struct
from typing import Any

from sluice.components.example_gen import config
from sluice.components.example_gen.config import InputFile, one_line
from sluice.components.sdk import ComponentError

# --- Parquet ------------------------------------------------------------------------------------


class ReadParquetFile:
    """DoFn body: one Parquet file -> (split, file index, RecordBatch) in the first file's schema."""

    def __init__(self, schema):
        self.schema = schema

    def __call__(self, file):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(file.path) as fh:
            try:
                parquet = pq.ParquetFile(fh)
                for batch in parquet.iter_batches(batch_size=config.BATCH_ROWS):
                    if batch.schema.names != self.schema.names:
                        raise ComponentError(
                            f"{file.path}: columns {batch.schema.names} differ from {self.schema.names}"
                        )
                    arrays = [_natural(col) for col in batch.columns]
                    arrays = [a.cast(f.type) if a.type != f.type else a for a, f in zip(arrays, self.schema)]
                    yield file.split, file.index, pa.RecordBatch.from_arrays(arrays, schema=self.schema)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ComponentError(f"{file.path}: not a readable Parquet file: {one_line(str(exc))}") from None


def _natural(array):
    """Sluice's column types: float32 -> float64, small ints -> int64, large_string -> string."""
    import pyarrow as pa

    t = array.type
    if pa.types.is_floating(t) and t != pa.float64():
        return array.cast(pa.float64())
    if pa.types.is_integer(t) and t != pa.int64():
        return array.cast(pa.int64())
    if pa.types.is_large_string(t):
        return array.cast(pa.string())
    if pa.types.is_dictionary(t):
        return _natural(array.dictionary_decode())
    return array


def parquet_schema(files: list[InputFile]):
    """The first file's schema in Sluice's types; its column names must be distinct."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(files[0].path) as fh:
        try:
            schema = pq.ParquetFile(fh).schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise ComponentError(f"{files[0].path}: not a readable Parquet file: {one_line(str(exc))}") from None
    fields = [pa.field(f.name, _natural(pa.nulls(0, f.type)).type) for f in schema]
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ComponentError(f"{files[0].path}: duplicate column name(s) {', '.join(map(repr, duplicates))}")
    return pa.schema(fields)


# --- TFRecord -----------------------------------------------------------------------------------


def _tfrecords(path: str, batch_size: int = config.BATCH_ROWS):
    """Lists of serialized records from a TFRecord file (gzip when named *.gz or *.gzip)."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    compression = CompressionTypes.GZIP if path.endswith((".gz", ".gzip")) else CompressionTypes.UNCOMPRESSED
    batch = []
    with FileSystems.open(path, compression_type=compression) as fh:
        while True:
            head = fh.read(12)  # uint64 length + uint32 masked crc of the length
            if not head:
                break
            if len(head) < 12:
                raise ComponentError(f"{path}: truncated TFRecord file (after {len(batch)} records)")
            (length,) = struct.unpack("<Q", head[:8])
            data = fh.read(length + 4)  # record + uint32 crc
            if len(data) < length + 4:
                raise ComponentError(f"{path}: truncated TFRecord file")
            batch.append(data[:length])
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def _decode_examples(path: str, records: list[bytes]):
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    try:
        return ExamplesToRecordBatchDecoder().DecodeBatch(records)
    except Exception as exc:  # noqa: BLE001 - tfx_bsl raises plain RuntimeErrors
        raise ComponentError(f"{path}: not serialized tf.Example records: {one_line(str(exc))}") from None


# feature -> (kind, max values per example, all bytes valid UTF-8); kind: 0 none, 1 int, 2 float, 3 bytes
_FEATURE_KIND = {"int64": 1, "float": 2, "double": 2, "binary": 3, "large_binary": 3, "string": 3, "large_string": 3}


def _summarize_features(batch) -> dict[str, tuple[int, int, bool]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    summary = {}
    for name, column in zip(batch.schema.names, batch.columns):
        value_type = column.type.value_type
        kind = _FEATURE_KIND.get(str(value_type), 0)
        lengths = pc.list_value_length(column)
        longest = pc.max(lengths).as_py() or 0
        utf8 = True
        if kind == 3:
            try:
                pc.cast(pc.list_flatten(column), pa.string())
            except pa.ArrowInvalid:
                utf8 = False
        summary[name] = (kind, longest, utf8)
    return summary


def _merge_feature_summaries(a: dict | None, b: dict | None) -> dict | None:
    if a is None:
        return b
    if b is None:
        return a
    merged = dict(a)
    for name, (kind, longest, utf8) in b.items():
        if name in merged:
            k, n, u = merged[name]
            if k and kind and k != kind:
                raise ComponentError(f"feature '{name}' holds both {k} and {kind} values (1=int, 2=float, 3=bytes)")
            merged[name] = (max(k, kind), max(n, longest), u and utf8)
        else:
            merged[name] = (kind, longest, utf8)
    return merged


def merge_all_feature_summaries(summaries) -> dict:
    """CombineGlobally body: the files' feature summaries merged into one."""
    merged = None
    for summary in summaries:
        merged = _merge_feature_summaries(merged, summary)
    return merged or {}


def _feature_types(summary: dict) -> dict[str, Any]:
    """Arrow type per feature: scalar when every example has at most one value, else a list."""
    import pyarrow as pa

    types = {}
    for name in sorted(summary):
        kind, longest, utf8 = summary[name]
        value = {1: pa.int64(), 2: pa.float64(), 3: pa.string() if utf8 else pa.binary()}.get(kind, pa.string())
        types[name] = value if longest <= 1 else pa.large_list(value)
    return types


def _examples_to_natural(batch, types: dict[str, Any]):
    """Decoded tf.Examples (list columns) -> Sluice columns (scalars where single-valued)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    present = dict(zip(batch.schema.names, batch.columns))
    for name, target in types.items():
        column = present.get(name)
        if column is None:
            arrays.append(pa.nulls(batch.num_rows, target))
            continue
        if pa.types.is_large_list(target):
            arrays.append(column.cast(target))
            continue
        lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        has_value = lengths > 0
        positions = np.cumsum(has_value) - 1
        values = pc.list_flatten(column)
        if values.type != target:
            values = values.cast(target)
        indices = pa.array(np.where(has_value, positions, 0), mask=~has_value)
        arrays.append(values.take(indices) if len(values) else pa.nulls(batch.num_rows, target))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(list(types.items())))


class ScanTFRecordFeatures:
    """DoFn body: one TFRecord file -> the summary of its features (kind, values per example, UTF-8)."""

    def __call__(self, file):
        summary = None
        for records in _tfrecords(file.path):
            summary = _merge_feature_summaries(summary, _summarize_features(_decode_examples(file.path, records)))
        if summary is not None:
            yield summary


def read_tfrecord_file(file, summary):
    """DoFn body: one TFRecord file -> (split, file index, RecordBatch) in the types ``summary`` implies."""
    types = _feature_types(summary)
    for records in _tfrecords(file.path):
        yield file.split, file.index, _examples_to_natural(_decode_examples(file.path, records), types)
