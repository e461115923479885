"""Reading one CSV file into RecordBatches of the final column types.

Errors are one line ``<file>:<line>: ...`` (see ``csv_errors``); a value that contradicts a
sniffed (not exact) type raises ``ColumnTypeChanged``, and the component reads again with
the types inferred over all rows.
"""

from __future__ import annotations

import os

from sluice.components.example_gen import config, csv_ranges
from sluice.components.example_gen.columns import INTFLOAT, STRING, CsvColumns, buffer, csv_options
from sluice.components.example_gen.config import ColumnTypeChanged, one_line
from sluice.components.example_gen.csv_errors import InvalidRows, csv_error, not_utf8_error, unclosed_quote_at_end
from sluice.components.sdk import ComponentError


class ReadCsvFile:
    """DoFn body: one CSV file -> (split, file index, RecordBatch) with the final column types.

    A local file is parsed in parallel: it is memory-mapped, cut into pieces of about
    ``CSV_BLOCK_BYTES`` at line ends, and the pieces are parsed by ``_PARSE_THREADS`` threads
    (pyarrow releases the GIL) and yielded in file order, so the rows, their splits and the
    shards are those of a serial read. A piece is only cut off when it holds no '"' at all
    (then no quoted value can span the cut); from the first piece that holds one, the rest of
    the file is streamed serially. Errors name the file's line: the lines before a piece are
    counted when one fails. Other filesystems' files are streamed serially. The batches are
    handed on one ahead in a helper thread, so parsing overlaps with hashing and writing.
    """

    _PARSE_THREADS = max(1, min(4, os.cpu_count() or 1))

    def __init__(self, columns: CsvColumns):
        self.columns = columns
        self._schema = None  # columns.batch_schema(), made once

    def __call__(self, file):
        for batch in _named(file.path, _prefetched(self._batches(file.path))):
            yield file.split, file.index, batch

    def read_range(self, piece, counts: dict):
        """DoFn body: a ``csv_ranges.CsvRange`` -> (split, its order key, RecordBatch).

        ``counts``: the stage 1 counts of the ranges of every cut file (``csv_ranges.count_range``).
        """
        if piece.count == 1 or csv_ranges.whole_file_instead(piece, counts):
            if piece.number:
                return
            batches = _prefetched(self._batches(piece.file.path))
        else:
            batches = _prefetched(self._range_batches(piece, counts))
        for batch in _named(piece.file.path, batches):
            yield piece.file.split, piece.key, batch

    def _range_batches(self, piece, counts: dict):
        """The batches of the records that begin in the range's bytes (see ``csv_ranges``)."""
        import pyarrow as pa

        path = piece.file.path
        text = csv_ranges.range_text(piece, counts)
        if text.header is not None:
            self._check_header(path, text.header, list(self.columns.names))
        if text.begin >= text.stop:
            return

        def lines_before(offset: int) -> int:  # error path only; an offset of ``text.data``
            return text.lines + text.data[text.begin:offset].count(b"\n")

        yield from self._text(path, text.data, pa.py_buffer(text.data), text.begin, text.stop, lines_before,
                              at_end=text.at_end)

    def _batches(self, path: str):
        import mmap

        import pyarrow as pa

        if "://" in path or os.path.getsize(path) == 0:
            with _open_input(path) as fh:
                yield from self._serial(path, fh, lines_before=0, with_header=True)
            return
        with open(path, "rb") as fh:
            # Not closed explicitly: Arrow buffers over it may outlive this frame; freed with them.
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        whole = pa.py_buffer(data)
        header_end = data.find(b"\n") + 1
        if header_end == 0 or data.find(b'"', 0, header_end) >= 0:  # no line end, or a quoted header
            yield from self._serial(path, pa.BufferReader(whole), lines_before=0, with_header=True)
            return
        self._check_header(path, data[:header_end], list(self.columns.names))

        def lines_before(offset: int) -> int:  # error path only
            return data[:offset].count(b"\n")

        yield from self._text(path, data, whole, header_end, len(data), lines_before, at_end=True)

    def _text(self, path: str, data, whole, offset: int, stop: int, lines_before, at_end: bool):
        """The batches of ``data[offset:stop]``, whole lines without the header (``whole``: an Arrow
        buffer over ``data``, a memory map or bytes); ``at_end``: ``stop`` is the file's end.

        ``lines_before(offset)``: the file's lines before an offset of ``data`` (error path only).
        """
        import mmap
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        def parsed(future, start: int, end: int):
            batches = future.result()
            # The batches hold their own copies: let go of the piece's pages, so the mapped
            # file does not add up in this process's RSS (they are read again if ever needed).
            if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
                first_page = start - start % mmap.PAGESIZE
                data.madvise(mmap.MADV_DONTNEED, first_page, end - first_page)
            return batches

        pending: list = []
        with ThreadPoolExecutor(self._PARSE_THREADS, thread_name_prefix="csv-parse") as pool:
            while offset < stop:
                newline = data.find(b"\n", min(offset + config.CSV_BLOCK_BYTES, stop) - 1, stop)
                end = stop if newline < 0 else newline + 1
                if data.find(b'"', offset, end) >= 0:
                    while pending:
                        yield from parsed(*pending.pop(0))
                    rest = pa.BufferReader(whole.slice(offset, stop - offset))
                    yield from self._serial(path, rest, lines_before(offset), with_header=False, at_end=at_end)
                    return
                piece = whole.slice(offset, end - offset)
                pending.append((pool.submit(self._parse_piece, path, piece, offset, lines_before), offset, end))
                offset = end
                while len(pending) > self._PARSE_THREADS:
                    yield from parsed(*pending.pop(0))
            while pending:
                yield from parsed(*pending.pop(0))

    @staticmethod
    def _check_header(path: str, header: bytes, names: list[str]) -> None:
        import pyarrow.csv as pacsv

        options = pacsv.ReadOptions(use_threads=False, block_size=max(len(header) + 1, 1 << 20))
        found = pacsv.open_csv(buffer(header), read_options=options).schema.names
        if found != names:
            raise ComponentError(f"{path}:1: header differs from the other files: {found}")

    def _options(self, invalid, with_header: bool, piece_bytes: int = 0):
        """Reader options; without the header line the columns are named; ``piece_bytes``: a piece's size."""
        import pyarrow.csv as pacsv

        columns = self.columns
        names = list(columns.names)
        options = csv_options(names, columns.read_types(), config.CSV_BLOCK_BYTES, invalid, columns.null_values)
        # UTF-8 is checked in _final instead: a dictionary-encoded column's dictionary alone
        # (its distinct values), not every value as it is parsed.
        options["convert_options"].check_utf8 = False
        if not with_header:
            options["read_options"] = pacsv.ReadOptions(block_size=config.CSV_BLOCK_BYTES, use_threads=False,
                                                        column_names=names)
        if piece_bytes:
            # A piece is whole lines without quotes (no value spans lines), read as one block
            # (one RecordBatch); with no quote in it, quoting is off (the tokenizer is faster).
            options["read_options"].block_size = piece_bytes + 1
            options["parse_options"] = pacsv.ParseOptions(invalid_row_handler=invalid, quote_char=False)
        return options

    def _parse_piece(self, path: str, piece, offset: int, lines_before) -> list:
        """One piece (an Arrow buffer of whole lines at ``offset``, no header) -> its batches."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        invalid = InvalidRows()
        try:
            table = pacsv.read_csv(pa.BufferReader(piece), **self._options(invalid, False, piece.size))
        except pa.ArrowInvalid as exc:
            raise self._error(path, exc, invalid, lines_before(offset)) from None
        return [self._final(path, batch) for batch in table.to_batches()]

    def _serial(self, path: str, stream, lines_before: int, with_header: bool, at_end: bool = True):
        """Streams the CSV text from ``stream``'s position, one block at a time; ``at_end``: the
        text runs to the file's end (only there can a last value hold an open quote's rest)."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        invalid = InvalidRows()
        batch = None
        try:
            reader = pacsv.open_csv(stream, **self._options(invalid, with_header))
            if with_header and reader.schema.names != list(self.columns.names):
                raise ComponentError(f"{path}:1: header differs from the other files: {reader.schema.names}")
            for batch in reader:
                yield self._final(path, batch)
        except pa.ArrowInvalid as exc:
            raise self._error(path, exc, invalid, lines_before) from None
        if batch is not None and at_end:
            error = unclosed_quote_at_end(path, batch)
            if error is not None:
                raise error

    def _final(self, path: str, batch):
        """A parsed batch in the final types: integral floats (INTFLOAT) become int64; its strings
        checked to be UTF-8 (the reader's own check is off, see ``_options``)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        columns = self.columns
        arrays = batch.columns
        for i, kind in enumerate(columns.kinds):
            if kind == STRING:
                array = arrays[i]
                try:
                    (array.dictionary if pa.types.is_dictionary(array.type) else array).validate(full=True)
                except pa.ArrowInvalid:
                    raise not_utf8_error(path, list(columns.names), columns.names[i]) from None
            elif kind == INTFLOAT:
                try:
                    arrays[i] = pc.cast(arrays[i], pa.int64())
                except pa.ArrowInvalid:
                    raise ColumnTypeChanged(f"{path}: column {columns.names[i]} has fractions") from None
        if self._schema is None:
            self._schema = columns.batch_schema()
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def _error(self, path: str, exc: Exception, invalid, lines_before: int) -> Exception:
        if not self.columns.exact and "conversion error to" in str(exc) and "UTF8" not in str(exc):
            return ColumnTypeChanged(f"{path}: {exc}")
        return csv_error(path, exc, invalid, list(self.columns.names), lines_before)


def _named(path: str, batches):
    """``batches``, their errors naming the file: the known ones are worded in csv_errors, this is the rest."""
    import pyarrow as pa

    try:
        yield from batches
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
        raise ComponentError(f"{path}: cannot read it as a UTF-8 CSV file: {one_line(str(exc))}") from None


def _open_input(path: str):
    """A readable file: pyarrow's own for local paths (its reads need no GIL), else Beam's."""
    import pyarrow as pa
    from apache_beam.io.filesystems import FileSystems

    if "://" not in path:
        return pa.OSFile(path, "rb")
    return FileSystems.open(path)


def _prefetched(items, depth: int = 2):
    """Iterates ``items`` in a helper thread, ``depth`` ahead; its exceptions re-raise here."""
    import queue
    import threading

    done = object()
    queued: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                queued.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((done, exc))

    thread = threading.Thread(target=produce, name="csv-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queued.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
