"""CSV column kinds: sniffed from each file's first block(s), or scanned over all rows.

Sniffing checks every file's header (same names, none empty or repeated) and reads the first
block, and on while some column has shown no value yet (up to ``SNIFF_MAX_BYTES``). A local
file whose head has no quote is parsed in memory; any other file is streamed.
"""

from __future__ import annotations

from sluice.components.example_gen import config
from sluice.components.example_gen.columns import (
    EMPTY,
    STRING,
    CsvColumns,
    buffer,
    classify_strings,
    csv_options,
    few_distinct,
)
from sluice.components.example_gen.config import InputFile, one_line
from sluice.components.example_gen.csv_errors import InvalidRows, csv_error, unclosed_quote_at_end
from sluice.components.example_gen.file_checks import check_csv_head
from sluice.components.sdk import ComponentError


def sniff_csv_columns(who: str, files: list[InputFile], null_values: tuple[str, ...] = ("",)) -> CsvColumns:
    """Checks every file's header and first block; kinds from the first blocks (not exact)."""
    import pyarrow as pa

    names: list[str] | None = None
    kinds: list[int] = []
    sample = None  # the first file's first block
    for file in files:
        try:
            header, file_kinds, first_block = _sniff_file(file.path, names, files[0].path, null_values)
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
            # Every error names the file: the known ones are worded in csv_errors, this is the rest.
            raise ComponentError(f"{file.path}: cannot read it as a UTF-8 CSV file: {one_line(str(exc))}") from None
        if names is None:
            names, kinds = header, [EMPTY] * len(header)
        if sample is None:
            sample = first_block
        kinds = [max(a, b) for a, b in zip(kinds, file_kinds)]
    dictionary = frozenset(n for n, k in zip(names or (), kinds) if k == STRING and few_distinct(sample.column(n)))
    return CsvColumns(tuple(names or ()), tuple(kinds), null_values=tuple(null_values), dictionary=dictionary)


def _sniff_file(path: str, names: list[str] | None, first_path: str, null_values: tuple[str, ...]):
    """(header, kinds, first block) of one file, its header checked (against ``names`` when known)."""
    # A header longer than a sniffed block is read in one block (pyarrow needs whole rows in one).
    block = max(min(config.SNIFF_BLOCK_BYTES, config.CSV_BLOCK_BYTES), 4 * check_csv_head(path).header_bytes)
    sniffed = sniff_head_in_memory(path, null_values)
    header = sniffed[0] if sniffed else _csv_header(path, block)
    empty = [i + 1 for i, n in enumerate(header) if not n.strip()]
    if empty:
        raise ComponentError(f"{path}:1: empty column name at position(s) {', '.join(map(str, empty))} "
                             f"of {len(header)} in the header")
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise ComponentError(f"{path}:1: duplicate column name(s) {', '.join(map(repr, duplicates))}")
    if names is not None and header != names:
        raise ComponentError(f"{path}:1: header differs from {first_path}: {header} vs {names}")
    _, file_kinds, rows, first_block = sniffed or _sniff_streaming(path, header, null_values, block)
    if rows == 0:
        raise ComponentError(f"{path}: has a header but no data rows")
    return header, file_kinds, first_block


def _csv_header(path: str, block_bytes: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from apache_beam.io.filesystems import FileSystems

    invalid = InvalidRows()
    with FileSystems.open(path) as fh:
        try:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=block_bytes, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
                convert_options=pacsv.ConvertOptions(check_utf8=False),
            )
            return list(reader.schema.names)
        except pa.ArrowInvalid as exc:
            if "Empty CSV" in str(exc):  # not a file of no bytes: check_csv_head refuses those
                raise ComponentError(f"{path}: no header: the file holds only blank lines") from None
            raise csv_error(path, exc, invalid, []) from None


def _sniffed(batch, kinds: list[int], rows: int, first_block):
    """(kinds, rows, first block) once ``batch`` (all strings) is sniffed too."""
    kinds = [max(k, classify_strings(batch.column(i))) for i, k in enumerate(kinds)]
    return kinds, rows + batch.num_rows, batch if first_block is None else first_block


def _sniff_more(kinds: list[int], blocks: int) -> bool:
    """Sniff the next block: some column has shown no value yet (and SNIFF_MAX_BYTES is not reached)."""
    return EMPTY in kinds and blocks * min(config.SNIFF_BLOCK_BYTES, config.CSV_BLOCK_BYTES) < config.SNIFF_MAX_BYTES


