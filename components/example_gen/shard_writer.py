"""The shard writer of one worker: a split's rows of one input file -> row groups -> shards.

A split's batches from one input file are gathered into Parquet row groups of
``ROW_GROUP_ROWS`` rows (the last one fewer; readers then get big batches), dealt in turn to up
to ``SHARDS_PER_FILE`` shards of that split: each shard is encoded and written by a helper
thread of its own (pyarrow and tfx_bsl release the GIL), at most ``_WRITES_AHEAD`` row groups
behind, so the shards are written side by side while the next batches are split (one writer
per split fell behind: it had most of the work and a share of the cores). The shards are
closed when the next file starts, so memory and open files stay bounded whatever the data
size; ``shards.finalize_shards`` names them in input order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sluice.components.example_gen import config, shards


class _Shard:
    """An open output shard: its file, Parquet writer, rows and writes in flight (oldest first)."""

    def __init__(self, key: tuple[str, int], path: str, fh, writer):
        self.key, self.path, self.fh, self.writer = key, path, fh, writer
        self.rows = 0
        self.pending: list = []


class _SplitOutput:
    """One split's output for the input file being read: batches not yet written, and its shards."""

    def __init__(self):
        self.shards: list[_Shard] = []
        self.row_groups = 0
        self.buffered = 0
        self._batches: list = []

    def add(self, batch) -> None:
        self._batches.append(batch)
        self.buffered += batch.num_rows

    def take_buffered(self, rows: int | None = None) -> list:
        """The first ``rows`` buffered rows (all by default) as batches; the rest stay buffered."""
        if rows is None or rows >= self.buffered:
            batches, self._batches, self.buffered = self._batches, [], 0
            return batches
        taken, count = [], 0
        while count < rows:
            batch = self._batches.pop(0)
            if count + batch.num_rows > rows:  # cut it: the tail starts the next row group
                self._batches.insert(0, batch.slice(rows - count))
                batch = batch.slice(0, rows - count)
            taken.append(batch)
            count += batch.num_rows
        self.buffered -= count
        return taken


class ShardWriter:
    """(split, file index, batch) -> temp shard files; ``finish`` gives (split, temp path, rows).

    The body of ``transforms.WriteShardsFn``: ``start`` per bundle, ``add`` per element,
    ``finish`` at the bundle's end, ``shutdown`` when the worker lets go of it.
    ``count_rows(split, rows)`` is told the rows of a split's shards of each input file.
    """

    _WRITES_AHEAD = 2

    def __init__(self, output_uri: str, file_format: str, count_rows: Callable[[str, int], None]):
        self.output_uri, self.file_format, self.count_rows = output_uri, file_format, count_rows
        self.writers: dict = {}  # (split, shard number) -> its single-thread executor
        self.start()

    def start(self) -> None:
        self.open: dict[str, _SplitOutput] = {}
        self.index = None
        self.encodings: shards.ColumnEncodings | None = None  # the current input file's
        self.done: list[tuple[str, str, int]] = []

    def shutdown(self) -> None:
        for executor in self.writers.values():
            executor.shutdown(wait=True)

    def add(self, split: str, index: int, batch) -> None:
        if index != self.index:
            self._close_all()
            self.index = index
        output = self.open.get(split)
        if output is None:
            output = self.open[split] = _SplitOutput()
        output.add(batch)
        while output.buffered >= config.ROW_GROUP_ROWS:
            self._flush(split, output, config.ROW_GROUP_ROWS)

    def finish(self) -> list[tuple[str, str, int]]:
        """Closes every open shard; the (split, temp path, rows) of the shards of this bundle."""
        self._close_all()
        return self.done

    def _submit(self, shard: _Shard, work, *args) -> None:
        from concurrent.futures import ThreadPoolExecutor

        executor = self.writers.get(shard.key)
        if executor is None:
            executor = self.writers[shard.key] = ThreadPoolExecutor(max_workers=1,
                                                                   thread_name_prefix="shard-writer")
        while len(shard.pending) > self._WRITES_AHEAD:
            shard.pending.pop(0).result()  # re-raises a failed write here
        shard.pending.append(executor.submit(work, *args))

    def _flush(self, split: str, output: _SplitOutput, rows: int | None = None) -> None:
        """The split's buffered rows (the first ``rows``), as one row group, to its next shard in turn."""
        number = output.row_groups % config.SHARDS_PER_FILE
        output.row_groups += 1
        batches = output.take_buffered(rows)
        if number == len(output.shards):
            output.shards.append(self._new_shard(split, self.index, number, batches))
        shard = output.shards[number]
        shard.rows += sum(batch.num_rows for batch in batches)
        self._submit(shard, self._write, shard, batches)

    def _close_all(self) -> None:
        for split, output in self.open.items():
            if output.buffered:
                self._flush(split, output)
            for shard in output.shards:
                self._submit(shard, self._close, shard)
        for split, output in self.open.items():
            for shard in output.shards:
                for future in shard.pending:
                    future.result()
                self.done.append((split, shard.path, shard.rows))
            self.count_rows(split, sum(shard.rows for shard in output.shards))
        self.open = {}
        self.encodings = None

    @staticmethod
    def _close(shard: _Shard) -> None:
        if shard.writer is not None:
            shard.writer.close()
        shard.fh.close()

    def _new_shard(self, split: str, index: int, number: int, batches: list) -> _Shard:
        """A new shard file; ``batches``, its first row group, show what the columns hold.

        The first shard of an input file chooses the encodings for all of that file's shards
        (its splits are hash buckets of the same rows), once instead of per shard.
        """
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        folder = FileSystems.join(self.output_uri, f"Split-{split}")
        # ``index``: the element's order key (a file index, or csv_ranges.order_key): fixed width, so
        # that finalize_shards's order by name is input order.
        name = f".tmp-{index:016d}-{number:02d}-{uuid.uuid4().hex}{shards.shard_suffix(self.file_format)}"
        path = FileSystems.join(folder, name)
        if self.file_format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = batches[0].schema
            fh = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
            if self.encodings is None:
                self.encodings = shards.column_encodings(batches)
            encodings = self.encodings
            # Dictionary-encoded batches (CSV strings) are written as they are, straight into
            # Parquet's dictionary pages; without the Arrow schema in the file they read back
            # as plain strings, the type every reader expects.
            encoded = any(pa.types.is_dictionary(f.type) for f in schema)
            writer = pq.ParquetWriter(fh, schema, use_dictionary=list(encodings.dictionary) or False,
                                      column_encoding=encodings.encodings or None,
                                      compression=encodings.codecs, write_statistics=False,
                                      store_schema=not encoded, write_batch_size=config.PARQUET_WRITE_BATCH)
            return _Shard((split, number), path, fh, writer)
        return _Shard((split, number), path, FileSystems.create(path, compression_type=CompressionTypes.GZIP),
                      None)

    def _write(self, shard: _Shard, batches: list) -> None:
        if self.file_format == "parquet":
            import pyarrow as pa

            table = pa.Table.from_batches(batches)
            if len(batches) > 1 and any(pa.types.is_dictionary(f.type) for f in table.schema):
                # One dictionary per column chunk: Parquet then takes the codes as they are.
                table = table.unify_dictionaries()
            shard.writer.write_table(table, row_group_size=table.num_rows)
        else:
            from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

            encoder = RecordBatchToExamplesEncoder()
            for batch in batches:
                shards.write_tfrecords(shard.fh, encoder.encode(shards.to_example_lists(batch)))
