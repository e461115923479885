"""The Evaluator's Beam path (workers, mergeable accumulators) against its in-process run on the same data:
every metric of metrics.json equal (counts exactly, sums to float rounding, binary auc/auc_pr within
the histogram grid's 1e-3), the same slices in the same order, the same thresholds and blessing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components.artifacts import Examples
from sluice.components.evaluator import MetricThreshold, evaluate_model
from sluice.components.evaluator.accumulators import BinaryAccumulator, RegressionAccumulator
from sluice.components.sdk import ComponentError, ExecutionContext
from tests.components.test_evaluator import (
    SPECIES,
    _binary_data,
    _outputs,
    _penguin_probabilities,
    _save_feature_model,
)

MULTI_PROCESSING = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
# In this process (no worker start-up), every bundle replayed and the first attempt's output dropped.
REPLAYED = ["--direct_runner_bundle_repeat=1"]
GRID_METRICS = {"auc", "auc_pr"}


def _run(tmp_path, name, args, **params) -> tuple[dict, object, ExecutionContext]:
    evaluation, blessing = _outputs(tmp_path / name)
    ctx = ExecutionContext(beam_pipeline_args=args)
    evaluate_model(evaluation=evaluation, blessing=blessing, ctx=ctx, **params)
    return json.loads(Path(evaluation.path("metrics.json")).read_text()), blessing, ctx


def _same_metrics(got: dict | None, expected: dict | None, where: str) -> None:
    if expected is None:
        assert got is None, where
        return
    assert list(got) == list(expected), where
    for key, value in expected.items():
        if value is None or isinstance(value, int):
            assert got[key] == value, (where, key)
        elif key in GRID_METRICS:
            assert got[key] == pytest.approx(value, abs=1e-3), (where, key)
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (where, key)


def _compare(tmp_path, args, **params) -> tuple[dict, dict]:
    """Runs in process and on Beam with ``args``; asserts the two metrics.json agree."""
    expected, expected_blessing, _ = _run(tmp_path, "in_process", [], **params)
    got, blessing, ctx = _run(tmp_path, "beam", args, **params)
    assert "engine" not in expected and got["engine"] == "beam" and got["histogram_buckets"] == 10_000
    assert got["problem"] == expected["problem"]
    for part in ("overall", "baseline"):
        _same_metrics(got[part], expected[part], part)
    for part in ("slices", "baseline_slices"):
        assert list(got[part]) == list(expected[part]), part  # the same slices, in the same order
        for name in expected[part]:
            _same_metrics(got[part][name], expected[part][name], f"{part}/{name}")
    assert got["slice_specs"] == expected["slice_specs"] and got["small_slices"] == expected["small_slices"]
    assert [(t["metric"], t["passed"]) for t in got["thresholds"]] == \
        [(t["metric"], t["passed"]) for t in expected["thresholds"]]
    assert blessing.blessed == expected_blessing.blessed and blessing.reason == expected_blessing.reason
    for plots in ("plots", "baseline_plots"):
        assert got[plots].keys() == expected[plots].keys()
        if "confusion_matrix" in expected[plots]:
            assert got[plots]["confusion_matrix"]["labels"] == expected[plots]["confusion_matrix"]["labels"]
            assert np.allclose(got[plots]["confusion_matrix"]["matrix"], expected[plots]["confusion_matrix"]["matrix"],
                               rtol=1e-9)
        if "calibration" in expected[plots]:
            for key, values in expected[plots]["calibration"].items():
                assert np.allclose(got[plots]["calibration"][key], values, rtol=1e-9), key
    return got, ctx.metrics


def _weighted_binary(root):
    """The Evaluator tests' binary data with weights (some 0), an hour and three files."""
    examples, table = _binary_data(root / "raw")
    rng = np.random.default_rng(11)
    weights = rng.random(table.num_rows) * 2
    weights[::29] = 0.0
    table = table.append_column("w", pa.array(weights)).append_column(
        "hour", pa.array(rng.integers(0, 24, table.num_rows)))
    split = root / "examples" / "Split-eval"
    split.mkdir(parents=True)
    for index, start in enumerate((0, 150, 290)):
        pq.write_table(table.slice(start, {0: 150, 1: 140, 2: 110}[index]),
                       split / f"part-0000{index}-of-00003.parquet", row_group_size=64)
    return Examples(uri=str(root / "examples"), split_names=["eval"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return (_save_feature_model(root / "good", {"outputs": "score"}, transform_label=True),
            _save_feature_model(root / "weak", {"outputs": "weak_score"}))


@pytest.mark.slow  # two worker processes each import TensorFlow
def test_binary_with_weights_slices_crosses_buckets_and_a_baseline(tmp_path, models):
    good, weak = models
    got, metrics = _compare(
        tmp_path, MULTI_PROCESSING, examples=_weighted_binary(tmp_path), model=good, baseline_model=weak,
        label_key="label", example_weight_key="w", min_slice_size=70,
        slicing_features=["payment_type", ["payment_type", "hour"], "fare"], slice_buckets={"hour": 3},
        thresholds={"auc": MetricThreshold(min_improvement=0.05), "binary_accuracy": MetricThreshold(lower_bound=0.7)},
        slice_thresholds={"payment_type": {"binary_accuracy": MetricThreshold(lower_bound=0.6)}})
    assert got["overall"]["weighted_example_count"] > 0 and got["pieces"] == 3
    assert len(got["slices"]) == 2 + 6 + 4 and got["small_slices"]
    curve = got["plots"]["roc_curve"]
    assert len(curve["fpr"]) <= 200 and curve["fpr"][-1] == pytest.approx(1.0) == curve["tpr"][-1]
    assert metrics["workers"] == 2  # both worker processes scored rows


@pytest.mark.slow  # two worker processes each import TensorFlow
def test_label_from_the_models_transform_with_bundles_replayed(tmp_path, models):
    good, weak = models
    examples, _ = _binary_data(tmp_path / "data")
    got, _ = _compare(tmp_path, MULTI_PROCESSING + ["--direct_runner_bundle_repeat=1"], examples=examples,
                      model=good, baseline_model=weak, label_key="tips_xf", slicing_features=["payment_type"],
                      decision_threshold=0.4, thresholds={"auc": MetricThreshold(lower_bound=0.9)})
    assert got["overall"]["example_count"] == 400  # a replayed bundle counts once
    assert "weighted_example_count" not in got["overall"]


def test_multiclass_string_labels(tmp_path):
    table, truth, predicted = _penguin_probabilities()
    species = SPECIES
    split = tmp_path / "examples" / "Split-eval"
    split.mkdir(parents=True)
    pq.write_table(table.slice(0, 200), split / "part-00000-of-00002.parquet")
    pq.write_table(table.slice(200), split / "part-00001-of-00002.parquet")
    model = _save_feature_model(tmp_path / "model", {"probabilities": "p"}, classes=3)
    got, _ = _compare(tmp_path, REPLAYED, examples=Examples(uri=str(tmp_path / "examples"), split_names=["eval"]),
                      model=model, label_key="species", problem="multiclass", label_vocabulary=species,
                      slicing_features=["island", ["island", "year"]],
                      thresholds={"accuracy": MetricThreshold(lower_bound=0.5)})
    assert got["plots"]["confusion_matrix"]["matrix"] == [
        [int(np.sum((truth == a) & (predicted == p))) for p in range(3)] for a in range(3)]


def test_regression_weighted_with_a_row_limit_and_inferred_problem(tmp_path, capsys, monkeypatch):
    from sluice.components.evaluator import beam as on_beam

    monkeypatch.setattr(on_beam, "PIECE_ROWS", 100)  # each 100-row group a piece: 4 and 30 rows of a fifth
    rng = np.random.default_rng(7)
    rows = 500
    fare = rng.gamma(2.0, 6.0, rows)
    fare[::50] = 0.0
    table = pa.table({"fare": fare, "pred": fare * 0.9 + rng.normal(0, 1.5, rows),
                      "area": np.where(rng.random(rows) < 0.5, "north", "south"),
                      "miles": rng.random(rows) * 10, "w": rng.random(rows),
                      "floor": np.r_[rng.integers(2, 12, 200), rng.integers(0, 3, rows - 200)]})
    split = tmp_path / "examples" / "Split-eval"
    split.mkdir(parents=True)
    pq.write_table(table, split / "part-00000-of-00001.parquet", row_group_size=100)
    model = _save_feature_model(tmp_path / "m", {"predictions": "pred"})
    got, _ = _compare(tmp_path, REPLAYED, examples=Examples(uri=str(tmp_path / "examples"), split_names=["eval"]),
                      model=model, label_key="fare", slicing_features=["area", "miles", ["floor", "area"]],
                      example_weight_key="w",
                      example_count_limit=430, thresholds={"rmse": MetricThreshold(upper_bound=3.0)})
    assert got["overall"]["example_count"] == 430 and got["problem"] == "regression" and got["pieces"] == 5
    floors = [name.split(",")[0] for name in got["slices"] if name.startswith("floor=")]
    assert list(dict.fromkeys(floors)) == [f"floor={i}" for i in range(12)]  # numeric order across pieces
    assert "in the first 430 rows" in capsys.readouterr().err


def test_a_workers_error_is_one_line(tmp_path, models):
    good, _ = models
    examples, _ = _binary_data(tmp_path / "data")
    evaluation, blessing = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"^Evaluator: example weight 'fare' in .*part-0000\d-of-00002\.parquet "
                                             r"row \d+ is -1\.0; weights are finite and >= 0$"):
        bad = tmp_path / "bad" / "Split-eval"
        bad.mkdir(parents=True)
        table = pq.read_table(os.path.join(examples.split_uri("eval"), "part-00001-of-00002.parquet"))
        table = table.set_column(table.schema.get_field_index("fare"), "fare", pa.array(np.full(table.num_rows, -1.0)))
        pq.write_table(table, bad / "part-00000-of-00002.parquet")
        evaluate_model(examples=Examples(uri=str(tmp_path / "bad"), split_names=["eval"]), model=good,
                       evaluation=evaluation, blessing=blessing, label_key="label", example_weight_key="fare",
                       problem="binary", ctx=ExecutionContext(beam_pipeline_args=["--direct_num_workers=1",
                                                                                  "--direct_runner_bundle_repeat=1"]))


def test_accumulators_merge_in_any_order_to_one_pass():
    rng = np.random.default_rng(2)
    labels, scores, weights = rng.integers(0, 2, 900), rng.random(900), rng.random(900)
    scores[::97] = np.nan
    whole = BinaryAccumulator(0.5, True).add(labels, scores, weights)
    parts = [BinaryAccumulator(0.5, True).add(labels[s], scores[s], weights[s])
             for s in (slice(0, 100), slice(100, 650), slice(650, 900))]
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert merged.count == whole.count and np.allclose(merged.sums, whole.sums, rtol=1e-12, equal_nan=True)
    _same_metrics(merged.metrics(), whole.metrics(), "binary")
    values = rng.normal(5, 2, 900)
    whole_r = RegressionAccumulator(False).add(values, values * 1.1)
    merged_r = RegressionAccumulator(False).add(values[:10], values[:10] * 1.1).merge(
        RegressionAccumulator(False).add(values[10:], values[10:] * 1.1))
    _same_metrics(merged_r.metrics(), whole_r.metrics(), "regression")


def test_inference_skips_an_empty_first_file_and_an_int_file_is_bucketed_like_a_float_one(tmp_path, models):
    good, _ = models
    examples, table = _binary_data(tmp_path / "data")
    split = examples.split_uri("eval")
    pq.write_table(table.slice(0, 0), os.path.join(split, "part-0000-empty.parquet"))  # sorts first
    second = os.path.join(split, "part-00001-of-00002.parquet")
    ints = pq.read_table(second)
    pq.write_table(ints.set_column(ints.schema.get_field_index("fare"), "fare",
                                   pa.array(np.round(ints.column("fare").to_numpy()).astype(np.int64))), second)
    got, _ = _compare(tmp_path, REPLAYED, examples=examples, model=good, label_key="label",
                      slicing_features=["fare"])
    assert got["problem"] == "binary" and len(got["slices"]) == 4
