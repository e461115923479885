"""Checks at the door, before a file is parsed: what kind of file it is, and what its first bytes say.

``check_regular_file`` refuses a FIFO, a device or a socket by name, judged by ``os.stat`` alone
(opening a FIFO would wait for a writer for ever). ``check_csv_head`` reads a CSV file's head and
refuses, in one line naming the file, what the CSV reader would misreport: no bytes at all, a
UTF-16/32 byte-order mark, NUL bytes (binary data or UTF-16/32 without a mark), a header that
is not UTF-8, a header that is one line with no line end, and a header of one column that holds
';', a tab or '|' (a file separated by something other than commas).
"""

from __future__ import annotations

import dataclasses
import os
import stat

from sluice.components.sdk import ComponentError

HEAD_BYTES = 64 << 10
# Longest first, so that UTF-32 LE (FF FE 00 00) is not taken for UTF-16 LE (FF FE).
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 LE"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE"),
    (b"\xff\xfe", "UTF-16 LE"),
    (b"\xfe\xff", "UTF-16 BE"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
_MAGIC = ((b"\x1f\x8b", "a gzip file"), (b"PK\x03\x04", "a zip file"), (b"PAR1", "a Parquet file"),
          (b"BZh", "a bzip2 file"))
_OTHER_SEPARATORS = ((";", "';'"), ("\t", "tab"), ("|", "'|'"))
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


@dataclasses.dataclass(frozen=True)
class CsvHead:
    """What the head of a CSV file told: the header line's length in bytes (line end included)."""

    header_bytes: int


def file_kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def check_regular_file(who: str, path: str) -> None:
    """Refuses a local path that is not a regular file (a FIFO, a device, ...); never opens it."""
    if "://" in path:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ComponentError(f"{who}: {path}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise ComponentError(f"{who}: {path}: is {file_kind(mode)}, not a regular file; "
                             "ExampleGen reads regular files only")


def check_csv_head(path: str) -> CsvHead:
    """Reads the head of a CSV file (any filesystem) and refuses what cannot be a UTF-8 CSV."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        raise ComponentError(f"{path}: empty file (0 bytes)")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise ComponentError(
                f"{path}: encoded as {encoding} (byte-order mark); CsvExampleGen reads UTF-8: convert it, "
                f"e.g. iconv -f {encoding.replace(' ', '')} -t UTF-8")
    for magic, kind in _MAGIC:
        if head.startswith(magic) and b"\x00" in head:
            raise ComponentError(f"{path}: not a CSV file: it looks like {kind}")
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise ComponentError(f"{path}:{line}: not a UTF-8 CSV file: it holds NUL bytes (binary data, "
                             "or UTF-16/32 without a byte-order mark?)")
    ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    header_end = min(ends) + 1 if ends else 0
    header = head[:header_end] if header_end else head
    _check_header_text(path, header[len(_UTF8_BOM):] if header.startswith(_UTF8_BOM) else header,
                       complete=header_end > 0 or len(head) < HEAD_BYTES)
    if header_end == 0 and len(head) == HEAD_BYTES:
        header_end = _line_end_past_head(path)
    return CsvHead(header_end or len(head))


def _check_header_text(path: str, header: bytes, complete: bool) -> None:
    import codecs

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(header, final=complete)
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{path}:1: the header is not valid UTF-8 (byte 0x{header[exc.start]:02x} at "
                             f"column {exc.start + 1}); CsvExampleGen reads UTF-8 files") from None
    text = text.rstrip("\r\n")
    if complete and "," not in text:
        for separator, said in _OTHER_SEPARATORS:
            if separator in text:
                shown = text if len(text) <= 60 else text[:57] + "..."
                raise ComponentError(
                    f"{path}:1: the header is one column {shown!r}: the file looks {said}-separated; "
                    "CsvExampleGen reads comma-separated files (convert it, or split the column)")


def _line_end_past_head(path: str) -> int:
    """The header's length when it is longer than the head; no line end at all: refused."""
    from apache_beam.io.filesystems import FileSystems

    size, found = 0, -1
    with FileSystems.open(path) as fh:
        while found < 0:
            chunk = fh.read(8 << 20)
            if not chunk:
                break
            ends = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
            found = min(ends) if ends else -1
            size += len(chunk) if found < 0 else found + 1
    if found < 0:
        raise ComponentError(f"{path}: has a header but no data rows (the file is one line of {size:,} bytes "
                             "with no line end)")
    return size
