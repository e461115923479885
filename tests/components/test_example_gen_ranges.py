"""CsvExampleGen on workers: a large CSV file cut into byte ranges gives the in-process run's rows.

The ranges are parsed by 2 worker processes (the DirectRunner in multi_processing mode); the
test file has quoted values holding line breaks, commas and escaped quotes, some of them
across the ranges' byte boundaries, CRLF line ends and a header.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from sluice.components.artifacts import Examples
from sluice.components.example_gen import config as eg_config
from sluice.components.example_gen import csv_example_gen, csv_ranges
from sluice.components.example_gen.config import InputFile
from sluice.components.sdk import ComponentError, ExecutionContext

WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
ROWS = 20_000
RANGES = 6


def _note(i: int) -> str:
    if i % 3 == 0:
        return f'"line one of {i},\r\nline two, with ""quotes""\nthree"'  # breaks, commas, escaped quotes
    return f'"plain, {i}"' if i % 5 == 0 else f"n{i % 17}"


def _csv_text(bad_row: int | None = None) -> str:
    lines = ["id,x,note,label"]
    for i in range(ROWS):
        # No line break inside values in the rows before the bad one: pyarrow numbers rows, not lines, in a text.
        note = f"n{i % 17}" if bad_row is not None and bad_row - 6000 <= i <= bad_row else _note(i)
        lines.append(f"{i},{i * 0.25}" if i == bad_row else f"{i},{i * 0.25},{note},{'yes' if i % 4 else 'no'}")
    return "\r\n".join(lines) + "\r\n"


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    path = folder / "data.csv"
    path.write_bytes(text.encode())
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("ranges") / "in", _csv_text())


@pytest.fixture(autouse=True)
def small_ranges(monkeypatch, data):
    monkeypatch.setattr(eg_config, "CSV_RANGE_BYTES", data.stat().st_size // RANGES + 1)


def _run(base: Path, out: Path, args: list[str]) -> tuple[Examples, ExecutionContext]:
    out.mkdir()
    examples, ctx = Examples(uri=str(out)), ExecutionContext(beam_pipeline_args=list(args))
    csv_example_gen(examples=examples, input_base=str(base), ctx=ctx)
    return examples, ctx


def _split_rows(examples: Examples) -> tuple[dict[str, list[tuple]], dict[str, int]]:
    """Each split's rows in shard order, and its number of shards."""
    rows, shards = {}, {}
    for split in examples.split_names:
        files = sorted(Path(examples.split_uri(split)).glob("part-*-of-*.parquet"))
        tables = [pq.read_table(f) for f in files]
        rows[split] = [row for t in tables for row in zip(*(t.column(n).to_pylist() for n in t.column_names))]
        shards[split] = len(files)
    return rows, shards


@pytest.fixture(scope="module")
def in_process(data, tmp_path_factory):
    examples, ctx = _run(data.parent, tmp_path_factory.mktemp("default") / "out", [])
    return _split_rows(examples)[0], ctx.metrics


def test_some_boundary_falls_inside_a_quoted_value(data):
    raw = data.read_bytes()
    bounds = [r.start for r in csv_ranges.plan_ranges([InputFile(str(data), 0)], eg_config.CSV_RANGE_BYTES)]
    assert len(bounds) == RANGES
    assert any(raw[:b].count(b'"') % 2 for b in bounds[1:])  # the case the quote parity is for


@pytest.mark.parametrize("replay", [False, True], ids=["once", "bundle-replay"])
def test_ranges_on_two_workers_give_the_in_process_rows(data, in_process, tmp_path, replay):
    expected, expected_metrics = in_process
    args = WORKERS + (["--direct_runner_bundle_repeat=1"] if replay else [])
    examples, ctx = _run(data.parent, tmp_path / "out", args)
    got, shards = _split_rows(examples)
    assert sum(len(rows) for rows in expected.values()) == ROWS
    # Every range wrote its own shards, in range order: the same rows in the same order.
    assert all(count >= RANGES - 1 for count in shards.values()), shards
    assert {s: len(r) for s, r in got.items()} == {s: len(r) for s, r in expected.items()}
    assert got == expected
    assert ctx.metrics.pop("workers") == 2  # both processes wrote rows
    assert ctx.metrics == expected_metrics
    assert [p.name for p in Path(examples.uri).rglob("*") if p.is_file() and not p.name.startswith("part-")] == []


