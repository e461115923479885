"""A split's shard files: their formats, Parquet column encodings, and their final names.

Shards are written (``shard_writer``) as temp files ``<uri>/Split-<split>/.tmp-*``; a last
pipeline step records those of the bundles the runner committed (``record_written``), and once
the pipeline has finished ``finalize_shards`` names them ``part-NNNNN-of-MMMMM`` in input order
and deletes the rest, left by retried attempts (Beam's WriteFiles does the same). Parquet shards
get an encoding and codec per column (``column_encodings``); TFRecord shards hold gzipped
tf.Example records.
"""

from __future__ import annotations

import dataclasses
import struct

from sluice.components.example_gen import config
from sluice.components.example_gen.split import is_text

# --- TFRecord of tf.Example ---------------------------------------------------------------------


def to_example_lists(batch):
    """Scalar columns -> the list columns tf.Example encoding wants (null -> empty feature)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, fields = [], []
    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_dictionary(field.type):
            column = column.dictionary_decode()
            field = pa.field(field.name, column.type)
        if pa.types.is_floating(field.type):
            column, value_type = column.cast(pa.float32()), pa.float32()
        elif pa.types.is_integer(field.type):
            column, value_type = column.cast(pa.int64()), pa.int64()
        elif pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            inner = field.type.value_type
            if pa.types.is_floating(inner):
                value_type = pa.float32()
            elif pa.types.is_integer(inner):
                value_type = pa.int64()
            else:
                value_type = pa.binary()
            arrays.append(column.cast(pa.large_list(value_type)))
            fields.append(pa.field(field.name, pa.large_list(value_type)))
            continue
        else:
            column, value_type = column.cast(pa.binary()), pa.binary()
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        offsets = pa.array(np.concatenate([[0], np.cumsum(valid)]).astype(np.int64))
        lists = pa.LargeListArray.from_arrays(offsets, column.drop_null())
        arrays.append(lists)
        fields.append(pa.field(field.name, pa.large_list(value_type)))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _masked_crc(data: bytes) -> bytes:
    from apache_beam.io.tfrecordio import _default_crc32c_fn

    crc = _default_crc32c_fn(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_tfrecords(fh, records) -> None:
    for record in records:
        length = struct.pack("<Q", len(record))
        fh.write(length + _masked_crc(length) + record + _masked_crc(record))


# --- naming and finishing the shards ------------------------------------------------------------


def shard_suffix(file_format: str) -> str:
    return ".parquet" if file_format == "parquet" else ".tfrecord.gz"


# The list of shards the committed bundles wrote, kept in the output folder until they are named.
WRITTEN_LIST = ".written-shards.json"


def record_written(written: list, output_uri: str) -> None:
    """Saves the (split, temp path, rows) of every shard the runner committed (a pipeline step:
    a retried or replayed bundle's other attempts never reach it)."""
    import json

    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    with FileSystems.create(FileSystems.join(output_uri, WRITTEN_LIST),
                            compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(json.dumps(sorted([list(item) for item in written])).encode())


def read_written(output_uri: str, owner: str) -> list[tuple[str, str, int]]:
    """The shards ``record_written`` saved; an error naming the component when the runner ran no such step."""
    import json

    from apache_beam.io.filesystems import FileSystems

    from sluice.components.sdk import ComponentError

    path = FileSystems.join(output_uri, WRITTEN_LIST)
    if not FileSystems.exists(path):
        raise ComponentError(f"{owner}: the Beam runner finished without recording the shards it wrote "
                             f"({path} is missing): it dropped the output of a pipeline step")
    with FileSystems.open(path) as fh:
        return [(split, temp, int(rows)) for split, temp, rows in json.loads(fh.read())]


def finalize_shards(output_uri: str, splits: list[str], file_format: str, written: list[tuple[str, str, int]],
                    schema=None) -> dict[str, int]:
    """Names the ``written`` temp shards part-NNNNN-of-MMMMM in input order and returns the rows per split.

    Temp shards not in ``written`` were written by attempts the runner discarded (a retried or
    replayed bundle) and are deleted, as is the list. A split without shards gets one empty
    shard, of ``schema`` (the written shards' own schema when there are any).
    """
    from apache_beam.io.filesystems import FileSystems

    suffix = shard_suffix(file_format)
    kept = {temp.rsplit("/", 1)[-1] for _, temp, _ in written}
    rows = dict.fromkeys(splits, 0)
    schema = _schema_of([temp for _, temp, _ in written], file_format) or schema
    for split in splits:
        folder = FileSystems.join(output_uri, f"Split-{split}")
        temps = sorted((temp for name, temp, _ in written if name == split), key=lambda path: path.rsplit("/", 1)[-1])
        rows[split] = sum(count for name, _, count in written if name == split)
        found = FileSystems.match([FileSystems.join(folder, f".tmp-*{suffix}")])[0].metadata_list
        discarded = [m.path for m in found if m.path.rsplit("/", 1)[-1] not in kept]
        if discarded:
            FileSystems.delete(discarded)
        if not temps:
            _write_empty_shard(FileSystems.join(folder, f"part-00000-of-00001{suffix}"), file_format, schema)
            continue
        finals = [FileSystems.join(folder, f"part-{i:05d}-of-{len(temps):05d}{suffix}") for i in range(len(temps))]
        FileSystems.rename(temps, finals)
    listed = FileSystems.join(output_uri, WRITTEN_LIST)
    if FileSystems.exists(listed):
        FileSystems.delete([listed])
    return rows


def _write_empty_shard(path: str, file_format: str, schema) -> None:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    if file_format == "parquet":
        import pyarrow.parquet as pq

        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            pq.write_table(schema.empty_table(), fh)
    else:
        FileSystems.create(path, compression_type=CompressionTypes.GZIP).close()


def _schema_of(paths: list[str], file_format: str):
    """The schema of the first of these Parquet shards, None when there is none."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    if file_format != "parquet" or not paths:
        return None
    with FileSystems.open(min(paths)) as fh:
        return pq.read_schema(fh)


# --- Parquet column encodings -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnEncodings:
    """How a shard's columns are stored: Parquet dictionary encoding, other encodings, and codec, per column."""

    dictionary: tuple[str, ...]
    codecs: dict[str, str]
    encodings: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> Parquet encoding


def column_encodings(batches: list) -> ColumnEncodings:
    """Parquet's encoding and codec per column, judged on samples of a shard's first row group.

    - Strings: dictionary-encoded; the codes are not compressed when the batches carry them
      already (few distinct values), else ``PARQUET_COMPRESSION`` (dictionaries of many strings
      fall back to plain pages).
    - Integers: ``DELTA_BINARY_PACKED``, not compressed: less CPU to write and read than
      dictionaries of few-valued integers and snappy for the rest, and about as small
      (timestamps shrink to less than half).
    - Floats with few distinct values (at most ``NUMERIC_DICTIONARY_MAX_DISTINCT`` in a sample:
      prices, miles): dictionary-encoded, codes not compressed: smaller, and cheaper to write
      and much cheaper to read.
    - Other floats: ``PARQUET_COMPRESSION``, unless it barely shrinks them (more than
      ``INCOMPRESSIBLE`` of a sample kept: jittered coordinates), then none.

    The samples are ``COMPRESSION_SAMPLE_BYTES`` from the middle of each of the first 8 batches.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    dictionary, codecs, encodings = [], {}, {}
    for i, field in enumerate(batches[0].schema):
        codecs[field.name] = config.PARQUET_COMPRESSION
        if pa.types.is_dictionary(field.type) or is_text(field.type):
            dictionary.append(field.name)
            if pa.types.is_dictionary(field.type):
                codecs[field.name] = "none"
            continue
        if pa.types.is_integer(field.type):
            encodings[field.name] = "DELTA_BINARY_PACKED"
            codecs[field.name] = "none"
            continue
        if not pa.types.is_floating(field.type):
            continue
        width = field.type.bit_width // 8
        samples = []
        for batch in batches[:8]:
            column = batch.column(i)
            rows = min(len(column), config.COMPRESSION_SAMPLE_BYTES // width)
            samples.append(column.slice((len(column) - rows) // 2, rows))
        sample = pa.chunked_array(samples, field.type)
        present = len(sample) - sample.null_count
        if present >= 1024 and pc.count_distinct(sample).as_py() <= present * config.NUMERIC_DICTIONARY_MAX_DISTINCT:
            dictionary.append(field.name)
            codecs[field.name] = "none"
            continue
        values = b"".join(chunk.buffers()[1].slice(chunk.offset * width, len(chunk) * width).to_pybytes()
                          for chunk in samples)
        compressed = pa.compress(values, codec=config.PARQUET_COMPRESSION, asbytes=True)
        if len(values) >= 4096 and len(compressed) > config.INCOMPRESSIBLE * len(values):
            codecs[field.name] = "none"
    return ColumnEncodings(tuple(dictionary), codecs, encodings)
