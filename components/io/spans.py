"""Input patterns with ``{SPAN}``, ``{VERSION}`` and ``{YYYY}``/``{MM}``/``{DD}``: the one parser.

A pattern is a glob (``*`` and ``?``, no ``[...]``) that may hold these placeholders, each at
most once. ``parse`` turns it into a glob that lists the candidate files and a regex that reads
the span and version out of a matched path. A date is the span number of days since
1970-01-01, as in TFX; a pattern without ``{SPAN}`` or a date has span 0.

>>> pattern = parse("span-{SPAN}/v{VERSION}/*.csv")
>>> pattern.glob
'span-*/v*/*.csv'
>>> pattern.match("span-12/v3/data.csv")
(12, 3)
>>> parse("{YYYY}-{MM}-{DD}.csv").match("1970-01-31.csv")
(30, None)
"""

from __future__ import annotations

import dataclasses
import datetime
import re

PLACEHOLDER = re.compile(r"\{(SPAN|VERSION|YYYY|MM|DD)\}")
_PLACEHOLDER_REGEX = {
    "SPAN": r"(?P<span>\d+)",
    "VERSION": r"(?P<version>\d+)",
    "YYYY": r"(?P<yyyy>\d{4})",
    "MM": r"(?P<mm>\d{2})",
    "DD": r"(?P<dd>\d{2})",
}
_DATE = {"YYYY", "MM", "DD"}


@dataclasses.dataclass(frozen=True)
class SpanPattern:
    """A parsed pattern: ``glob`` to list files with, ``regex`` to read a matched path."""

    pattern: str
    glob: str
    regex: re.Pattern
    placeholders: frozenset[str]

    @property
    def has_span(self) -> bool:
        """Whether the pattern holds ``{SPAN}`` or a date (else every file is span 0)."""
        return bool(self.placeholders - {"VERSION"})

    @property
    def has_version(self) -> bool:
        return "VERSION" in self.placeholders

    def match(self, path: str) -> tuple[int, int | None] | None:
        """(span, version) of a path the whole pattern matches, else None; version is None
        without ``{VERSION}``. Raises ValueError when the path's date is no date."""
        m = self.regex.match(path)
        if not m:
            return None
        groups = m.groupdict()
        if "yyyy" in groups:
            try:
                day = datetime.date(int(groups["yyyy"]), int(groups["mm"]), int(groups["dd"]))
            except ValueError:
                raise ValueError(f"{path}: not a valid date for pattern {self.pattern!r}") from None
            span = (day - datetime.date(1970, 1, 1)).days
        else:
            span = int(groups.get("span") or 0)
        version = int(groups["version"]) if "version" in groups else None
        return span, version


def glob_to_regex(glob: str) -> str:
    """A regex for a glob of ``*`` and ``?`` (neither crosses a ``/``); other characters are literal."""
    out = []
    for ch in glob:
        out.append({"*": "[^/]*", "?": "[^/]"}.get(ch) or re.escape(ch))
    return "".join(out)


def parse(pattern: str) -> SpanPattern:
    """The glob and regex of ``pattern``; ValueError names what is wrong with it."""
    found = set(PLACEHOLDER.findall(pattern))
    if found & _DATE and found & _DATE != _DATE:
        raise ValueError(f"input pattern {pattern!r} needs all of {{YYYY}}, {{MM}} and {{DD}}")
    if "SPAN" in found and found & _DATE:
        raise ValueError(f"input pattern {pattern!r} mixes {{SPAN}} and a date")
    if "VERSION" in found and not (found - {"VERSION"}):
        raise ValueError(f"input pattern {pattern!r} has {{VERSION}} without {{SPAN}} or a date")
    if "[" in pattern:
        raise ValueError(f"input pattern {pattern!r}: '[...]' globs are not supported")
    glob, regex, pos = [], [], 0
    for m in PLACEHOLDER.finditer(pattern):
        glob.append(pattern[pos:m.start()] + "*")
        regex.append(glob_to_regex(pattern[pos:m.start()]) + _PLACEHOLDER_REGEX[m.group(1)])
        pos = m.end()
    glob.append(pattern[pos:])
    regex.append(glob_to_regex(pattern[pos:]))
    placeholders = PLACEHOLDER.findall(pattern)
    if len(placeholders) != len(set(placeholders)):
        raise ValueError(f"input pattern {pattern!r} repeats a placeholder")
    return SpanPattern(pattern, "".join(glob), re.compile("".join(regex) + r"\Z"), frozenset(found))


__all__ = ["PLACEHOLDER", "SpanPattern", "glob_to_regex", "parse"]
