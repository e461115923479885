"""ExampleGen: turns external data (CSV, Parquet, TFRecord) into split Examples.

Three components, one layout (see ``components.artifacts.Examples``)::

    <uri>/Split-<split>/part-NNNNN-of-MMMMM.parquet        (output_format="parquet")
    <uri>/Split-<split>/part-NNNNN-of-MMMMM.tfrecord.gz    (output_format="tfrecord")

Typical use, as in TFX::

    example_gen = CsvExampleGen(input_base="data/taxi")                     # train:eval = 2:1
    example_gen = CsvExampleGen(input_base="data/taxi_spans", input_pattern="span-{SPAN}/data.csv")
    example_gen = CsvExampleGen(input_base="data", input_config={"train": "train/*.csv", "eval": "eval/*.csv"})
    example_gen = ImportExampleGen(input_base="tfx_output/CsvExampleGen/examples/7")   # Split-*/ kept

Inputs
    ``input_base`` is a folder (or one file). ``input_pattern`` (default ``*``: every file in the
    folder, hidden files and ``_*`` excluded) or ``input_config`` (split name -> pattern, no hash
    splitting) are relative to it. Patterns are globs that may hold ``{SPAN}``, ``{VERSION}`` or
    ``{YYYY}{MM}{DD}``. A date becomes the span number of days since 1970-01-01, as in TFX. The
    latest span (and its latest version) is read unless ``span_range`` picks several; the output's
    ``span`` is then the last span read, ``version`` that span's version (None without ``{VERSION}``).

Splitting
    ``output_config=SplitConfig(splits={"train": 2, "eval": 1}, partition_feature=None)``: each row
    goes to one of 3 hash buckets, dealt to the splits in the given proportions. The hash is of the
    partition feature's value (equal values share a split) or of all scalar columns of the row:
    numbers by their 64 bits, strings by pandas' stable ``hash_array``, combined and mixed with
    numpy (never Python's ``hash()``), so a row lands in the same split on every run, whatever the
    block size, runner or number of workers.

CSV column types
    Every column becomes int64, float64 or string, nullable; an empty field is null. A column whose
    values are all integral numbers (``480`` or ``480.0``) is int64, other numbers float64, anything
    else string; a column with no value at all is int64 (all of its values are integral, and the
    same column with values in another span is int64 too). Every row counts: the types sniffed
    from each file's first block are checked while converting every block, and any contradiction
    makes the pipeline run again with types inferred over all rows first (``InferCsvColumns``, a
    side input of the same pipeline), so the common case reads the data once.

CSV errors (wrong column count, broken quoting, a quote left open up to the end of the file,
non-UTF-8 bytes or binary data, empty or header-only files, empty or duplicate column names)
raise ``ComponentError("<file>:<line>: ...")``; the line assumes no quoted value spans lines
before it.

String columns with few distinct values in the sniffed block (``CsvColumns.dictionary``) are read
dictionary-encoded: hashing rows, splitting them and writing Parquet's dictionary pages then work
on integer codes. They read back as plain strings.

Parquet output
    Row groups of ``ROW_GROUP_ROWS`` rows; per input file, a split's row groups are dealt in turn
    to ``SHARDS_PER_FILE`` shards written side by side (so a split's rows keep input order within
    a shard, not across its shards). Per column, judged on the shard's first row group
    (``column_encodings``): dictionary pages with uncompressed codes for strings and few-valued
    floats, delta encoding for integers, snappy for other floats unless it barely shrinks them.

The Beam work is in composite transforms (``ReadCsvToRecordBatches``, ``InferCsvColumns``,
``ReadParquetToRecordBatches``, ``ReadTFRecordExamples``, ``SplitAndWriteExamples``) whose
elements are Arrow RecordBatches of about 64k rows; one input file is read by one worker, so
many files scale out across workers, and memory stays bounded by a few blocks per worker. A
big local CSV file is also parsed in parallel within its worker (see ``_ReadCsvFile``).
Shards are written as temp files and named ``part-NNNNN-of-MMMMM`` in input order by
``finalize_shards`` once the pipeline has finished (Beam's WriteFiles does the same).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import struct
import uuid
from typing import Any, Literal

import pydantic

from sluice.components.artifacts import Examples
from sluice.components.sdk import ComponentError, ExecutionContext, ExternalData, Output, component

# Elements are big: ~64k rows per RecordBatch (taxi rows are ~130 bytes of CSV).
BATCH_ROWS = 65536
# Rows per Parquet row group written (a reader's batch; StatisticsGen's DEFAULT_BATCH_SIZE).
ROW_GROUP_ROWS = 131072
# Shards of a split per input file, written at the same time (row groups are dealt in turn).
SHARDS_PER_FILE = 2
CSV_BLOCK_BYTES = 8 << 20
SNIFF_BLOCK_BYTES = 1 << 20
# A number column is stored uncompressed when a sample of it compresses to more than this fraction.
# Snappy saving less than ~30% does not pay: on taxi timestamps (kept at 73%) it cost ~23 ms of
# CPU per 1.5M rows to write and ~17 ms per read, to save 3 MB (~4% of the files), which local
# disks and the page cache move in a few ms; only links slower than ~80 MB/s would gain.
INCOMPRESSIBLE = 0.7
COMPRESSION_SAMPLE_BYTES = 64 << 10  # per batch looked at
# Values Parquet's writer encodes at a time (its default, 1024, costs ~5% more CPU here).
PARQUET_WRITE_BATCH = 65536
PARQUET_COMPRESSION = "snappy"  # of the columns it shrinks, but dictionary codes (see column_encodings)
# A number column whose sample has at most this fraction of distinct values is dictionary-encoded.
NUMERIC_DICTIONARY_MAX_DISTINCT = 0.25
# Types are sniffed from a file's first block, and up to this much while a column has no value yet.
SNIFF_MAX_BYTES = 32 << 20
_METRICS_NAMESPACE = "sluice.example_gen"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class SplitConfig(pydantic.BaseModel):
    """How rows are dealt into splits: ``splits`` maps split name -> hash buckets.

    >>> SplitConfig(splits={"train": 8, "eval": 1, "test": 1}, partition_feature="user_id").splits["train"]
    8
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    splits: dict[str, int] = {"train": 2, "eval": 1}
    partition_feature: str | None = None

    @pydantic.field_validator("splits")
    @classmethod
    def _check_splits(cls, splits: dict[str, int]) -> dict[str, int]:
        if not splits:
            raise ValueError("needs at least one split")
        for name, buckets in splits.items():
            if not _SPLIT_NAME.match(name):
                raise ValueError(f"split name {name!r} must use letters, digits, '_' or '-'")
            if buckets < 1:
                raise ValueError(f"split {name!r} needs at least 1 bucket, got {buckets}")
        return splits


class SpanRange(pydantic.BaseModel):
    """The spans to read, both ends included: ``SpanRange(start=1, end=3)``."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    start: int
    end: int

    @pydantic.model_validator(mode="after")
    def _check_order(self) -> "SpanRange":
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


# --- resolving input files, spans and versions -------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(SPAN|VERSION|YYYY|MM|DD)\}")
_PLACEHOLDER_REGEX = {
    "SPAN": r"(?P<span>\d+)",
    "VERSION": r"(?P<version>\d+)",
    "YYYY": r"(?P<yyyy>\d{4})",
    "MM": r"(?P<mm>\d{2})",
    "DD": r"(?P<dd>\d{2})",
}


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One file to read: its position fixes shard order, ``split`` is None when hash-split."""

    path: str
    index: int
    split: str | None = None


@dataclasses.dataclass
class ResolvedInput:
    files: list[InputFile]
    span: int
    version: int | None


def _glob_to_regex(glob: str) -> str:
    out = []
    for ch in glob:
        out.append({"*": "[^/]*", "?": "[^/]"}.get(ch) or re.escape(ch))
    return "".join(out)


