"""The HTML reports in a real browser: headless Chromium (Debian's, driven by Playwright).

Each page is opened from its file, as a user opens it: no console errors, a screenshot in the
test's folder, and the sorting and filtering work. `.ci/run` installs Chromium; elsewhere the
tests skip without it (and fail under CI).
"""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components.artifacts import Examples, ExampleStatistics
from sluice.components.sdk import ExecutionContext
from sluice.components.statistics_gen import generate_statistics

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium and Playwright for the report tests (.ci/run installs Chromium)")
        pytest.skip("no Chromium (apt-get install chromium) or no playwright")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Page:
    """A page opened from a file, collecting console errors and uncaught exceptions."""

    def __init__(self, browser, path: str):
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1500, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"file://{path}")

    def rows(self) -> list[str]:
        """The feature names of the visible rows of the main table, in order."""
        return self.page.eval_on_selector_all(
            "#features > tbody > tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.name)")

    def data(self, key: str) -> list[float | None]:
        return [None if v == "" else float(v) for v in self.page.eval_on_selector_all(
            "#features > tbody > tr", f"rows => rows.map(r => r.dataset['{key}'])")]


def _examples(root, tables: dict[str, pa.Table], span: int) -> Examples:
    for split, table in tables.items():
        os.makedirs(os.path.join(root, f"Split-{split}"))
        pq.write_table(table, os.path.join(root, f"Split-{split}", "part-00000-of-00001.parquet"))
    return Examples(uri=str(root), split_names=list(tables), span=span)


def _taxi_like(n: int, shift: float) -> pa.Table:
    return pa.table({
        "fare": pa.array([float(i % 50) + shift for i in range(n)]),
        "trip_miles": pa.array([float(i % 7) for i in range(n)]),
        "payment_type": pa.array(["Cash" if i % 3 else ("Credit Card" if shift else "Unknown") for i in range(n)]),
        "pickup_census_tract": pa.array([None if i % 5 == 0 else 17031081500 + i % 4 for i in range(n)]),
    })


@pytest.fixture(scope="module")
def statistics_report(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("stats")
    outputs = []
    for span, shift in ((1, 0.0), (2, 25.0)):
        output = ExampleStatistics(uri=str(root / f"span{span}" / "statistics"))
        generate_statistics(examples=_examples(root / f"span{span}" / "examples",
                                               {"train": _taxi_like(300, shift), "eval": _taxi_like(120, shift)},
                                               span),
                            statistics=output, baseline_statistics=outputs[-1] if outputs else None,
                            ctx=ExecutionContext())
        outputs.append(output)
    return outputs[-1].path("report.html")


def test_statistics_report_sorts_filters_and_draws(browser, statistics_report, tmp_path):
    page = Page(browser, statistics_report)
    assert page.rows() == ["fare", "trip_miles", "payment_type", "pickup_census_tract"]
    charts = page.page.eval_on_selector_all("#features svg", "svgs => svgs.map(s => s.getBoundingClientRect().width)")
    assert len(charts) == 4 and min(charts) > 150
    page.page.screenshot(path=str(tmp_path / "statistics.png"), full_page=True)

    page.page.click("th[data-sort=drift]")  # most drifted first
    drifts = page.data("drift")
    assert drifts == sorted(drifts, reverse=True) and page.rows()[0] in ("fare", "payment_type")
    page.page.click("th[data-sort=drift]")
    assert page.data("drift") == sorted(drifts)
    page.page.click("th[data-sort=missing]")
    assert page.rows()[0] == "pickup_census_tract"
    page.page.click("th[data-sort=name]")
    assert page.rows() == ["fare", "payment_type", "pickup_census_tract", "trip_miles"]

    page.page.fill("input[data-filter=features]", "TRIP")
    assert page.rows() == ["trip_miles"]
    page.page.fill("input[data-filter=features]", "")
    assert len(page.rows()) == 4
    assert page.errors == []
    # The census tract reads in full in the rendered text, as the user sees it.
    assert "17031081500" in page.page.inner_text("tr[data-name=pickup_census_tract]")


@pytest.fixture(scope="module")
def evaluation_report(tmp_path_factory) -> str:
    from sluice.components.evaluator import MetricThreshold, evaluate_model
    from tests.components.test_evaluator import _binary_data, _outputs, _save_feature_model

    root = tmp_path_factory.mktemp("evaluation")
    examples, _table = _binary_data(root / "examples")
    model = _save_feature_model(root / "model", {"outputs": "score"})
    baseline = _save_feature_model(root / "baseline", {"outputs": "weak_score"})
    evaluation, blessing = _outputs(root)
    evaluate_model(examples=examples, model=model, baseline_model=baseline, evaluation=evaluation, blessing=blessing,
                   label_key="label", problem="binary", slicing_features=["payment_type", "fare"],
                   slice_buckets={"fare": 12}, thresholds={"auc": MetricThreshold(lower_bound=0.8)},
                   ctx=ExecutionContext())
    return evaluation.path("report.html")


def test_evaluation_report_draws_curves_and_sorts_slices(browser, evaluation_report, tmp_path):
    page = Page(browser, evaluation_report)
    captions = page.page.eval_on_selector_all("figcaption", "fs => fs.map(f => f.textContent)")
    assert [c.split(" ")[0] for c in captions] == ["ROC", "Precision-recall", "Calibration", "Confusion", "auc", "auc"]
    sizes = page.page.eval_on_selector_all(".charts svg", "s => s.map(x => x.getBoundingClientRect().height)")
    assert len(sizes) == 6 and min(sizes) > 80
    page.page.screenshot(path=str(tmp_path / "evaluation.png"), full_page=True)

    def column(key: str) -> list[str]:
        return page.page.eval_on_selector_all("#slices > tbody > tr", f"rows => rows.map(r => r.dataset.{key})")

    def slices() -> list[str]:
        return column("name")

    fares = [s for s in slices() if s.startswith("fare=")]
    lows = [float(s.split("[")[1].split(",")[0]) for s in fares]
    assert len(fares) == 12 and lows == sorted(lows)  # buckets in numeric order
    page.page.click("#slices th[data-sort=count]")
    counts = [int(c) for c in column("count")]
    assert counts == sorted(counts, reverse=True)
    page.page.click("#slices th[data-sort=delta]")  # auc against the (weak) baseline, largest gain first
    deltas = [float(d) for d in column("delta") if d != ""]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    page.page.fill("input[data-filter=slices]", "payment")
    visible = page.page.eval_on_selector_all("#slices > tbody > tr", "rows => rows.filter(r => !r.hidden).length")
    assert visible == 2
    assert page.errors == []


def test_anomalies_report_opens_cleanly(browser, tmp_path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

    from sluice.components.example_validator import render_report

    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["company"]
    info.severity = anomalies_pb2.AnomalyInfo.ERROR
    info.short_description, info.description = "Unexpected string values", "Examples contain <b>Sun Taxi</b>."
    path = tmp_path / "anomalies.html"
    path.write_text(render_report("eval", anomalies, statistics_pb2.DatasetFeatureStatistics(num_examples=3),
                                  schema_pb2.Schema()))
    page = Page(browser, str(path))
    assert "Examples contain <b>Sun Taxi</b>." in page.page.inner_text("table")  # escaped, shown as text
    page.page.screenshot(path=str(tmp_path / "anomalies.png"), full_page=True)
    assert page.errors == []
