"""Cutting large CSV files into byte ranges that workers parse independently (no Beam here).

A file of more than ``CSV_RANGE_BYTES`` becomes ranges [start, end) of about that size. A
range's text runs from the first line end outside quotes at or after ``start`` (for the first
range: the end of the header line) to the first such line end at or after ``end``, which is
where the next range's text begins: every record is parsed by exactly one range, whatever the
quoted line breaks. Whether a line end is inside quotes depends on the quote parity at
``start``: stage 1 (``count_range``) counts the '"' bytes of every range (an escaped "" keeps
the parity, as RFC 4180 means it to); a prefix sum over the file's ranges (``before``) gives
each range its parity at both ends, and the lines before it, for errors; stage 2 parses
(``csv_read.ReadCsvFile.read_range``).

A range is the ordering unit of the output: its ``key`` (the file's index, then the range's
number) is what the file index is on the in-process path, so shards keep file order.

A '"' the parser reads as a character (inside an unquoted value: ``5" screen``) would flip the
parity for the rest of the file: stage 1 also tells, for either parity at a range's start,
whether a quote the count takes for an opening one is not at a field's start; a file where that
happens is read whole by its first range (``whole_file_instead``), as on the in-process path.
"""

from __future__ import annotations

import dataclasses

from sluice.components.example_gen.config import InputFile

# The range number's bits in an order key: up to a million ranges per file.
RANGE_BITS = 20
_COUNT_CHUNK = 8 << 20
_SCAN_WINDOW = 64 << 10


def order_key(file_index: int, number: int) -> int:
    """The elements' and shards' order: by file, then by range within the file."""
    return (file_index << RANGE_BITS) | number


@dataclasses.dataclass(frozen=True)
class CsvRange:
    """Bytes [start, end) of a file, range ``number`` of ``count`` (count 1: the whole file)."""

    file: InputFile
    number: int
    count: int
    start: int
    end: int

    @property
    def key(self) -> int:
        return order_key(self.file.index, self.number)


