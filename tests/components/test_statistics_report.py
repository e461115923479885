"""The statistics report: splits side by side, a baseline span, drift, dashes and whole numbers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components.artifacts import Examples, ExampleStatistics
from sluice.components.sdk import ExecutionContext
from sluice.components.statistics_gen import generate_statistics
from sluice.components.statistics_gen.report import columns_for, render_report
from sluice.components.tfdv import default_dataset, load_statistics

TRACT = 17031081500


def _examples(root, tables: dict[str, pa.Table], span: int = 0) -> Examples:
    for split, table in tables.items():
        os.makedirs(os.path.join(root, f"Split-{split}"))
        pq.write_table(table, os.path.join(root, f"Split-{split}", "part-00000-of-00001.parquet"))
    return Examples(uri=str(root), split_names=list(tables), span=span)


def _table(n: int, shift: float = 0.0, company: str = "Flash Cab") -> pa.Table:
    return pa.table({
        "fare": pa.array([float(i % 40) + shift for i in range(n)]),
        "census_tract": pa.array([TRACT + (i % 3) for i in range(n)], pa.int64()),
        "company": pa.array([company if i % 4 else "Taxi Affiliation" for i in range(n)]),
        "never_set": pa.array([None] * n, pa.float64()),
    })


def _statistics(tmp_path, name: str, tables: dict[str, pa.Table], span: int = 0,
                baseline: ExampleStatistics | None = None) -> ExampleStatistics:
    output = ExampleStatistics(uri=str(tmp_path / name / "statistics"))
    generate_statistics(examples=_examples(tmp_path / name / "examples", tables, span), statistics=output,
                        baseline_statistics=baseline, ctx=ExecutionContext())
    return output


def _rows(report: str) -> dict[str, str]:
    """Each feature's row of the main table, by feature name."""
    return dict(re.findall(r'<tr data-name="([^"]+)"(.*?)\n</tr>', report, flags=re.S))


def _drift(row: str) -> float | None:
    value = re.search(r'data-drift="([^"]*)"', row).group(1)
    return float(value) if value else None


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    """Span 1 and span 2 (fares shifted up, another company), each with train and eval."""
    tmp_path = tmp_path_factory.mktemp("spans")
    first = _statistics(tmp_path, "span1", {"train": _table(400), "eval": _table(100)}, span=1)
    second = _statistics(tmp_path, "span2", {"train": _table(400, shift=30.0, company="Sun Taxi"),
                                             "eval": _table(100, shift=30.0, company="Sun Taxi")},
                         span=2, baseline=first)
    return first, second


def test_splits_and_the_baseline_span_side_by_side(spans):
    first, second = spans
    report = Path(second.path("report.html")).read_text()
    for label in ("train", "eval", "train (baseline span 1)", "eval (baseline span 1)"):
        assert f"</span>{label}</td>" in report
    rows = _rows(report)
    assert set(rows) == {"fare", "census_tract", "company", "never_set"}
    # train and eval of one span agree; the shifted fares and the new company drift from span 1.
    assert _drift(rows["fare"]) > 0.5 and _drift(rows["company"]) > 0.5
    assert _drift(rows["census_tract"]) < 1e-3
    assert "vs train" in rows["fare"]
    # Without a baseline the drift is eval against train only: nothing drifts within span 1.
    rows_first = _rows(Path(first.path("report.html")).read_text())
    assert _drift(rows_first["fare"]) < 0.05
    assert "baseline" not in rows_first["fare"]


def test_all_missing_feature_prints_dashes_and_integers_print_in_full(spans):
    _first, second = spans
    rows = _rows(Path(second.path("report.html")).read_text())
    never_set = re.findall(r"<td>([^<]*)</td>", rows["never_set"])
    assert never_set.count("0") == 4  # the count of each of the 4 columns, nothing else
    assert never_set.count("–") >= 4 * 5  # mean, std dev, min, median and max of each column
    assert 'data-missing="100.000000"' in rows["never_set"] and _drift(rows["never_set"]) is None
    assert f"<td>{TRACT}</td>" in rows["census_tract"] and f"<td>{TRACT + 2}</td>" in rows["census_tract"]
    assert "e+10" not in rows["census_tract"]


def test_charts_show_every_split_and_the_same_data_gives_the_same_page(spans):
    _first, second = spans
    rows = _rows(Path(second.path("report.html")).read_text())
    assert rows["fare"].count("<svg") == 1 and rows["company"].count("<svg") == 1
    # The bars are the first split's top values, each drawn for every column.
    chart = rows["company"].split("<svg")[1]
    assert "Sun Taxi" in chart and "Taxi Affiliation" in chart and "Flash Cab" not in chart
    assert "<svg" not in rows["never_set"]
    datasets = {s: default_dataset(load_statistics(os.path.join(second.split_uri(s), "FeatureStats.pb"), "test"))
                for s in second.split_names}
    assert render_report(columns_for(datasets)) == render_report(columns_for(datasets))


def test_a_wide_dataset_charts_its_most_drifted_features_only(tmp_path, monkeypatch):
    from sluice.components.statistics_gen import report

    monkeypatch.setattr(report, "MAX_CHARTS", 2)
    wide = {f"f{i}": pa.array([float(j % 7) for j in range(60)]) for i in range(5)}
    shifted = dict(wide, f3=pa.array([float(j % 7) + 40 for j in range(60)]))
    output = _statistics(tmp_path, "wide", {"train": pa.table(wide), "eval": pa.table(shifted)})
    page = Path(output.path("report.html")).read_text()
    rows = _rows(page)
    assert page.count("<svg") == 2 and "<svg" in rows["f3"]  # the drifted feature is one of them
    assert "Charts are drawn for 2 of the 5 features" in page