def test_a_bad_row_in_a_middle_range_names_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(eg_config, "SNIFF_BLOCK_BYTES", 64 << 10)  # the driver's sniffing stops short of it
    bad = ROWS // 2
    text = _csv_text(bad_row=bad)
    path = _write(tmp_path / "in", text)
    line = text[:text.index(f"\r\n{bad},{bad * 0.25}\r\n")].count("\n") + 2
    ranges = csv_ranges.plan_ranges([InputFile(str(path), 0)], eg_config.CSV_RANGE_BYTES)
    offset = len(text[:text.index(f"\r\n{bad},{bad * 0.25}\r\n")].encode())
    holder = [r for r in ranges if r.start <= offset < r.end][0]
    assert 0 < holder.number < len(ranges) - 1  # a middle range
    assert b'"' not in path.read_bytes()[holder.start:offset]  # no value spans lines in the range before it
    with pytest.raises(ComponentError, match=rf"^{re.escape(str(path))}:{line}: expected 4 columns, got 2"):
        _run(path.parent, tmp_path / "out", WORKERS)


def test_types_inferred_over_all_ranges_when_a_later_range_contradicts_the_sniffed_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(eg_config, "SNIFF_BLOCK_BYTES", 64 << 10)
    text = _csv_text().replace(f"\r\n{ROWS - 100},", f"\r\n{ROWS - 100}.5,")  # an int column gets a fraction
    path = _write(tmp_path / "in", text)
    expected = _split_rows(_run(path.parent, tmp_path / "default", [])[0])[0]
    examples, ctx = _run(path.parent, tmp_path / "workers", WORKERS)
    got, shards = _split_rows(examples)
    assert all(count >= RANGES - 1 for count in shards.values()), shards  # read as ranges
    assert got == expected
    assert sum(len(rows) for rows in got.values()) == ctx.metrics["rows"] == ROWS
    assert ROWS - 99.5 in {row[0] for rows in got.values() for row in rows}


class _SchemeFileSystem(LocalFileSystem):
    """Local files named ``rangetest://<path>``: the ranges' path for other filesystems (Beam's reads)."""

    PREFIX = "rangetest://"

    @classmethod
    def scheme(cls):
        return "rangetest"

    def exists(self, path):
        return super().exists(path.removeprefix(self.PREFIX))

    def metadata(self, path):
        found = super().metadata(path.removeprefix(self.PREFIX))
        return FileMetadata(path, found.size_in_bytes, found.last_updated_in_seconds)

    def open(self, path, *args, **kwargs):
        return super().open(path.removeprefix(self.PREFIX), *args, **kwargs)


def _read_all_ranges(path: Path | str, range_bytes: int) -> list[tuple]:
    """The ranges read one after another in this process, as the workers would (no Beam)."""
    from sluice.components.example_gen.csv_read import ReadCsvFile
    from sluice.components.example_gen.sniff import sniff_csv_columns

    file = InputFile(str(path), 0)
    columns = sniff_csv_columns("CsvExampleGen", [file])
    ranges = csv_ranges.plan_ranges([file], range_bytes)
    counts = dict(csv_ranges.count_range(r) for r in ranges)
    reader = ReadCsvFile(columns)
    return [row for r in ranges for _, _, b in reader.read_range(r, counts) for row in zip(*b.to_pydict().values())]