def file_size(path: str) -> int:
    import os

    if "://" not in path:
        return os.path.getsize(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def plan_ranges(files: list[InputFile], range_bytes: int) -> list[CsvRange]:
    """Every file as one range, or as ranges of about ``range_bytes`` when it is larger."""
    planned = []
    for file in files:
        size = file_size(file.path)
        count = max(1, -(-size // range_bytes))
        if count > (1 << RANGE_BITS) - 1:
            count = (1 << RANGE_BITS) - 1
        bounds = [size * i // count for i in range(count + 1)]
        planned += [CsvRange(file, i, count, bounds[i], bounds[i + 1]) for i in range(count)]
    return planned


def open_input(path: str):
    """A readable, seekable file: pyarrow's own for local paths, else Beam's."""
    import pyarrow as pa
    from apache_beam.io.filesystems import FileSystems

    return pa.OSFile(path, "rb") if "://" not in path else FileSystems.open(path)


def count_range(piece: CsvRange) -> tuple[tuple[int, int], tuple[int, int, bool, bool]]:
    """Stage 1: ((file index, range number), ('"' bytes, '\\n' bytes, misread if even, misread if odd)).

    Misread: under the quote parity at the range's start (even or odd), some quote the count
    takes for an opening one is not at a field's start (``5" screen``, ``ab""cd``): the parser
    reads it as a character, so the parity would cut the file wrong (see ``whole_file_instead``).
    """
    import numpy as np

    quotes = newlines = 0
    misread = [False, False]
    with open_input(piece.file.path) as fh:
        fh.seek(max(0, piece.start - 1))
        previous = fh.read(1) if piece.start else b"\n"  # the byte before the range (a line start)
        left = piece.end - piece.start
        while left > 0:
            chunk = fh.read(min(_COUNT_CHUNK, left))
            if not chunk:
                break
            at = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == ord('"'))
            if at.size:
                before_them = np.frombuffer(previous + chunk, dtype=np.uint8)[at]  # the byte before each quote
                field_start = np.isin(before_them, np.frombuffer(b',\n\r"', dtype=np.uint8))
                for odd in (0, 1):  # opening quotes: those after an even number of quotes
                    opening = (np.arange(at.size) + quotes + odd) % 2 == 0
                    misread[odd] = misread[odd] or bool((opening & ~field_start).any())
            quotes += int(at.size)
            newlines += chunk.count(b"\n")
            previous = chunk[-1:]
            left -= len(chunk)
    return (piece.file.index, piece.number), (quotes, newlines, misread[0], misread[1])


def before(file_index: int, number: int, counts: dict) -> tuple[bool, int]:
    """(quote parity odd, lines) before range ``number`` of a file: the stage 1 counts summed."""
    quotes = lines = 0
    for i in range(number):
        q, n = counts[(file_index, i)][:2]
        quotes, lines = quotes + q, lines + n
    return bool(quotes % 2), lines


def whole_file_instead(piece: CsvRange, counts: dict) -> bool:
    """Whether the quote parity misreads the range's file (a quote the parser reads as a character):
    the file is then read whole, by its first range, as on the in-process path."""
    odd = False
    for i in range(piece.count):
        quotes, _, misread_even, misread_odd = counts[(piece.file.index, i)]
        if misread_odd if odd else misread_even:
            return True
        odd = odd != bool(quotes % 2)
    return False


def record_start(read, offset: int, size: int, odd: bool) -> int:
    """The offset just past the first line end outside quotes at or after ``offset`` (``size`` if none).

    ``read(offset, n)`` gives the file's bytes there; ``odd``: whether a quote is open at ``offset``.
    """
    import numpy as np

    window = _SCAN_WINDOW
    while offset < size:
        chunk = np.frombuffer(read(offset, min(window, size - offset)), dtype=np.uint8)
        if not chunk.size:
            break
        quotes = np.cumsum(chunk == ord('"'), dtype=np.int64)  # at a line end: the quotes before it
        ends = np.flatnonzero(chunk == ord("\n"))
        outside = ends[(quotes[ends] + odd) % 2 == 0]
        if outside.size:
            return offset + int(outside[0]) + 1
        odd = bool((int(quotes[-1]) + odd) % 2)
        offset += chunk.size
        window *= 2  # a long quoted value: fewer, larger reads
    return size


@dataclasses.dataclass
class RangeText:
    """Where a range's records are: ``data[begin:stop]`` (``data``: a map of the whole local file,
    or the range's text read from another filesystem), with the file's ``lines`` before ``begin``.

    ``header``: the header line's bytes (first range only); ``at_end``: ``stop`` is the file's end.
    """

    data: object
    begin: int
    stop: int
    lines: int
    header: bytes | None
    at_end: bool


def range_text(piece: CsvRange, counts: dict) -> RangeText:
    """Stage 2's start: the range's records, from its first record boundary to the next range's."""
    import mmap

    path, index = piece.file.path, piece.file.index
    odd, lines = before(index, piece.number, counts)
    odd_at_end, _ = before(index, piece.number + 1, counts)
    local = "://" not in path
    if local:
        with open(path, "rb") as raw:  # the map outlives the file object (freed with its buffers)
            data = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
        size = len(data)

        def read(offset: int, n: int) -> bytes:
            return data[offset:offset + n]
    else:
        size, fh = file_size(path), open_input(path)

        def read(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)

    try:
        begin = record_start(read, piece.start, size, odd)
        last = piece.number == piece.count - 1
        stop = size if last else record_start(read, piece.end, size, odd_at_end)
        header = read(0, begin) if piece.number == 0 else None
        lines += read(piece.start, begin - piece.start).count(b"\n")
        # Text that runs to the file's end (the last range's, or after a quote left open) is
        # checked there for an open quote.
        at_end = stop == size
        if not local:
            data, begin, stop = read(begin, max(0, stop - begin)), 0, max(0, stop - begin)
    finally:
        if not local:
            fh.close()
    return RangeText(data, begin, stop, lines, header, at_end)


__all__ = ["CsvRange", "RangeText", "before", "count_range", "order_key", "plan_ranges", "range_text", "record_start",
           "whole_file_instead"]
