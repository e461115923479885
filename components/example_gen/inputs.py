"""Which files an ExampleGen reads: ``input_base`` and its pattern(s), spans and versions.

Patterns are parsed by ``sluice.components.io.spans`` (the one parser of ``{SPAN}`` patterns);
here the files are listed (on any Beam filesystem) and the span(s) and version chosen.
"""

from __future__ import annotations

import dataclasses
import os

from sluice.components.example_gen.config import SPLIT_NAME, InputFile, SpanRange
from sluice.components.example_gen.file_checks import check_regular_file
from sluice.components.io import spans
from sluice.components.sdk import ComponentError


@dataclasses.dataclass
class ResolvedInput:
    files: list[InputFile]
    span: int
    version: int | None


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
    try:
        parsed = spans.parse(pattern)
    except ValueError as exc:
        raise ComponentError(f"{who}: {exc}") from None
    matches = []
    for path in _list_files(base, parsed.glob):
        try:
            found = parsed.match(_relative(base, path))
        except ValueError:
            raise ComponentError(f"{who}: {path}: not a valid date for pattern {pattern!r}") from None
        if found is not None:
            matches.append((*found, path))
    if not matches:
        raise ComponentError(f"{who}: no files match {pattern!r} under {base}")
    if span_range is not None and not parsed.has_span:
        raise ComponentError(f"{who}: span_range is set but input pattern {pattern!r} has no {{SPAN}} or date")
    found_spans = sorted({s for s, _, _ in matches})
    if span_range is not None:
        chosen = [s for s in found_spans if span_range.start <= s <= span_range.end]
        if not chosen:
            raise ComponentError(
                f"{who}: no span of {pattern!r} under {base} is in [{span_range.start}, {span_range.end}] "
                f"(found spans {found_spans})"
            )
    else:
        chosen = found_spans[-1:]
    files, version = [], None
    for span in chosen:
        versions = [v for s, v, _ in matches if s == span]
        version = max(versions) if parsed.has_version else None
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
    if "://" not in input_base and not os.path.isdir(input_base):
        check_regular_file(who, input_base)  # a FIFO or a device: refused before anything opens it
    if is_file(input_base):
        if input_config:
            raise ComponentError(f"{who}: input_config needs input_base to be a folder, not the file {input_base}")
        return ResolvedInput([InputFile(input_base, 0)], 0, None)
    patterns: dict[str | None, str] = dict(input_config) if input_config else {None: input_pattern}
    for split in patterns:
        if split is not None and not SPLIT_NAME.match(split):
            raise ComponentError(f"{who}: input_config split name {split!r} must use letters, digits, '_' or '-'")
    files: list[InputFile] = []
    chosen: dict[int, str] = {}
    version = None
    for split, pattern in patterns.items():
        paths, span, version = _resolve_pattern(who, input_base, pattern, span_range)
        chosen.setdefault(span, pattern)
        files += [InputFile(p, len(files) + i, split) for i, p in enumerate(paths)]
    if len(chosen) > 1:
        raise ComponentError(f"{who}: input_config patterns select different spans: {chosen}")
    for file in files:
        check_regular_file(who, file.path)
    return ResolvedInput(files, next(iter(chosen)), version)


def is_file(path: str) -> bool:
    """Whether ``path`` names one file (not a folder), on any Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    if "://" not in path:
        return os.path.isfile(path)
    return any(m.path == path for m in FileSystems.match([path])[0].metadata_list)


def tfx_split_folders(input_base: str) -> dict[str, str]:
    """{"train": "Split-train/*", ...} when input_base holds TFX-style Split-* folders."""
    found = {}
    for path in _list_files(input_base, "Split-*/*"):
        folder = os.path.basename(os.path.dirname(path))
        found[folder[len("Split-"):]] = f"{folder}/*"
    return dict(sorted(found.items()))
