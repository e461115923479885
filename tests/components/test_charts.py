"""The reports' charts: the same data gives the same SVG, whatever was drawn before it."""

from __future__ import annotations

import concurrent.futures

from sluice.components.reports import charts

WIDE = {"train": ([0.0, 1e9, 2e9, 3e9], [0.2, 0.5, 0.3]), "eval": ([0.0, 1e9, 2e9, 3e9], [0.1, 0.6, 0.3])}
SMALL = {"train": ([-0.5, 0.0, 0.25], [0.75, 0.25])}


def _fresh_thread(function, *args, **kwargs):
    """``function`` called on a thread that has drawn nothing yet."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def test_a_histogram_drawn_after_others_is_the_one_a_fresh_figure_draws():
    first = charts.histograms(WIDE, key="fare", xlabel="dollars")
    after = charts.histograms(SMALL, key="tips")  # one series: filled; another range and label
    assert after == _fresh_thread(charts.histograms, SMALL, key="tips")
    assert charts.histograms(WIDE, key="fare", xlabel="dollars") == first
    assert first.count("<path") != after.count("<path")  # the earlier outlines are gone
    assert "dollars" not in after and "tips" not in first


def test_the_histograms_axis_reads_plain_numbers_after_a_small_range():
    charts.histograms(SMALL, key="a")
    svg = charts.histograms(WIDE, key="b")
    assert "1000000000" in svg and "1e9" not in svg
