"""CSV errors as one line ``<file>:<line>: problem``, from pyarrow's errors and bad rows.

The line assumes no quoted value spans lines before it.
"""

from __future__ import annotations

import os
import re

from sluice.components.example_gen import config
from sluice.components.example_gen.columns import csv_options
from sluice.components.example_gen.config import one_line
from sluice.components.sdk import ComponentError


class InvalidRows:
    """pyarrow invalid_row_handler that remembers the first bad row for the error message.

    pyarrow decodes a bad row's text (strictly, as UTF-8) before it calls the handler; on bytes
    that are not UTF-8 the decode fails inside pyarrow, which then prints "Exception ignored
    in: <InvalidRows ...>" and a traceback. ``_quiet_undecodable_rows`` hooks that report
    away and sets ``undecodable`` instead; the parse still fails with pyarrow's own error.
    """

    def __init__(self):
        _quiet_undecodable_rows()
        self.first = None
        self.undecodable = False

    def __call__(self, row):
        if self.first is None:
            self.first = row
        return "error"


def _quiet_undecodable_rows() -> None:
    """Installs (once) an unraisable-exception hook that swallows pyarrow's failed decode of a bad row."""
    import sys

    previous = sys.unraisablehook
    if getattr(previous, "sluice_invalid_rows", False):
        return

    def hook(unraisable):
        if isinstance(unraisable.object, InvalidRows) and isinstance(unraisable.exc_value, UnicodeDecodeError):
            unraisable.object.undecodable = True
            return
        previous(unraisable)

    hook.sluice_invalid_rows = True
    sys.unraisablehook = hook


def csv_error(path: str, exc: Exception, invalid: InvalidRows | None, names: list[str],
              lines_before: int = 0) -> ComponentError:
    """One line 'file:line: problem' for a pyarrow CSV error; ``lines_before`` the parsed text's start."""
    text = str(exc)
    row = invalid.first if invalid else None
    match = re.search(r"Row #(\d+)", text)
    line = row.number if row is not None and row.number > 0 else (int(match.group(1)) if match else None)
    line = line + lines_before if line else None
    where = f"{path}:{line}" if line else path
    if row is None and invalid is not None and invalid.undecodable:
        return ComponentError(f"{where}: not a UTF-8 CSV file: a row with the wrong number of columns is not valid "
                              "UTF-8 (binary data?)")
    if row is not None:
        if row.text.count('"') % 2:
            return ComponentError(f"{where}: broken quoting: unterminated quoted field in {row.text[:60]!r}")
        return ComponentError(
            f"{where}: expected {row.expected_columns} columns, got {row.actual_columns}: {row.text[:60]!r}"
        )
    if "invalid UTF8" in text:
        return not_utf8_error(path, names, _column_of(text, names))
    column = _column_of(text, names)
    detail = text.split(": ", 1)[-1] if "conversion error" in text else text
    if column:
        return ComponentError(f"{where}: column '{column}': {one_line(detail)}")
    return ComponentError(f"{where}: {one_line(text)}")


def unclosed_quote_at_end(path: str, last_batch) -> ComponentError | None:
    """The error for a quote left open in the file's last field, which pyarrow reads as a value
    running to the end of the file (the rest of the file silently becomes one value).

    Only then can the last value of the last row hold a line break and be the file's very end.
    """
    import pyarrow as pa
    from apache_beam.io.filesystems import FileSystems

    last_type = last_batch.schema.types[-1]
    if pa.types.is_dictionary(last_type):
        last_type = last_type.value_type
    if last_batch.num_rows == 0 or not pa.types.is_string(last_type):
        return None
    value = last_batch.column(last_batch.num_columns - 1)[-1].as_py()
    if not value or ("\n" not in value and "\r" not in value):
        return None
    raw = value.replace('"', '""').encode()
    with FileSystems.open(path) as fh:
        try:
            size = fh.seek(0, os.SEEK_END)
        except (OSError, ValueError, NotImplementedError):  # a stream that cannot seek: not checked
            return None
        start = max(0, size - len(raw) - 8)
        fh.seek(start)
        tail = fh.read()
        if not tail.endswith(b'"' + raw) or tail.rstrip(b"\r\n").endswith(b'"' + raw.rstrip(b"\r\n") + b'"'):
            return None
        quote_at = size - len(raw) - 1
        fh.seek(0)
        newlines, read = 0, 0
        while read < quote_at:
            chunk = fh.read(min(config.CSV_BLOCK_BYTES, quote_at - read))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            read += len(chunk)
    start_text = value.split("\n", 1)[0][:40]
    return ComponentError(
        f"{path}:{newlines + 1}: broken quoting: unterminated quoted field starting '\"{start_text}' "
        "runs to the end of the file"
    )


def _column_of(text: str, names: list[str]) -> str | None:
    match = re.search(r"In CSV column #(\d+)", text)
    if match and int(match.group(1)) < len(names):
        return names[int(match.group(1))]
    return None


def not_utf8_error(path: str, names: list[str], column: str | None) -> ComponentError:
    """'<file>:<line>: column ... is not valid UTF-8', the line found by reading the file again."""
    line = _first_non_utf8_line(path, names, column)
    where = f"{path}:{line}" if line else path
    return ComponentError(f"{where}: column '{column}' is not valid UTF-8")


def _first_non_utf8_line(path: str, names: list[str], column: str | None) -> int | None:
    """Error path only: finds the line holding the first value that is not UTF-8."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    from apache_beam.io.filesystems import FileSystems

    check = [column] if column else names
    types = {n: pa.binary() for n in names}
    rows_before = 0
    with FileSystems.open(path) as fh:
        for batch in pacsv.open_csv(fh, **csv_options(names, types, config.CSV_BLOCK_BYTES)):
            for name in check:
                values = batch.column(name)
                try:
                    pc.cast(values, pa.string())
                    continue
                except pa.ArrowInvalid:
                    pass
                for i, value in enumerate(values.to_pylist()):
                    try:
                        (value or b"").decode("utf-8")
                    except UnicodeDecodeError:
                        return rows_before + i + 2  # +1 for the header, +1 for 1-based lines
            rows_before += batch.num_rows
    return None