def _pattern_parts(pattern: str, who: str) -> tuple[str, re.Pattern, set[str]]:
    """A glob for listing and a regex that reads span/version/date out of a matched path."""
    found = set(_PLACEHOLDER.findall(pattern))
    date = {"YYYY", "MM", "DD"}
    if found & date and found & date != date:
        raise ComponentError(f"{who}: input pattern {pattern!r} needs all of {{YYYY}}, {{MM}} and {{DD}}")
    if "SPAN" in found and found & date:
        raise ComponentError(f"{who}: input pattern {pattern!r} mixes {{SPAN}} and a date")
    if "VERSION" in found and not (found - {"VERSION"}):
        raise ComponentError(f"{who}: input pattern {pattern!r} has {{VERSION}} without {{SPAN}} or a date")
    if "[" in pattern:
        raise ComponentError(f"{who}: input pattern {pattern!r}: '[...]' globs are not supported")
    glob, regex, pos = [], [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        glob.append(pattern[pos:m.start()] + "*")
        regex.append(_glob_to_regex(pattern[pos:m.start()]) + _PLACEHOLDER_REGEX[m.group(1)])
        pos = m.end()
    glob.append(pattern[pos:])
    regex.append(_glob_to_regex(pattern[pos:]))
    placeholders = _PLACEHOLDER.findall(pattern)
    if len(placeholders) != len(set(placeholders)):
        raise ComponentError(f"{who}: input pattern {pattern!r} repeats a placeholder")
    return "".join(glob), re.compile("".join(regex) + r"\Z"), found


def _list_files(base: str, glob: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    full = FileSystems.join(base, glob)
    paths = [m.path for m in FileSystems.match([full])[0].metadata_list]
    visible = [p for p in paths if not os.path.basename(p).startswith((".", "_"))]
    return sorted(p for p in visible if not os.path.isdir(p))


def _relative(base: str, path: str) -> str:
    prefix = base.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else os.path.basename(path)


def _resolve_pattern(who: str, base: str, pattern: str, span_range: SpanRange | None):
    """(files, span, version) selected by one pattern."""
    glob, regex, found = _pattern_parts(pattern, who)
    matches = []
    for path in _list_files(base, glob):
        m = regex.match(_relative(base, path))
        if not m:
            continue
        groups = m.groupdict()
        if "yyyy" in groups:
            try:
                day = datetime.date(int(groups["yyyy"]), int(groups["mm"]), int(groups["dd"]))
            except ValueError:
                raise ComponentError(f"{who}: {path}: not a valid date for pattern {pattern!r}") from None
            span = (day - datetime.date(1970, 1, 1)).days
        else:
            span = int(groups.get("span") or 0)
        version = int(groups["version"]) if "version" in groups else None
        matches.append((span, version, path))
    if not matches:
        raise ComponentError(f"{who}: no files match {pattern!r} under {base}")
    has_span = bool(found - {"VERSION"})
    if span_range is not None and not has_span:
        raise ComponentError(f"{who}: span_range is set but input pattern {pattern!r} has no {{SPAN}} or date")
    spans = sorted({s for s, _, _ in matches})
    if span_range is not None:
        chosen = [s for s in spans if span_range.start <= s <= span_range.end]
        if not chosen:
            raise ComponentError(
                f"{who}: no span of {pattern!r} under {base} is in [{span_range.start}, {span_range.end}] "
                f"(found spans {spans})"
            )
    else:
        chosen = spans[-1:]
    files, version = [], None
    for span in chosen:
        versions = [v for s, v, _ in matches if s == span]
        version = max(versions) if "VERSION" in found else None
        files += sorted(p for s, v, p in matches if s == span and v == version)
    return files, chosen[-1], version


def resolve_input(
    who: str,
    input_base: str,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    span_range: SpanRange | None = None,
) -> ResolvedInput:
    """The files to read, with the span and version they belong to.

    >>> taxi_spans = "../shared/data/chicago_taxi_spans"
    >>> resolve_input("CsvExampleGen", taxi_spans, "span-{SPAN}/data.csv").span  # doctest: +SKIP
    2
    """
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(input_base):
        raise ComponentError(f"{who}: input_base {input_base} does not exist")
    if _is_file(input_base):
        if input_config:
            raise ComponentError(f"{who}: input_config needs input_base to be a folder, not the file {input_base}")
        return ResolvedInput([InputFile(input_base, 0)], 0, None)
    patterns: dict[str | None, str] = dict(input_config) if input_config else {None: input_pattern}
    for split in patterns:
        if split is not None and not _SPLIT_NAME.match(split):
            raise ComponentError(f"{who}: input_config split name {split!r} must use letters, digits, '_' or '-'")
    files: list[InputFile] = []
    spans: dict[int, str] = {}
    version = None
    for split, pattern in patterns.items():
        paths, span, version = _resolve_pattern(who, input_base, pattern, span_range)
        spans.setdefault(span, pattern)
        files += [InputFile(p, len(files) + i, split) for i, p in enumerate(paths)]
    if len(spans) > 1:
        raise ComponentError(f"{who}: input_config patterns select different spans: {spans}")
    return ResolvedInput(files, next(iter(spans)), version)


def _is_file(path: str) -> bool:
    """Whether ``path`` names one file (not a folder), on any Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    if "://" not in path:
        return os.path.isfile(path)
    return any(m.path == path for m in FileSystems.match([path])[0].metadata_list)


def _tfx_split_folders(input_base: str) -> dict[str, str]:
    """{"train": "Split-train/*", ...} when input_base holds TFX-style Split-* folders."""
    found = {}
    for path in _list_files(input_base, "Split-*/*"):
        folder = os.path.basename(os.path.dirname(path))
        found[folder[len("Split-"):]] = f"{folder}/*"
    return dict(sorted(found.items()))


# --- errors -----------------------------------------------------------------------------------


class _ColumnTypeChanged(Exception):
    """A later block contradicts the types sniffed from the first block: re-run with full inference."""

    MARKER = "sluice-example-gen-type-changed"

    def __init__(self, detail: str):
        super().__init__(f"{self.MARKER}: {detail}")


def _one_line(message: str) -> str:
    message = re.sub(r" \[while running '[^']*'\]", "", message)
    return " ".join(message.split())


# --- CSV -------------------------------------------------------------------------------------

# Column kinds, ordered so that merging two observations is max().
EMPTY, INT, INTFLOAT, FLOAT, STRING = range(5)
_KIND_NAMES = {EMPTY: "empty (int64)", INT: "int64", INTFLOAT: "int64", FLOAT: "float64", STRING: "string"}


def classify_strings(values) -> int:
    """The kind of a string Arrow array: EMPTY, INT, INTFLOAT (integral, written like 480.0), FLOAT or STRING.

    A cast of text that fails costs pyarrow ~2.5 ms per 8k values (one that succeeds ~0.1 ms),
    so the order avoids failures: a few values Python cannot read as numbers settle STRING
    first, and the text is cast to int64 only once its numbers are known to be integral.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.null_count == len(values):
        return EMPTY
    if not _looks_numeric(values):
        return STRING
    try:
        floats = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return STRING
    try:
        pc.cast(floats, pa.int64())  # safe cast: fails on fractions, NaN, inf and overflow
    except pa.ArrowInvalid:
        return FLOAT
    try:
        pc.cast(values, pa.int64())
        return INT
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return INTFLOAT


def _looks_numeric(values, probes: int = 16) -> bool:
    """False when one of the first ``probes`` values is no number even to Python's float().

    (Python reads more than pyarrow does, e.g. "1_000": True only means pyarrow must decide.)
    """
    for value in values.drop_null().slice(0, probes).to_pylist():
        try:
            float(value)
        except ValueError:
            return False
    return True


def _arrow_type(kind: int):
    import pyarrow as pa

    # A column without any value is int64: its (no) values are all integral, and the same column
    # with values in another span (taxi's pickup_census_tract) then gets the same type.
    return {EMPTY: pa.int64(), INT: pa.int64(), INTFLOAT: pa.int64(), FLOAT: pa.float64()}.get(kind, pa.string())


def _read_type(kind: int, dictionary: bool = False):
    """How pyarrow's CSV reader converts a column of this kind (INTFLOAT goes through float64).

    ``dictionary``: a STRING column is read dictionary-encoded (see ``CsvColumns``).
    """
    import pyarrow as pa

    if kind == STRING and dictionary:
        return _DICTIONARY_STRING()
    return {EMPTY: pa.int64(), INT: pa.int64(), INTFLOAT: pa.float64(), FLOAT: pa.float64()}.get(kind, pa.string())


def _DICTIONARY_STRING():  # noqa: N802 - a type constant, built on use so that pyarrow loads lazily
    import pyarrow as pa

    return pa.dictionary(pa.int32(), pa.string())


# A string column whose first block has at most this fraction of distinct values is read
# dictionary-encoded: hashing rows, splitting them and writing Parquet's dictionary pages
# then work on small integer codes instead of the strings.
DICTIONARY_MAX_DISTINCT = 0.5


def _csv_options(names: list[str], read_types: dict[str, Any], block_size: int, on_invalid_row=None,
                 null_values: tuple[str, ...] = ("",)):
    import pyarrow.csv as pacsv

    return dict(
        # use_threads=False: pyarrow then numbers rows in its errors ("Row #N"), and one worker
        # per file is the unit of parallelism anyway.
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
        # newlines_in_values: blocks are then cut at line ends outside quotes (a quoted value
        # may span lines, even across a block boundary).
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types, null_values=list(null_values), strings_can_be_null=True, check_utf8=True
        ),
    )


class _InvalidRows:
    """pyarrow invalid_row_handler that remembers the first bad row for the error message.

    pyarrow decodes a bad row's text (strictly, as UTF-8) before it calls the handler; on bytes
    that are not UTF-8 the decode fails inside pyarrow, which then prints "Exception ignored
    in: <_InvalidRows ...>" and a traceback. ``_quiet_undecodable_rows`` hooks that report
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
        if isinstance(unraisable.object, _InvalidRows) and isinstance(unraisable.exc_value, UnicodeDecodeError):
            unraisable.object.undecodable = True
            return
        previous(unraisable)

    hook.sluice_invalid_rows = True
    sys.unraisablehook = hook


def _csv_error(path: str, exc: Exception, invalid: _InvalidRows | None, names: list[str],
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
        return _not_utf8_error(path, names, _column_of(text, names))
    column = _column_of(text, names)
    detail = text.split(": ", 1)[-1] if "conversion error" in text else text
    if column:
        return ComponentError(f"{where}: column '{column}': {_one_line(detail)}")
    return ComponentError(f"{where}: {_one_line(text)}")


def _unclosed_quote_at_end(path: str, last_batch) -> ComponentError | None:
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
            chunk = fh.read(min(CSV_BLOCK_BYTES, quote_at - read))
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


def _not_utf8_error(path: str, names: list[str], column: str | None) -> ComponentError:
    """'<file>:<line>: column ... is not valid UTF-8', the line found by reading the file again."""
    line = _first_non_utf8_line(path, names, column)
    where = f"{path}:{line}" if line else path
    return ComponentError(f"{where}: column '{column}' is not valid UTF-8")


def _first_non_utf8_line(path: str, names: list[str], column: str | None) -> int | None:
    """Error path only: finds the line holding the first value that is not UTF-8."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.compute as pc

    from apache_beam.io.filesystems import FileSystems

    check = [column] if column else names
    types = {n: pa.binary() for n in names}
    rows_before = 0
    with FileSystems.open(path) as fh:
        for batch in pacsv.open_csv(fh, **_csv_options(names, types, CSV_BLOCK_BYTES)):
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


@dataclasses.dataclass(frozen=True)
class CsvColumns:
    """Column names and kinds; ``exact`` when inferred over all rows, not sniffed.

    ``dictionary`` names the STRING columns that are read dictionary-encoded, a speed hint
    (few distinct values in the first block): their batches carry dictionary arrays, which
    Parquet stores as its own dictionary pages, and the files read back as plain strings.
    """

    names: tuple[str, ...]
    kinds: tuple[int, ...]
    exact: bool = False
    null_values: tuple[str, ...] = ("",)
    dictionary: frozenset[str] = frozenset()

    def arrow_schema(self):
        """The columns' types as stored (and read back): int64, float64 or string."""
        import pyarrow as pa

        return pa.schema([(n, _arrow_type(k)) for n, k in zip(self.names, self.kinds)])

    def batch_schema(self):
        """The types of the batches read: ``arrow_schema`` with the ``dictionary`` columns encoded."""
        import pyarrow as pa

        return pa.schema([(n, _DICTIONARY_STRING() if k == STRING and n in self.dictionary else _arrow_type(k))
                          for n, k in zip(self.names, self.kinds)])

    def read_types(self) -> dict:
        """pyarrow CSV ``column_types`` for these columns."""
        return {n: _read_type(k, n in self.dictionary) for n, k in zip(self.names, self.kinds)}

    def describe(self) -> dict[str, str]:
        return {n: _KIND_NAMES[k] for n, k in zip(self.names, self.kinds)}


def _csv_header(path: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from apache_beam.io.filesystems import FileSystems

    invalid = _InvalidRows()
    with FileSystems.open(path) as fh:
        try:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=SNIFF_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
                convert_options=pacsv.ConvertOptions(check_utf8=False),
            )
            return list(reader.schema.names)
        except pa.ArrowInvalid as exc:
            if "Empty CSV" in str(exc):
                raise ComponentError(f"{path}: empty file (no header)") from None
            raise _csv_error(path, exc, invalid, []) from None


def sniff_csv_columns(who: str, files: list[InputFile], null_values: tuple[str, ...] = ("",)) -> CsvColumns:
    """Checks every file's header and first block; kinds from the first blocks (not exact)."""
    names: list[str] | None = None
    kinds: list[int] = []
    sample = None  # the first file's first block
    for file in files:
        sniffed = _sniff_head_in_memory(file.path, null_values)
        header = sniffed[0] if sniffed else _csv_header(file.path)
        empty = [i + 1 for i, n in enumerate(header) if not n.strip()]
        if empty:
            raise ComponentError(f"{file.path}:1: empty column name at position(s) {', '.join(map(str, empty))} "
                                 f"of {len(header)} in the header")
        duplicates = sorted({n for n in header if header.count(n) > 1})
        if duplicates:
            raise ComponentError(f"{file.path}:1: duplicate column name(s) {', '.join(map(repr, duplicates))}")
        if names is None:
            names, kinds = header, [EMPTY] * len(header)
        elif header != names:
            raise ComponentError(f"{file.path}:1: header differs from {files[0].path}: {header} vs {names}")
        _, file_kinds, rows, first_block = sniffed or _sniff_streaming(file.path, names, null_values)
        if rows == 0:
            raise ComponentError(f"{file.path}: has a header but no data rows")
        if sample is None:
            sample = first_block
        kinds = [max(a, b) for a, b in zip(kinds, file_kinds)]
    dictionary = frozenset(n for n, k in zip(names or (), kinds) if k == STRING and _few_distinct(sample.column(n)))
    return CsvColumns(tuple(names or ()), tuple(kinds), null_values=tuple(null_values), dictionary=dictionary)


def _sniffed(batch, kinds: list[int], rows: int, first_block):
    """(kinds, rows, first block) once ``batch`` (all strings) is sniffed too."""
    kinds = [max(k, classify_strings(batch.column(i))) for i, k in enumerate(kinds)]
    return kinds, rows + batch.num_rows, batch if first_block is None else first_block


def _sniff_more(kinds: list[int], blocks: int) -> bool:
    """Sniff the next block: some column has shown no value yet (and SNIFF_MAX_BYTES is not reached)."""
    return EMPTY in kinds and blocks * min(SNIFF_BLOCK_BYTES, CSV_BLOCK_BYTES) < SNIFF_MAX_BYTES


def _sniff_streaming(path: str, names: list[str], null_values: tuple[str, ...]):
    """(names, kinds, rows, first block) from the file's first blocks, streamed (any file, any quoting)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from apache_beam.io.filesystems import FileSystems

    invalid = _InvalidRows()
    strings = {n: pa.string() for n in names}
    file_kinds = [EMPTY] * len(names)
    rows = 0
    first_block = None
    with FileSystems.open(path) as fh:
        try:
            block_bytes = min(SNIFF_BLOCK_BYTES, CSV_BLOCK_BYTES)
            reader = pacsv.open_csv(fh, **_csv_options(names, strings, block_bytes, invalid, null_values))
            batch = None
            for block, batch in enumerate(reader):
                file_kinds, rows, first_block = _sniffed(batch, file_kinds, rows, first_block)
                if not _sniff_more(file_kinds, block + 1):
                    break
            else:  # the whole file was read: its last value is at hand
                error = _unclosed_quote_at_end(path, batch) if batch is not None else None
                if error is not None:
                    raise error
        except pa.ArrowInvalid as exc:
            raise _csv_error(path, exc, invalid, names) from None
    return names, file_kinds, rows, first_block


def _sniff_head_in_memory(path: str, null_values: tuple[str, ...]):
    """``_sniff_streaming``'s result for a local file whose head has no quote, else None.

    The head is read block by block into memory and parsed there: the streaming reader would
    also parse blocks ahead on a helper thread (wasted, and waited for when it is closed).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if "://" in path:
        return None
    block_bytes = min(SNIFF_BLOCK_BYTES, CSV_BLOCK_BYTES)
    with open(path, "rb") as fh:
        data = fh.read(block_bytes)
        header_end = data.find(b"\n") + 1
        if header_end == 0 or b'"' in data:
            return None
        try:
            names = pacsv.read_csv(_buffer(data[:header_end]), read_options=pacsv.ReadOptions(use_threads=False),
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
                invalid = _InvalidRows()
                options = _csv_options(names, strings, len(piece) + 1, invalid, null_values)
                options["read_options"] = pacsv.ReadOptions(block_size=len(piece) + 1, use_threads=False,
                                                            column_names=names)
                options["parse_options"] = pacsv.ParseOptions(invalid_row_handler=invalid, quote_char=False)
                try:
                    batches = pacsv.read_csv(_buffer(piece), **options).to_batches()
                except pa.ArrowInvalid as exc:
                    raise _csv_error(path, exc, invalid, names, lines_before) from None
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


def _few_distinct(values) -> bool:
    import pyarrow.compute as pc

    present = len(values) - values.null_count
    return present > 0 and pc.count_distinct(values).as_py() <= present * DICTIONARY_MAX_DISTINCT


def _merge_kinds(a: tuple[int, ...] | None, b: tuple[int, ...] | None):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(max(x, y) for x, y in zip(a, b))


class _ScanCsvKinds:
    """DoFn body: the kinds of every column over all rows of one file."""

    def __init__(self, names: tuple[str, ...], null_values: tuple[str, ...] = ("",)):
        self.names = names
        self.null_values = null_values

    def __call__(self, file):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        from apache_beam.io.filesystems import FileSystems

        strings = {n: pa.string() for n in self.names}
        kinds = [EMPTY] * len(self.names)
        invalid = _InvalidRows()
        with FileSystems.open(file.path) as fh:
            try:
                options = _csv_options(list(self.names), strings, CSV_BLOCK_BYTES, invalid, self.null_values)
                for batch in pacsv.open_csv(fh, **options):
                    kinds = [k if k == STRING else max(k, classify_strings(batch.column(i)))
                             for i, k in enumerate(kinds)]
            except pa.ArrowInvalid as exc:
                raise _csv_error(file.path, exc, invalid, list(self.names)) from None
        yield tuple(kinds)


class _ReadCsvFile:
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
        for batch in _prefetched(self._batches(file.path)):
            yield file.split, file.index, batch

    def _batches(self, path: str):
        import mmap
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        if "://" in path or os.path.getsize(path) == 0:
            with _open_input(path) as fh:
                yield from self._serial(path, fh, lines_before=0, with_header=True)
            return
        with open(path, "rb") as fh:
            # Not closed explicitly: Arrow buffers over it may outlive this frame; freed with them.
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        size = len(data)
        whole = pa.py_buffer(data)
        header_end = data.find(b"\n") + 1
        if header_end == 0 or data.find(b'"', 0, header_end) >= 0:  # no line end, or a quoted header
            yield from self._serial(path, pa.BufferReader(whole), lines_before=0, with_header=True)
            return
        self._check_header(path, data[:header_end], list(self.columns.names))

        def lines_before(offset: int) -> int:  # error path only
            return data[:offset].count(b"\n")

        def parsed(future, start: int, end: int):
            batches = future.result()
            # The batches hold their own copies: let go of the piece's pages, so the mapped
            # file does not add up in this process's RSS (they are read again if ever needed).
            if hasattr(mmap, "MADV_DONTNEED"):
                first_page = start - start % mmap.PAGESIZE
                data.madvise(mmap.MADV_DONTNEED, first_page, end - first_page)
            return batches

        offset = header_end
        pending: list = []
        with ThreadPoolExecutor(self._PARSE_THREADS, thread_name_prefix="csv-parse") as pool:
            while offset < size:
                newline = data.find(b"\n", min(offset + CSV_BLOCK_BYTES, size) - 1)
                end = size if newline < 0 else newline + 1
                if data.find(b'"', offset, end) >= 0:
                    while pending:
                        yield from parsed(*pending.pop(0))
                    rest = pa.BufferReader(whole.slice(offset))
                    yield from self._serial(path, rest, lines_before=lines_before(offset), with_header=False)
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

        found = pacsv.open_csv(_buffer(header), read_options=pacsv.ReadOptions(use_threads=False)).schema.names
        if found != names:
            raise ComponentError(f"{path}:1: header differs from the other files: {found}")

    def _options(self, invalid, with_header: bool, piece_bytes: int = 0):
        """Reader options; without the header line the columns are named; ``piece_bytes``: a piece's size."""
        import pyarrow.csv as pacsv

        columns = self.columns
        names = list(columns.names)
        options = _csv_options(names, columns.read_types(), CSV_BLOCK_BYTES, invalid, columns.null_values)
        # UTF-8 is checked in _final instead: a dictionary-encoded column's dictionary alone
        # (its distinct values), not every value as it is parsed: ~8% of the parse.
        options["convert_options"].check_utf8 = False
        if not with_header:
            options["read_options"] = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False,
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

        invalid = _InvalidRows()
        try:
            table = pacsv.read_csv(pa.BufferReader(piece), **self._options(invalid, False, piece.size))
        except pa.ArrowInvalid as exc:
            raise self._error(path, exc, invalid, lines_before(offset)) from None
        return [self._final(path, batch) for batch in table.to_batches()]

    def _serial(self, path: str, stream, lines_before: int, with_header: bool):
        """Streams the CSV text from ``stream``'s position, one block at a time."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        invalid = _InvalidRows()
        batch = None
        try:
            reader = pacsv.open_csv(stream, **self._options(invalid, with_header))
            if with_header and reader.schema.names != list(self.columns.names):
                raise ComponentError(f"{path}:1: header differs from the other files: {reader.schema.names}")
            for batch in reader:
                yield self._final(path, batch)
        except pa.ArrowInvalid as exc:
            raise self._error(path, exc, invalid, lines_before) from None
        if batch is not None:
            error = _unclosed_quote_at_end(path, batch)
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
                    raise _not_utf8_error(path, list(columns.names), columns.names[i]) from None
            elif kind == INTFLOAT:
                try:
                    arrays[i] = pc.cast(arrays[i], pa.int64())
                except pa.ArrowInvalid:
                    raise _ColumnTypeChanged(f"{path}: column {columns.names[i]} has fractions") from None
        if self._schema is None:
            self._schema = columns.batch_schema()
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def _error(self, path: str, exc: Exception, invalid, lines_before: int) -> Exception:
        if not self.columns.exact and "conversion error to" in str(exc) and "UTF8" not in str(exc):
            return _ColumnTypeChanged(f"{path}: {exc}")
        return _csv_error(path, exc, invalid, list(self.columns.names), lines_before)


def _buffer(data: bytes):
    import pyarrow as pa

    return pa.BufferReader(pa.py_buffer(data))


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
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
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
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


# --- Parquet input ----------------------------------------------------------------------------


class _ReadParquetFile:
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
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                    if batch.schema.names != self.schema.names:
                        raise ComponentError(
                            f"{file.path}: columns {batch.schema.names} differ from {self.schema.names}"
                        )
                    arrays = [_natural(col) for col in batch.columns]
                    arrays = [a.cast(f.type) if a.type != f.type else a for a, f in zip(arrays, self.schema)]
                    yield file.split, file.index, pa.RecordBatch.from_arrays(arrays, schema=self.schema)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ComponentError(f"{file.path}: not a readable Parquet file: {_one_line(str(exc))}") from None


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


def _parquet_schema(files: list[InputFile]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(files[0].path) as fh:
        try:
            schema = pq.ParquetFile(fh).schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise ComponentError(f"{files[0].path}: not a readable Parquet file: {_one_line(str(exc))}") from None
    fields = [pa.field(f.name, _natural(pa.nulls(0, f.type)).type) for f in schema]
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ComponentError(f"{files[0].path}: duplicate column name(s) {', '.join(map(repr, duplicates))}")
    return pa.schema(fields)


# --- TFRecord input ---------------------------------------------------------------------------


def _tfrecords(path: str, batch_size: int = BATCH_ROWS):
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
        raise ComponentError(f"{path}: not serialized tf.Example records: {_one_line(str(exc))}") from None


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


class _ScanTFRecordFeatures:
    def __call__(self, file):
        summary = None
        for records in _tfrecords(file.path):
            summary = _merge_feature_summaries(summary, _summarize_features(_decode_examples(file.path, records)))
        if summary is not None:
            yield summary


def _read_tfrecord_file(file, summary):
    types = _feature_types(summary)
    for records in _tfrecords(file.path):
        yield file.split, file.index, _examples_to_natural(_decode_examples(file.path, records), types)


# --- splitting and writing ---------------------------------------------------------------------


def row_hashes(batch, partition_feature: str | None = None):
    """A stable uint64 per row: of the partition feature's value, or of all scalar columns.

    A value hashes the same whatever batch it is in (nulls get a fixed hash), so the split
    does not depend on block sizes, runners or the number of workers.
    """
    import numpy as np
    import pyarrow as pa

    if partition_feature is not None:
        if partition_feature not in batch.schema.names:
            raise ComponentError(
                f"output_config.partition_feature '{partition_feature}' is not a column "
                f"(columns: {', '.join(batch.schema.names)})"
            )
        columns = [batch.column(partition_feature)]
    else:
        columns = [c for c in batch.columns if not pa.types.is_nested(c.type)]
    hashes = np.full(batch.num_rows, 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for column in columns:
            # FNV-style combination of the columns in order (in place), then one strong mix (splitmix64).
            bits, nulls = _value_bits(column)
            np.bitwise_xor(hashes, bits, out=hashes)
            if nulls is not None:  # the bits under a null are not its value: _NULL_BITS instead
                hashes[nulls] ^= bits[nulls] ^ np.uint64(_NULL_BITS)
            np.multiply(hashes, prime, out=hashes)
        hashes ^= hashes >> np.uint64(30)
        hashes *= np.uint64(0xBF58476D1CE4E5B9)
        hashes ^= hashes >> np.uint64(27)
        hashes *= np.uint64(0x94D049BB133111EB)
        hashes ^= hashes >> np.uint64(31)
    return hashes


_NULL_BITS = 0x9E3779B97F4A7C15


def _value_bits(column):
    """64 bits per value, a function of the value alone (numbers' own bits, strings' stable hash),
    and the positions of the nulls, whose bits are to count as ``_NULL_BITS`` (None: done here).

    Strings go through a dictionary, so each distinct string is hashed once (pandas' hash_array);
    a dictionary array's own dictionary serves (the same bits as its decoded strings). Numbers
    are read in place; a few nulls are patched by the caller (a copy with the nulls filled, as
    ``fill_null`` makes, cost ~3x as much), many are filled here.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type) and not _is_text(column.type.value_type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_dictionary(kind) or _is_text(kind):
        encoded = column if pa.types.is_dictionary(kind) else pc.dictionary_encode(column)
        # Dictionary values are distinct: no need for hash_array to factorize them first (same hashes).
        distinct = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False), categorize=False)
        # A null points one past the dictionary, at _NULL_BITS.
        distinct = np.append(distinct, np.uint64(_NULL_BITS))
        return distinct[encoded.indices.fill_null(len(distinct) - 1).to_numpy(zero_copy_only=False)], None
    elif kind == pa.int64() or kind == pa.float64():
        nulls = None
        if column.null_count > len(column) // 16:  # one pass in Arrow: a null becomes a value with _NULL_BITS
            null_value = np.array([_NULL_BITS], dtype=np.uint64).view(kind.to_pandas_dtype())[0]
            column = pc.fill_null(column, pa.scalar(null_value, kind))
        elif column.null_count:
            valid = np.unpackbits(np.frombuffer(column.buffers()[0], dtype=np.uint8),
                                  count=column.offset + len(column), bitorder="little")[column.offset:]
            nulls = np.flatnonzero(valid == 0)
        # The values' own bits, read in place.
        bits = np.frombuffer(column.buffers()[1], dtype=np.uint64, count=column.offset + len(column))[column.offset:]
        return bits, nulls
    elif pa.types.is_floating(kind):
        return _value_bits(column.cast(pa.float64()))
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return _value_bits(column.cast(pa.int64()))
    else:  # dates, timestamps, decimals: through their text
        return _value_bits(column.cast(pa.string()))


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
        or pa.types.is_large_binary(kind)


class _AssignSplits:
    """DoFn body: (None, file index, batch) -> (split, file index, sub-batch) by hash bucket."""

    def __init__(self, config: SplitConfig):
        self.config = config

    def __call__(self, element):
        import numpy as np
        import pyarrow as pa

        split, index, batch = element
        if split is not None:  # input_config already named the split
            yield split, index, batch
            return
        names = list(self.config.splits)
        bucket_to_split = np.repeat(np.arange(len(names)), list(self.config.splits.values()))
        chosen = bucket_to_split[row_hashes(batch, self.config.partition_feature) % np.uint64(len(bucket_to_split))]
        for i, name in enumerate(names):
            mask = chosen == i
            if mask.all():
                yield name, index, batch
            elif mask.any():
                yield name, index, batch.filter(pa.array(mask))


def _to_example_lists(batch):
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


def _write_tfrecords(fh, records) -> None:
    for record in records:
        length = struct.pack("<Q", len(record))
        fh.write(length + _masked_crc(length) + record + _masked_crc(record))


def _shard_suffix(file_format: str) -> str:
    return ".parquet" if file_format == "parquet" else ".tfrecord.gz"


def finalize_shards(output_uri: str, splits: list[str], file_format: str, schema=None) -> None:
    """Renames temp shards to part-NNNNN-of-MMMMM in input order; an empty split gets one empty shard."""
    from apache_beam.io.filesystems import FileSystems

    suffix = _shard_suffix(file_format)
    for split in splits:
        folder = FileSystems.join(output_uri, f"Split-{split}")
        matched = FileSystems.match([FileSystems.join(folder, f".tmp-*{suffix}")])[0].metadata_list
        temps = sorted(m.path for m in matched)
        if not temps:
            _write_empty_shard(FileSystems.join(folder, f"part-00000-of-00001{suffix}"), file_format, schema)
            continue
        finals = [FileSystems.join(folder, f"part-{i:05d}-of-{len(temps):05d}{suffix}") for i in range(len(temps))]
        FileSystems.rename(temps, finals)


def _write_empty_shard(path: str, file_format: str, schema) -> None:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    if file_format == "parquet":
        import pyarrow.parquet as pq

        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            pq.write_table(schema.empty_table(), fh)
    else:
        FileSystems.create(path, compression_type=CompressionTypes.GZIP).close()


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
    - Integers: ``DELTA_BINARY_PACKED``, not compressed. On the taxi data it wrote 524k rows in
      86 ms of CPU instead of 124 (dictionaries of few-valued integers, snappy for the rest),
      into 25.2 MB instead of 26.3 (timestamps shrink to less than half, hours and tracts grow
      a little), and read them back in 36 ms instead of 39.
    - Floats with few distinct values (at most ``NUMERIC_DICTIONARY_MAX_DISTINCT`` in a sample:
      prices, miles): dictionary-encoded, codes not compressed. Writing them took ~15% less
      CPU, the files ~17% less space, and reading them back ~60% less CPU.
    - Other floats: ``PARQUET_COMPRESSION``, unless it barely shrinks them (more than
      ``INCOMPRESSIBLE`` of a sample kept: jittered coordinates), then none.

    The samples are ``COMPRESSION_SAMPLE_BYTES`` from the middle of each of the first 8 batches.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    dictionary, codecs, encodings = [], {}, {}
    for i, field in enumerate(batches[0].schema):
        codecs[field.name] = PARQUET_COMPRESSION
        if pa.types.is_dictionary(field.type) or _is_text(field.type):
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
            rows = min(len(column), COMPRESSION_SAMPLE_BYTES // width)
            samples.append(column.slice((len(column) - rows) // 2, rows))
        sample = pa.chunked_array(samples, field.type)
        present = len(sample) - sample.null_count
        if present >= 1024 and pc.count_distinct(sample).as_py() <= present * NUMERIC_DICTIONARY_MAX_DISTINCT:
            dictionary.append(field.name)
            codecs[field.name] = "none"
            continue
        values = b"".join(chunk.buffers()[1].slice(chunk.offset * width, len(chunk) * width).to_pybytes()
                          for chunk in samples)
        compressed = pa.compress(values, codec=PARQUET_COMPRESSION, asbytes=True)
        if len(values) >= 4096 and len(compressed) > INCOMPRESSIBLE * len(values):
            codecs[field.name] = "none"
    return ColumnEncodings(tuple(dictionary), codecs, encodings)


def _split_names(files: list[InputFile], config: SplitConfig) -> list[str]:
    named = list(dict.fromkeys(f.split for f in files if f.split is not None))
    return named if named else list(config.splits)


def _run(ctx: ExecutionContext, build) -> Any:
    """Runs the pipeline ``build(p)`` made; ComponentErrors from workers come out as one line."""
    pipeline = ctx.beam_pipeline()
    build(pipeline)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except ComponentError as exc:
        raise ComponentError(_one_line(str(exc))) from None
    return result


def _rows_by_split(result, splits: list[str]) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    rows = dict.fromkeys(splits, 0)
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(_METRICS_NAMESPACE))["counters"]
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        return rows
    for counter in counters:
        split = counter.key.metric.name.split("/", 1)[1]
        value = counter.committed if counter.committed is not None else counter.attempted
        rows[split] = rows.get(split, 0) + int(value or 0)
    return rows


def _clear_output(uri: str, splits: list[str]) -> None:
    """Removes what a failed attempt wrote, before the retry."""
    from apache_beam.io.filesystems import FileSystems

    folders = [FileSystems.join(uri, f"Split-{split}") for split in splits]
    FileSystems.delete([f for f in folders if FileSystems.exists(f)])


def _publish(who, examples, resolved, splits, rows, file_format, ctx) -> None:
    examples.split_names = splits
    examples.span = resolved.span
    examples.version = resolved.version
    examples.file_format = file_format
    for split in splits:
        ctx.log_metric(f"rows_{split}", rows.get(split, 0))
    ctx.log_metric("rows", sum(rows.values()))
    ctx.log_metric("input_files", len(resolved.files))


# --- Beam transforms ---------------------------------------------------------------------------
# Defined on first use (module __getattr__), so importing this module does not import Beam.
# They are registered as module globals, so they pickle by reference like top-level classes.

_BEAM_NAMES = (
    "ReadCsvToRecordBatches",
    "InferCsvColumns",
    "ReadParquetToRecordBatches",
    "ReadTFRecordExamples",
    "SplitAndWriteExamples",
    "WriteShardsFn",
    "MergeColumnKinds",
    "RecordBatchElementCoder",
)


class RecordBatchElement:
    """Type hint of the elements between the transforms: (split or None, file index, RecordBatch).

    Its coder pickles the batch (Arrow IPC underneath) and estimates its size from the Arrow
    buffers, instead of Beam's default of pickling sampled elements just to measure them.
    """


def _define_beam_classes() -> None:
    import pickle

    import apache_beam as beam

    class RecordBatchElementCoder(beam.coders.Coder):
        def encode(self, value):
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

        def decode(self, encoded):
            return pickle.loads(encoded)

        def is_deterministic(self):
            return False

        def estimate_size(self, value):
            return value[2].nbytes + 64

        def to_type_hint(self):
            return RecordBatchElement

        def __eq__(self, other):
            return type(self) is type(other)

        def __hash__(self):
            return hash(type(self))

    beam.coders.registry.register_coder(RecordBatchElement, RecordBatchElementCoder)

    class ReadCsvToRecordBatches(beam.PTransform):
        """PBegin -> (split, file index, RecordBatch) for every block of every CSV file.

        ``columns`` is a ``CsvColumns`` or a PCollection holding one (``InferCsvColumns``).

        >>> batches = pipeline | ReadCsvToRecordBatches([InputFile("data.csv", 0)], columns)  # doctest: +SKIP
        """

        def __init__(self, files: list[InputFile], columns):
            super().__init__()
            self.files, self.columns = files, columns

        def expand(self, pbegin):
            files = pbegin | "Files" >> _distributed_files(self.files)
            if isinstance(self.columns, CsvColumns):
                return files | "Read" >> beam.FlatMap(_ReadCsvFile(self.columns)).with_output_types(RecordBatchElement)
            return files | "Read" >> beam.FlatMap(
                lambda file, columns: _ReadCsvFile(columns)(file), beam.pvalue.AsSingleton(self.columns)
            ).with_output_types(RecordBatchElement)

    class MergeColumnKinds(beam.CombineFn):
        """Merges per-file column kinds (tuples) by taking the widest kind of each column."""

        def create_accumulator(self):
            return None

        def add_input(self, accumulator, kinds):
            return _merge_kinds(accumulator, kinds)

        def merge_accumulators(self, accumulators):
            merged = None
            for accumulator in accumulators:
                merged = _merge_kinds(merged, accumulator)
            return merged

        def extract_output(self, accumulator):
            return accumulator

    class InferCsvColumns(beam.PTransform):
        """PBegin -> one ``CsvColumns`` with the exact kinds over all rows of all files.

        ``dictionary``: the string columns to read dictionary-encoded (a speed hint, see ``CsvColumns``).
        """

        def __init__(self, files: list[InputFile], names: tuple[str, ...], null_values: tuple[str, ...] = ("",),
                     dictionary: frozenset[str] = frozenset()):
            super().__init__()
            self.files, self.names, self.null_values = files, tuple(names), tuple(null_values)
            self.dictionary = frozenset(dictionary)

        def expand(self, pbegin):
            names, nulls, dictionary = self.names, self.null_values, self.dictionary
            return (
                pbegin
                | "Files" >> _distributed_files(self.files)
                | "ScanKinds" >> beam.FlatMap(_ScanCsvKinds(names, nulls))
                | "Merge" >> beam.CombineGlobally(MergeColumnKinds())
                | "Columns" >> beam.Map(lambda kinds: CsvColumns(names, tuple(kinds), exact=True, null_values=nulls,
                                                                 dictionary=dictionary))
            )

    class ReadParquetToRecordBatches(beam.PTransform):
        """PBegin -> (split, file index, RecordBatch) for Parquet files with ``schema``'s columns."""

        def __init__(self, files: list[InputFile], schema):
            super().__init__()
            self.files, self.schema = files, schema

        def expand(self, pbegin):
            return (
                pbegin
                | "Files" >> _distributed_files(self.files)
                | "Read" >> beam.FlatMap(_ReadParquetFile(self.schema)).with_output_types(RecordBatchElement)
            )

    class ReadTFRecordExamples(beam.PTransform):
        """PBegin -> (split, file index, RecordBatch) from TFRecord files of tf.Example.

        Reads the files twice: once to learn every feature's type and size (a side input), once to
        convert, so a column has one type across all files and no data is held in memory.
        """

        def __init__(self, files: list[InputFile]):
            super().__init__()
            self.files = files

        def expand(self, pbegin):
            features = (
                pbegin
                | "FilesForTypes" >> _distributed_files(self.files)
                | "ScanFeatures" >> beam.FlatMap(_ScanTFRecordFeatures())
                | "MergeFeatures" >> beam.CombineGlobally(_merge_all_feature_summaries)
            )
            return (
                pbegin
                | "Files" >> _distributed_files(self.files)
                | "Read" >> beam.FlatMap(_read_tfrecord_file, beam.pvalue.AsSingleton(features))
                .with_output_types(RecordBatchElement)
            )

    class WriteShardsFn(beam.DoFn):
        """(split, file index, batch) -> temp shard files; emits (split, temp path, rows).

        A split's batches from one input file are gathered into Parquet row groups of
        ``ROW_GROUP_ROWS`` rows (the last one fewer; readers then get big batches), dealt in turn to up to
        ``SHARDS_PER_FILE`` shards of that split: each shard is encoded and written by a helper
        thread of its own (pyarrow and tfx_bsl release the GIL), at most ``_WRITES_AHEAD`` row
        groups behind, so the shards are written side by side while the next batches are split
        (one writer per split fell behind: it had most of the work and a share of the cores).
        The shards are closed when the next file starts, so memory and open files stay bounded
        whatever the data size; ``finalize_shards`` names them in input order.
        """

        _WRITES_AHEAD = 2

        def __init__(self, output_uri: str, file_format: str):
            self.output_uri, self.file_format = output_uri, file_format

        def setup(self):
            self.writers: dict = {}  # (split, shard number) -> its single-thread executor

        def teardown(self):
            for executor in self.writers.values():
                executor.shutdown(wait=True)

        def start_bundle(self):
            self.open: dict[str, _SplitOutput] = {}
            self.index = None
            self.encodings: ColumnEncodings | None = None  # the current input file's
            self.done: list[tuple[str, str, int]] = []

        def _submit(self, shard: "_Shard", work, *args) -> None:
            from concurrent.futures import ThreadPoolExecutor

            executor = self.writers.get(shard.key)
            if executor is None:
                executor = self.writers[shard.key] = ThreadPoolExecutor(max_workers=1,
                                                                       thread_name_prefix="shard-writer")
            while len(shard.pending) > self._WRITES_AHEAD:
                shard.pending.pop(0).result()  # re-raises a failed write here
            shard.pending.append(executor.submit(work, *args))

        def _flush(self, split: str, output: "_SplitOutput", rows: int | None = None) -> None:
            """The split's buffered rows (the first ``rows``), as one row group, to its next shard in turn."""
            number = output.row_groups % SHARDS_PER_FILE
            output.row_groups += 1
            batches = output.take_buffered(rows)
            if number == len(output.shards):
                output.shards.append(self._new_shard(split, self.index, number, batches))
            shard = output.shards[number]
            shard.rows += sum(batch.num_rows for batch in batches)
            self._submit(shard, self._write, shard, batches)

        def _close_all(self):
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
                beam.metrics.Metrics.counter(_METRICS_NAMESPACE, f"rows/{split}").inc(
                    sum(shard.rows for shard in output.shards))
            self.open = {}
            self.encodings = None

        @staticmethod
        def _close(shard: "_Shard") -> None:
            if shard.writer is not None:
                shard.writer.close()
            shard.fh.close()

        def _new_shard(self, split: str, index: int, number: int, batches: list) -> "_Shard":
            """A new shard file; ``batches``, its first row group, show what the columns hold.

            The first shard of an input file chooses the encodings for all of that file's shards
            (its splits are hash buckets of the same rows): ~8 ms once instead of per shard.
            """
            from apache_beam.io.filesystems import CompressionTypes, FileSystems

            folder = FileSystems.join(self.output_uri, f"Split-{split}")
            name = f".tmp-{index:06d}-{number:02d}-{uuid.uuid4().hex}{_shard_suffix(self.file_format)}"
            path = FileSystems.join(folder, name)
            if self.file_format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                schema = batches[0].schema
                fh = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
                if self.encodings is None:
                    self.encodings = column_encodings(batches)
                encodings = self.encodings
                # Dictionary-encoded batches (CSV strings) are written as they are, straight into
                # Parquet's dictionary pages; without the Arrow schema in the file they read back
                # as plain strings, the type every reader expects.
                encoded = any(pa.types.is_dictionary(f.type) for f in schema)
                writer = pq.ParquetWriter(fh, schema, use_dictionary=list(encodings.dictionary) or False,
                                          column_encoding=encodings.encodings or None,
                                          compression=encodings.codecs, write_statistics=False,
                                          store_schema=not encoded, write_batch_size=PARQUET_WRITE_BATCH)
                return _Shard((split, number), path, fh, writer)
            return _Shard((split, number), path, FileSystems.create(path, compression_type=CompressionTypes.GZIP),
                          None)

        def process(self, element):
            split, index, batch = element
            if index != self.index:
                self._close_all()
                self.index = index
            output = self.open.get(split)
            if output is None:
                output = self.open[split] = _SplitOutput()
            output.add(batch)
            while output.buffered >= ROW_GROUP_ROWS:
                self._flush(split, output, ROW_GROUP_ROWS)

        def _write(self, shard: "_Shard", batches: list) -> None:
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
                    _write_tfrecords(shard.fh, encoder.encode(_to_example_lists(batch)))

        def finish_bundle(self):
            from apache_beam.transforms.window import GlobalWindows

            self._close_all()
            for item in self.done:
                yield GlobalWindows.windowed_value(item)

    class SplitAndWriteExamples(beam.PTransform):
        """(split or None, file index, RecordBatch) -> (split, temp shard path, rows).

        Rows without a split are dealt by ``split_config``; the shards stay temp files under
        ``<output_uri>/Split-<split>/`` until ``finalize_shards`` names them part-NNNNN-of-MMMMM.
        """

        def __init__(self, output_uri: str, split_config: SplitConfig, file_format: str = "parquet"):
            super().__init__()
            self.output_uri, self.split_config, self.file_format = output_uri, split_config, file_format

        def expand(self, batches):
            return (
                batches
                | "AssignSplits" >> beam.FlatMap(_AssignSplits(self.split_config)).with_output_types(RecordBatchElement)
                | "WriteShards" >> beam.ParDo(WriteShardsFn(self.output_uri, self.file_format)).with_output_types(Any)
            )

    for cls in (RecordBatchElementCoder, ReadCsvToRecordBatches, MergeColumnKinds, InferCsvColumns,
                ReadParquetToRecordBatches, ReadTFRecordExamples, WriteShardsFn, SplitAndWriteExamples):
        cls.__qualname__ = cls.__name__
        cls.__module__ = __name__
        globals()[cls.__name__] = cls


def _distributed_files(files: list[InputFile]):
    """PBegin -> the files, spread over workers (a Reshuffle) when there is more than one."""
    import apache_beam as beam

    @beam.ptransform_fn
    def DistributedFiles(pbegin):  # noqa: N802 - a PTransform
        created = pbegin | "Create" >> beam.Create(files)
        return created | "Distribute" >> beam.Reshuffle() if len(files) > 1 else created

    return DistributedFiles()


def _merge_all_feature_summaries(summaries) -> dict:
    merged = None
    for summary in summaries:
        merged = _merge_feature_summaries(merged, summary)
    return merged or {}


def __getattr__(name: str):
    if name in _BEAM_NAMES:
        _define_beam_classes()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _beam(name: str):
    return globals().get(name) or __getattr__(name)


# --- the components ---------------------------------------------------------------------------


def csv_example_gen(
    examples: Output[Examples],
    input_base: ExternalData,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    output_config: SplitConfig = SplitConfig(),
    span_range: SpanRange | None = None,
    output_format: Literal["parquet", "tfrecord"] = "parquet",
    null_values: list[str] = [""],  # noqa: B006 - validated, never mutated
    ctx: ExecutionContext = None,
) -> None:
    """Reads CSV files (header line, comma-separated) into split Examples; see the module docstring.

    ``null_values``: the field texts that mean "missing" (an empty field by default; e.g.
    ``["", "NA"]`` for R-style files such as the palmerpenguins CSV).

    >>> csv_example_gen(Examples(uri=out), input_base="data/taxi", ctx=ExecutionContext())  # doctest: +SKIP
    """
    ctx = ctx or ExecutionContext()
    who = "CsvExampleGen"
    resolved = resolve_input(who, input_base, input_pattern, input_config, span_range)
    nulls = tuple(null_values)
    columns = sniff_csv_columns(who, resolved.files, nulls)
    feature = output_config.partition_feature
    if feature is not None and feature not in columns.names and not input_config:
        raise ComponentError(
            f"{who}: output_config.partition_feature '{feature}' is not a column of {resolved.files[0].path}"
        )
    splits = _split_names(resolved.files, output_config)

    def build(p, exact: bool):
        infer = _beam("InferCsvColumns")(resolved.files, columns.names, nulls, columns.dictionary)
        source = (p | "InferTypes" >> infer) if exact else columns
        (
            p
            | "ReadCsv" >> _beam("ReadCsvToRecordBatches")(resolved.files, source)
            | "SplitAndWrite" >> _beam("SplitAndWriteExamples")(examples.uri, output_config, output_format)
        )

    try:
        result = _run(ctx, lambda p: build(p, exact=False))
    except Exception as exc:  # noqa: BLE001 - only a type contradiction is retried
        if _ColumnTypeChanged.MARKER not in str(exc):
            raise
        # A later block contradicts the sniffed types: start over, inferring over all rows first.
        _clear_output(examples.uri, splits)
        result = _run(ctx, lambda p: build(p, exact=True))
    schema = _written_schema(examples.uri, output_format) or columns.arrow_schema()
    finalize_shards(examples.uri, splits, output_format, schema)
    _publish(who, examples, resolved, splits, _rows_by_split(result, splits), output_format, ctx)


def _written_schema(uri: str, file_format: str):
    """The schema of a written Parquet shard (for empty splits), None when there is none."""
    import pyarrow.parquet as pq

    from apache_beam.io.filesystems import FileSystems

    if file_format != "parquet":
        return None
    pattern = FileSystems.join(uri, "Split-*", ".tmp-*.parquet")
    shards = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not shards:
        return None
    with FileSystems.open(shards[0]) as fh:
        return pq.read_schema(fh)


def parquet_example_gen(
    examples: Output[Examples],
    input_base: ExternalData,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    output_config: SplitConfig = SplitConfig(),
    span_range: SpanRange | None = None,
    output_format: Literal["parquet", "tfrecord"] = "parquet",
    ctx: ExecutionContext = None,
) -> None:
    """Reads Parquet files (all with the first file's columns) into split Examples."""
    ctx = ctx or ExecutionContext()
    who = "ParquetExampleGen"
    resolved = resolve_input(who, input_base, input_pattern, input_config, span_range)
    schema = _parquet_schema(resolved.files)
    splits = _split_names(resolved.files, output_config)
    result = _run(ctx, lambda p: (
        p
        | "ReadParquet" >> _beam("ReadParquetToRecordBatches")(resolved.files, schema)
        | "SplitAndWrite" >> _beam("SplitAndWriteExamples")(examples.uri, output_config, output_format)
    ))
    finalize_shards(examples.uri, splits, output_format, schema)
    _publish(who, examples, resolved, splits, _rows_by_split(result, splits), output_format, ctx)


def import_example_gen(
    examples: Output[Examples],
    input_base: ExternalData,
    input_pattern: str = "*",
    input_config: dict[str, str] | None = None,
    output_config: SplitConfig = SplitConfig(),
    span_range: SpanRange | None = None,
    output_format: Literal["parquet", "tfrecord"] = "parquet",
    ctx: ExecutionContext = None,
) -> None:
    """Reads TFRecord files of serialized tf.Example (gzip when named ``*.gz``) into Examples.

    When ``input_base`` holds TFX-style ``Split-<name>/`` folders (what a TFX ExampleGen wrote)
    and neither ``input_config`` nor ``input_pattern`` is given, those splits are kept as they are.
    Single-valued features become scalar columns (int64, float64, string); features with more
    than one value in some example stay list columns.
    """
    ctx = ctx or ExecutionContext()
    who = "ImportExampleGen"
    if input_config is None and input_pattern == "*" and not _is_file(input_base):
        input_config = _tfx_split_folders(input_base) or None
    resolved = resolve_input(who, input_base, input_pattern, input_config, span_range)
    splits = _split_names(resolved.files, output_config)
    result = _run(ctx, lambda p: (
        p
        | "ReadTFRecord" >> _beam("ReadTFRecordExamples")(resolved.files)
        | "SplitAndWrite" >> _beam("SplitAndWriteExamples")(examples.uri, output_config, output_format)
    ))
    import pyarrow as pa

    schema = _written_schema(examples.uri, output_format) or pa.schema([])
    finalize_shards(examples.uri, splits, output_format, schema)
    _publish(who, examples, resolved, splits, _rows_by_split(result, splits), output_format, ctx)


CsvExampleGen = component(csv_example_gen, name="CsvExampleGen")
ParquetExampleGen = component(parquet_example_gen, name="ParquetExampleGen")
ImportExampleGen = component(import_example_gen, name="ImportExampleGen")

__all__ = [
    "CsvExampleGen",
    "ParquetExampleGen",
    "ImportExampleGen",
    "SplitConfig",
    "SpanRange",
    "InputFile",
    "CsvColumns",
    "ReadCsvToRecordBatches",
    "ReadParquetToRecordBatches",
    "ReadTFRecordExamples",
    "InferCsvColumns",
    "SplitAndWriteExamples",
    "finalize_shards",
    "resolve_input",
    "row_hashes",
    "classify_strings",
]
