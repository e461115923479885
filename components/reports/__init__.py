"""One HTML report style for every component: Jinja2 templates in ``templates/``.

Each report template extends ``base.html.j2`` (the house style: fonts, tables, the
pass/warn/fail colours) and fills its ``title`` and ``content`` blocks; a page with
sortable or filterable tables includes ``sortable.html.j2`` in its ``scripts`` block.
Charts come from ``charts`` (matplotlib, inline SVG)::

    from sluice.components import reports
    html = reports.render("anomalies.html.j2", split="eval", rows=rows)

Pages are self-contained (styles inline, no network at view time).
"""

from __future__ import annotations

import functools
import math
from typing import Any

__all__ = ["fmt", "percent", "render"]


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ``–`` for none or non-finite, ``digits`` significant digits for floats.

    Whole numbers, and numbers of more than ``digits`` digits before the point, are printed in full
    (an 11-digit census tract as ``17031081500``, not ``1.703e+10``).

    >>> [fmt(v) for v in (None, float("nan"), 3, 0.123456, 17031081500.0, 12345.67, 2.5e-7)]
    ['–', '–', '3', '0.1235', '17031081500', '12346', '2.5e-07']
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e15 and (value.is_integer() or abs(value) >= 10 ** digits):
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def percent(value: float | None) -> str:
    """A percentage for a table cell: ``–`` for none, ``<0.1%`` for a small non-zero share.

    >>> [percent(v) for v in (None, 0.0, 0.02, 12.345, 100.0)]
    ['–', '0%', '<0.1%', '12.3%', '100%']
    """
    if value is None:
        return "–"
    if value == 0 or value == 100:
        return f"{value:.0f}%"
    if value < 0.1:
        return "<0.1%"
    return f"{value:.1f}%"


@functools.cache
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sluice.components.reports", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals["fmt"] = fmt
    env.globals["percent"] = percent
    return env


def render(template: str, **values: Any) -> str:
    """The HTML of ``templates/<template>`` rendered with ``values``."""
    return _environment().get_template(template).render(**values)
