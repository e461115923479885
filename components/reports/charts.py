"""Small charts for the reports, drawn with matplotlib and inlined in the page as SVG.

Every chart is a ``matplotlib.figure.Figure`` (no pyplot, so no global figure state and
no GUI backend) saved as SVG with text kept as text, no date, and a fixed id salt, so
the same data always gives the same bytes. Series colours follow ``COLORS`` in order,
the same in every chart of a page, so a split keeps its colour.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Sequence

from markupsafe import Markup

__all__ = ["COLORS", "bars", "curves", "histograms", "matrix"]

COLORS = ("#4a7fb5", "#e07b39", "#5aa55a", "#9467bd", "#8c564b", "#d62728")
_WIDTH = 2.8  # inches
_reused = threading.local()  # per thread: matplotlib figures are not thread-safe
_STYLE = {"svg.fonttype": "none", "font.size": 7, "axes.spines.top": False, "axes.spines.right": False,
          "axes.titlesize": 7, "legend.fontsize": 6, "legend.frameon": False}


def _figure(height: float, key: str):
    """A figure of the reports' width; call inside ``rc_context(_STYLE)``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH, height))
    figure.sluice_key = key
    return figure


def _svg(figure) -> Markup:
    """The figure as an inline ``<svg>`` element (the XML prolog and the RDF metadata dropped)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": figure.sluice_key}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", buffer.getvalue(), count=1, flags=re.S)
    return Markup(text[text.index("<svg"):])  # noqa: S704 (matplotlib's own SVG, text escaped by it)


def _plain_numbers(axis) -> None:
    """Tick labels as plain numbers: no offset or exponent, so 17031081500 reads in full."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_major_locator(MaxNLocator(4))


def histograms(series: dict[str, tuple[Sequence[float], Sequence[float]]], key: str,
               xlabel: str = "value") -> Markup:
    """Histograms drawn as outlines over one value axis: ``series`` maps a label to
    ``(edges, shares)`` (``len(edges) == len(shares) + 1``, shares of that series' values).

    No legend: the page shows which colour is which series (``COLORS``, in order)."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        axes = _histogram_axes(key)
        for color, (label, (edges, shares)) in zip(COLORS, series.items()):
            edges, shares = _finite_buckets(list(edges), list(shares))
            if shares:
                axes.stairs(shares, edges, label=label, color=color, linewidth=1.2,
                            fill=len(series) == 1, alpha=0.85)
        axes.relim()
        axes.autoscale_view()
        axes.set_xlabel(xlabel)
        return _svg(axes.figure)


def _histogram_axes(key: str):
    """This thread's histogram axes, emptied; call inside ``rc_context(_STYLE)``.

    Building a figure's axes and ticks costs more than drawing them, and every histogram has
    the same frame: one axes per thread is reused, its previous outlines removed. The SVG is
    the same, byte for byte, as from a new figure (tested)."""
    axes = getattr(_reused, "histogram_axes", None)
    if axes is None:
        axes = _figure(1.6, key).add_axes((0.14, 0.25, 0.82, 0.68))
        _plain_numbers(axes.xaxis)
        axes.set_ylabel("share")
        _reused.histogram_axes = axes
    for patch in list(axes.patches):
        patch.remove()
    axes.figure.sluice_key = key
    return axes


def _finite_buckets(edges: list[float], shares: list[float]) -> tuple[list[float], list[float]]:
    """Buckets with finite edges; a bucket of zero width (one distinct value) widened to be seen."""
    keep = [i for i in range(len(shares)) if math.isfinite(edges[i]) and math.isfinite(edges[i + 1])]
    if not keep:
        return [], []
    if keep != list(range(keep[0], keep[-1] + 1)):
        keep = keep[:1]
    low, high = edges[keep[0]], edges[keep[-1] + 1]
    kept = [shares[i] for i in keep]
    if high <= low:
        half = max(abs(low) * 0.05, 0.5)
        return [low - half, low + half], [sum(kept)]
    return edges[keep[0]:keep[-1] + 2], kept


def bars(categories: Sequence[str], series: dict[str, Sequence[float]], key: str, xlabel: str = "share",
         reference: float | None = None, legend: bool = False) -> Markup:
    """Horizontal grouped bars: one group per category (top to bottom), one bar per series
    (a legend only with ``legend``: pages that colour series the same everywhere say so once).

    ``reference``: a dashed vertical line (the overall value, say)."""
    import matplotlib

    labels = [_short(c) for c in categories]
    rows = max(len(labels), 1)
    count = max(len(series), 1)
    with matplotlib.rc_context(_STYLE):
        height_in = 0.45 + 0.14 * rows * (1 + 0.5 * (count - 1))
        figure = _figure(height_in, key)
        height_in += 0.2 if legend and count > 1 else 0.0
        # Room, in inches, for the axis label below and the legend above.
        bottom, top = 0.32 / height_in, (0.25 if legend and count > 1 else 0.05) / height_in
        axes = figure.add_axes((0.34, bottom, 0.6, 1 - bottom - top))
        height = 0.8 / count
        for index, (color, (label, values)) in enumerate(zip(COLORS, series.items())):
            offsets = [row + (index - (count - 1) / 2) * height for row in range(len(labels))]
            axes.barh(offsets, list(values), height=height, color=color, label=label)
        axes.set_yticks(range(len(labels)), labels)
        axes.invert_yaxis()
        if reference is not None:
            axes.axvline(reference, color="#777", linestyle="--", linewidth=0.8)
        _plain_numbers(axes.xaxis)
        axes.set_xlabel(xlabel)
        if legend and count > 1:
            axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=count, fontsize=6)
        return _svg(figure)


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], key: str, xlabel: str, ylabel: str,
           diagonal: bool = False) -> Markup:
    """Lines on a unit square (ROC, precision-recall, calibration): label -> (xs, ys)."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        figure = _figure(2.6, key)
        axes = figure.add_axes((0.14, 0.15, 0.56, 0.8))
        if diagonal:
            axes.plot([0, 1], [0, 1], color="#bbb", linestyle="--", linewidth=0.8)
        for color, (label, (xs, ys)) in zip(COLORS, series.items()):
            axes.plot(list(xs), list(ys), color=color, linewidth=1.2, label=label)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.legend(loc="lower right")
        return _svg(figure)


def matrix(labels: Sequence[str], counts: Sequence[Sequence[float]], key: str) -> Markup:
    """A confusion matrix: rows are the true class, columns the predicted one, counts in the cells."""
    import matplotlib

    names = [_short(label, 12) for label in labels]
    size = len(names)
    with matplotlib.rc_context(_STYLE):
        figure = _figure(1.0 + 0.3 * size, key)
        axes = figure.add_axes((0.3, 0.25, 0.5, 0.65))
        axes.imshow(counts, cmap="Blues")
        peak = max((max(row) for row in counts), default=0) or 1
        for row in range(size):
            for column in range(size):
                value = counts[row][column]
                axes.text(column, row, f"{value:.0f}", ha="center", va="center",
                          color="white" if value > peak / 2 else "#222")
        axes.set_xticks(range(size), names, rotation=30, ha="right")
        axes.set_yticks(range(size), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        return _svg(figure)


def _short(text: str, limit: int = 24) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"
