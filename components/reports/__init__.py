"""One HTML report style for every component: Jinja2 templates in ``templates/``.

Each report template extends ``base.html.j2`` (the house style: fonts, tables, the
pass/warn/fail colours) and fills its ``title`` and ``content`` blocks::

    from sluice.components import reports
    html = reports.render("anomalies.html.j2", split="eval", rows=rows)

Pages are self-contained (styles inline, no network at view time).
"""

from __future__ import annotations

import functools
import math
from typing import Any

__all__ = ["fmt", "render"]


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ``–`` for none or non-finite, ``digits`` significant digits for floats."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@functools.cache
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sluice.components.reports", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals["fmt"] = fmt
    return env


def render(template: str, **values: Any) -> str:
    """The HTML of ``templates/<template>`` rendered with ``values``."""
    return _environment().get_template(template).render(**values)