def _sniff_streaming(path: str, names: list[str], null_values: tuple[str, ...], block_bytes: int):
    """(names, kinds, rows, first block) from the file's first blocks, streamed (any file, any quoting)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from apache_beam.io.filesystems import FileSystems

    invalid = InvalidRows()
    strings = {n: pa.string() for n in names}
    file_kinds = [EMPTY] * len(names)
    rows = 0
    first_block = None
    with FileSystems.open(path) as fh:
        try:
            reader = pacsv.open_csv(fh, **csv_options(names, strings, block_bytes, invalid, null_values))
            batch = None
            for block, batch in enumerate(reader):
                file_kinds, rows, first_block = _sniffed(batch, file_kinds, rows, first_block)
                if not _sniff_more(file_kinds, block + 1):
                    break
            else:  # the whole file was read: its last value is at hand
                error = unclosed_quote_at_end(path, batch) if batch is not None else None
                if error is not None:
                    raise error
        except pa.ArrowInvalid as exc:
            raise csv_error(path, exc, invalid, names) from None
    return names, file_kinds, rows, first_block


def sniff_head_in_memory(path: str, null_values: tuple[str, ...]):
    """``_sniff_streaming``'s result for a local file whose head has no quote, else None.

    The head is read block by block into memory and parsed there: the streaming reader would
    also parse blocks ahead on a helper thread (wasted, and waited for when it is closed).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if "://" in path:
        return None
    block_bytes = min(config.SNIFF_BLOCK_BYTES, config.CSV_BLOCK_BYTES)
    with open(path, "rb") as fh:
        data = fh.read(block_bytes)
        header_end = data.find(b"\n") + 1
        if header_end == 0 or b'"' in data:
            return None
        try:
            names = pacsv.read_csv(buffer(data[:header_end]), read_options=pacsv.ReadOptions(use_threads=False),
                                   convert_options=pacsv.ConvertOptions(check_utf8=False)).schema.names
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None  # the streaming reader names the problem
        if len(set(names)) != len(names):
            return names, [], 0, None  # duplicate names: the caller's error
        strings = {n: pa.string() for n in names}
        kinds, rows, first_block, blocks, lines_before = [EMPTY] * len(names), 0, None, 0, 1
        at_end = len(data) < block_bytes
        data = data[header_end:]
        while True:
            cut = len(data) if at_end else data.rfind(b"\n") + 1  # whole lines only, but at the end
            piece, data = data[:cut], data[cut:]
            if piece:
                invalid = InvalidRows()
                options = csv_options(names, strings, len(piece) + 1, invalid, null_values)
                options["read_options"] = pacsv.ReadOptions(block_size=len(piece) + 1, use_threads=False,
                                                            column_names=names)
                options["parse_options"] = pacsv.ParseOptions(invalid_row_handler=invalid, quote_char=False)
                try:
                    batches = pacsv.read_csv(buffer(piece), **options).to_batches()
                except pa.ArrowInvalid as exc:
                    raise csv_error(path, exc, invalid, names, lines_before) from None
                if batches and batches[0].num_rows:
                    kinds, rows, first_block = _sniffed(batches[0], kinds, rows, first_block)
                lines_before += piece.count(b"\n")
            blocks += 1
            if at_end or not _sniff_more(kinds, blocks):
                return names, kinds, rows, first_block
            more = fh.read(block_bytes)
            at_end = len(more) < block_bytes
            if b'"' in more:
                return None
            data += more


class ScanCsvKinds:
    """DoFn body: the kinds of every column over all rows of one file (or of a ``csv_ranges`` range)."""

    def __init__(self, names: tuple[str, ...], null_values: tuple[str, ...] = ("",)):
        self.names = names
        self.null_values = null_values

    def __call__(self, file):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(file.path) as fh:
            yield self._kinds(file.path, fh, header=True, lines_before=0)

    def scan_range(self, piece, counts: dict):
        """The kinds over the records of a range (``counts``: stage 1's, see ``csv_ranges``)."""
        import pyarrow as pa

        from sluice.components.example_gen import csv_ranges

        if piece.count == 1 or csv_ranges.whole_file_instead(piece, counts):
            if not piece.number:
                yield from self(piece.file)
            return
        text = csv_ranges.range_text(piece, counts)
        if text.begin >= text.stop:
            return
        records = pa.py_buffer(text.data).slice(text.begin, text.stop - text.begin)
        yield self._kinds(piece.file.path, pa.BufferReader(records), header=False, lines_before=text.lines)

    def _kinds(self, path: str, stream, header: bool, lines_before: int) -> tuple[int, ...]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        strings = {n: pa.string() for n in self.names}
        kinds = [EMPTY] * len(self.names)
        invalid = InvalidRows()
        try:
            options = csv_options(list(self.names), strings, config.CSV_BLOCK_BYTES, invalid, self.null_values)
            if not header:
                options["read_options"].column_names = list(self.names)
            for batch in pacsv.open_csv(stream, **options):
                kinds = [k if k == STRING else max(k, classify_strings(batch.column(i))) for i, k in enumerate(kinds)]
        except pa.ArrowInvalid as exc:
            raise csv_error(path, exc, invalid, list(self.names), lines_before) from None
        except (UnicodeDecodeError, OSError) as exc:
            raise ComponentError(f"{path}: cannot read it as a UTF-8 CSV file: {one_line(str(exc))}") from None
        return tuple(kinds)