def test_a_quote_left_open_in_a_middle_range_is_an_error_not_one_long_value(tmp_path):
    lines = ["a,b"] + [f"{i},v{i}" for i in range(2000)]
    lines[700] = '699,"never closed'
    path = _write(tmp_path / "in", "\n".join(lines) + "\n")
    with pytest.raises(ComponentError, match=rf"^{re.escape(str(path))}:701: broken quoting: unterminated quoted"):
        _read_all_ranges(path, 2048)


def test_ranges_read_in_turn_give_the_file_with_blank_lines_and_a_last_line_without_end(tmp_path):
    text = "a,b\r\n" + "".join(f'{i},"x\n{i}"\r\n' + ("\r\n" * 3 if i % 40 == 0 else "") for i in range(1000))
    path = _write(tmp_path / "in", text + "1000,end")
    rows = _read_all_ranges(path, 997)
    assert rows == [(i, f"x\n{i}") for i in range(1000)] + [(1000, "end")]


def test_ranges_of_a_file_on_another_filesystem_are_read_through_beam(data):
    range_bytes = data.stat().st_size // RANGES + 1
    assert _read_all_ranges(f"rangetest://{data}", range_bytes) == _read_all_ranges(data, range_bytes)
    assert len(_read_all_ranges(data, range_bytes)) == ROWS


def test_a_quote_left_open_on_another_filesystem_is_an_error(tmp_path):
    lines = ["a,b"] + [f"{i},v{i}" for i in range(2000)]
    lines[700] = '699,"never closed'
    path = _write(tmp_path / "in", "\n".join(lines) + "\n")
    with pytest.raises(ComponentError, match=r":701: broken quoting: unterminated quoted"):
        _read_all_ranges(f"rangetest://{path}", 2048)


def test_kinds_scanned_per_range_merge_to_the_whole_file_kinds(tmp_path):
    from sluice.components.example_gen.columns import FLOAT, INT, merge_kinds
    from sluice.components.example_gen.sniff import ScanCsvKinds

    text = _csv_text().replace(f"\r\n{ROWS // 2},", f"\r\n{ROWS // 2}.5,")
    path = _write(tmp_path / "in", text)
    file = InputFile(str(path), 0)
    scan = ScanCsvKinds(("id", "x", "note", "label"))
    ranges = csv_ranges.plan_ranges([file], len(text) // RANGES + 1)
    counts = dict(csv_ranges.count_range(r) for r in ranges)
    per_range = [kinds for r in ranges for kinds in scan.scan_range(r, counts)]
    assert len(per_range) == RANGES
    assert sorted(kinds[0] for kinds in per_range) == [INT] * (RANGES - 1) + [FLOAT]
    merged = None
    for kinds in per_range:
        merged = merge_kinds(merged, kinds)
    assert merged == next(iter(scan(file)))


def test_a_quote_read_as_a_character_makes_the_file_read_whole_with_the_parser_s_values(tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = [f'{i},"two\nlines {i}"' if i % 3 else f"{i},v{i}" for i in range(3000)]
    rows[1000] = '1000,a 5" screen'  # the parser keeps this quote as a character: the parity is off after it
    path = _write(tmp_path / "in", "a,b\n" + "\n".join(rows) + "\n")
    ranges = csv_ranges.plan_ranges([InputFile(str(path), 0)], 8192)
    counts = dict(csv_ranges.count_range(r) for r in ranges)
    assert csv_ranges.whole_file_instead(ranges[3], counts)
    whole = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                           convert_options=pacsv.ConvertOptions(column_types={"a": pa.int64(), "b": pa.string()}))
    assert _read_all_ranges(path, 8192) == list(zip(*whole.to_pydict().values()))
    assert whole.column("b")[1000].as_py() == 'a 5" screen'


def test_escaped_quotes_and_quotes_at_field_starts_keep_the_file_cut(data):
    ranges = csv_ranges.plan_ranges([InputFile(str(data), 0)], data.stat().st_size // RANGES + 1)
    counts = dict(csv_ranges.count_range(r) for r in ranges)
    assert not csv_ranges.whole_file_instead(ranges[0], counts)
