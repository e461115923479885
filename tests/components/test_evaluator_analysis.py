"""The Evaluator's numbers against scikit-learn (weighted and not), its slices, and its per-slice
checks; the whole component on a binary model with weights, crosses, buckets and slice thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as sk

from sluice.components.artifacts import Examples
from sluice.components.evaluator import (
    MetricThreshold,
    binary_metrics,
    calibration,
    evaluate_model,
    multiclass_metrics,
    pr_curve,
    regression_metrics,
)
from sluice.components.evaluator.slicing import slice_masks
from sluice.components.sdk import ComponentError, ExecutionContext
from tests.components.test_evaluator import _binary_data, _outputs, _save_feature_model


@pytest.fixture(params=[False, True], ids=["unweighted", "weighted"])
def weights(request):
    return np.random.default_rng(9).random(500) * 3 if request.param else None


def test_binary_metrics_agree_with_scikit_learn(weights):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 500)
    scores = np.round(np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1), 2)  # ties
    got = binary_metrics(labels, scores, 0.5, weights)
    predicted = (scores >= 0.5).astype(int)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(labels, scores, sample_weight=weights))
    assert got["auc_pr"] == pytest.approx(sk.average_precision_score(labels, scores, sample_weight=weights))
    assert got["binary_accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted, sample_weight=weights))
    assert got["precision"] == pytest.approx(sk.precision_score(labels, predicted, sample_weight=weights))
    assert got["recall"] == pytest.approx(sk.recall_score(labels, predicted, sample_weight=weights))
    assert got["f1"] == pytest.approx(sk.f1_score(labels, predicted, sample_weight=weights))
    assert got["log_loss"] == pytest.approx(sk.log_loss(labels, scores, sample_weight=weights), rel=1e-6)
    (tn, fp), (fn, tp) = sk.confusion_matrix(labels, predicted, sample_weight=weights)
    assert (got["true_negatives"], got["false_positives"], got["false_negatives"], got["true_positives"]) == \
        pytest.approx((tn, fp, fn, tp))
    w = np.ones(500) if weights is None else weights
    assert got["calibration"] == pytest.approx(np.dot(w, scores) / np.dot(w, labels))
    assert got["example_count"] == 500 and ("weighted_example_count" in got) == (weights is not None)


def test_curves_agree_with_scikit_learn(weights):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500), 2)
    curve = pr_curve(labels, scores, max_points=1000, weights=weights)
    precision, recall, thresholds = sk.precision_recall_curve(labels, scores, sample_weight=weights)
    # scikit-learn lists thresholds ascending, then appends (precision 1, recall 0).
    assert curve["thresholds"] == pytest.approx(thresholds[::-1])
    assert curve["precision"] == pytest.approx(precision[:-1][::-1])
    assert curve["recall"] == pytest.approx(recall[:-1][::-1])
    table = calibration(labels, scores, buckets=4, weights=weights)
    w = np.ones(500) if weights is None else weights
    first = scores < 0.25
    assert table["mean_prediction"][0] == pytest.approx(np.dot(w[first], scores[first]) / w[first].sum())
    assert table["mean_label"][0] == pytest.approx(np.dot(w[first], labels[first]) / w[first].sum())
    assert sum(table["weight"]) == pytest.approx(w.sum())


def test_multiclass_and_regression_metrics_agree_with_scikit_learn(weights):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 3, 500)
    raw = rng.random((500, 3)) + np.eye(3)[labels] * 0.8
    probabilities = raw / raw.sum(axis=1, keepdims=True)
    got = multiclass_metrics(labels, probabilities, weights, ["a", "b", "c"])
    predicted = probabilities.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted, sample_weight=weights))
    assert got["log_loss"] == pytest.approx(sk.log_loss(labels, probabilities, sample_weight=weights))
    precision = sk.precision_score(labels, predicted, average=None, sample_weight=weights)
    recall = sk.recall_score(labels, predicted, average=None, sample_weight=weights)
    for i, name in enumerate("abc"):
        assert got[f"precision/{name}"] == pytest.approx(precision[i])
        assert got[f"recall/{name}"] == pytest.approx(recall[i])

    truth = rng.random(500) * 10 + 1
    guess = truth + rng.normal(0, 1, 500)
    got = regression_metrics(truth, guess, weights)
    assert got["mse"] == pytest.approx(sk.mean_squared_error(truth, guess, sample_weight=weights))
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(truth, guess, sample_weight=weights))
    assert got["mape"] == pytest.approx(100 * sk.mean_absolute_percentage_error(truth, guess, sample_weight=weights))
    assert got["r2"] == pytest.approx(sk.r2_score(truth, guess, sample_weight=weights))


def test_slices_of_values_buckets_and_crosses_in_order():
    table = pa.table({
        "hour": pa.array([10, 2, 2, None, 10, 1], pa.int64()),
        "kind": pa.array(["b", "a", "b", "a", None, "a"]),
        "miles": pa.array([0.5, 1.5, 2.5, 3.5, float("nan"), 0.1]),
    })
    found = [(spec, name, mask.nonzero()[0].tolist())
             for spec, name, mask in slice_masks(table, ["hour", ["kind", "hour"], "miles"], "data.parquet",
                                                 {"miles": 2})]
    assert found == [
        ("hour", "hour=1", [5]), ("hour", "hour=2", [1, 2]), ("hour", "hour=10", [0, 4]),  # numeric order
        ("kind × hour", "kind=a, hour=1", [5]), ("kind × hour", "kind=a, hour=2", [1]),
        ("kind × hour", "kind=b, hour=2", [2]), ("kind × hour", "kind=b, hour=10", [0]),
        ("miles", "miles=[0.1, 1.5)", [0, 5]), ("miles", "miles=[1.5, 3.5]", [1, 2, 3]),  # NaN in no bucket
    ]
    with pytest.raises(ComponentError, match=r"'slice_buckets' names 'kind', which is not numeric in data.parquet"):
        list(slice_masks(table, ["kind"], "data.parquet", {"kind": 3}))


def test_component_weights_crosses_small_slices_and_slice_thresholds(tmp_path):
    examples, table = _binary_data(tmp_path / "examples")
    # A weight column, and a cross that leaves small slices.
    weighted = table.append_column("weight", pa.array(np.where(table.column("label").to_numpy() == 1, 2.0, 1.0)))
    split = Path(examples.split_uri("eval"))
    for old in split.iterdir():
        old.unlink()
    import pyarrow.parquet as pq

    pq.write_table(weighted, split / "part-00000-of-00001.parquet")
    model = _save_feature_model(tmp_path / "weak", {"outputs": "weak_score"})  # some slices pass, some not
    evaluation, blessing = _outputs(tmp_path)
    # The median cross size as min_slice_size: about half the crosses are judged, half only reported.
    sizes = sorted(int(m.sum()) for _s, _n, m in slice_masks(table, [["payment_type", "fare"]], "x", {"fare": 8}))
    min_slice_size = sizes[len(sizes) // 2]
    evaluate_model(
        examples=Examples(uri=examples.uri, split_names=["eval"]), model=model, evaluation=evaluation,
        blessing=blessing, label_key="label", problem="binary", example_weight_key="weight",
        slicing_features=["payment_type", ["payment_type", "fare"]], slice_buckets={"fare": 8},
        min_slice_size=min_slice_size,
        thresholds={"auc": MetricThreshold(lower_bound=0.5)},
        slice_thresholds={"payment_type": {"auc": MetricThreshold(lower_bound=0.5)},
                          "payment_type × fare": {"binary_accuracy": MetricThreshold(lower_bound=0.6)}},
        ctx=ExecutionContext())
    metrics = json.loads(Path(evaluation.metrics_file).read_text())
    labels, scores = table.column("label").to_numpy(), table.column("weak_score").to_numpy()
    w = np.where(labels == 1, 2.0, 1.0)
    assert metrics["overall"]["auc"] == pytest.approx(sk.roc_auc_score(labels, scores, sample_weight=w))
    assert metrics["overall"]["weighted_example_count"] == pytest.approx(w.sum())
    crosses = [name for name, spec in metrics["slice_specs"].items() if spec == "payment_type × fare"]
    assert len(crosses) == 16 and crosses[0].startswith("payment_type=Cash, fare=[")
    small = {n for n in crosses if metrics["slices"][n]["example_count"] < min_slice_size}
    assert set(metrics["small_slices"]) == small
    checks = [(c["slice"], c["metric"], c["skipped"], c["passed"]) for c in metrics["thresholds"]]
    assert [c[:3] for c in checks[:3]] == [("overall", "auc", False), ("payment_type=Cash", "auc", False),
                                           ("payment_type=Credit Card", "auc", False)]
    judged = [c for c in metrics["thresholds"] if c["metric"] == "binary_accuracy" and not c["skipped"]]
    assert {c["slice"] for c in judged} == set(crosses) - set(metrics["small_slices"])
    assert all(c["passed"] == (metrics["slices"][c["slice"]]["binary_accuracy"] >= 0.6) for c in judged)
    assert {c["passed"] for c in judged} == {True, False}
    assert not blessing.blessed and "binary_accuracy [payment_type=Cash, fare=[" in blessing.reason
    assert "skipped (under min_slice_size)" in blessing.reason
    report = Path(evaluation.path("report.html")).read_text()
    charted_specs = {metrics["slice_specs"][n] for n in metrics["slices"] if n not in metrics["small_slices"]}
    # ROC, precision-recall, calibration, confusion matrix, and an auc-by-slice chart per spec with a large slice.
    assert report.count("<svg") == 4 + len(charted_specs) and "auc by payment_type" in report
    assert report.count('class="muted">') >= len(metrics["small_slices"])


def test_a_model_good_overall_and_bad_on_one_slice_is_not_blessed(tmp_path):
    examples, table = _binary_data(tmp_path / "examples")
    payment = table.column("payment_type").to_pylist()
    # Good scores for Cash, barely informative ones for Credit Card, and 3 rows of a tiny slice
    # whose predictions are all wrong.
    mixed = np.where(np.array(payment, dtype=object) == "Credit Card", table.column("weak_score").to_numpy(),
                     table.column("score").to_numpy())
    labels = table.column("label").to_numpy()
    tiny = np.flatnonzero(np.array(payment, dtype=object) == "Cash")[:3]
    mixed[tiny] = 1.0 - labels[tiny]
    payment = [("Dispute" if i in set(tiny.tolist()) else p) for i, p in enumerate(payment)]
    table = table.set_column(table.column_names.index("payment_type"), "payment_type", pa.array(payment))
    table = table.append_column("mixed", pa.array(mixed))
    split = Path(examples.split_uri("eval"))
    for old in split.iterdir():
        old.unlink()
    import pyarrow.parquet as pq

    pq.write_table(table, split / "part-00000-of-00001.parquet")
    model = _save_feature_model(tmp_path / "mixed", {"outputs": "mixed"})

    def blessing_of(slice_thresholds):
        evaluation, blessing = _outputs(tmp_path / f"run{len(list(tmp_path.iterdir()))}")
        evaluate_model(examples=examples, model=model, evaluation=evaluation, blessing=blessing, label_key="label",
                       problem="binary", slicing_features=["payment_type"], min_slice_size=10,
                       thresholds={"auc": MetricThreshold(lower_bound=0.75)}, slice_thresholds=slice_thresholds,
                       ctx=ExecutionContext())
        return blessing, json.loads(Path(evaluation.metrics_file).read_text())

    blessing, metrics = blessing_of({})
    assert blessing.blessed and metrics["overall"]["auc"] > 0.75  # good overall
    blessing, metrics = blessing_of({"payment_type": {"auc": MetricThreshold(lower_bound=0.75)}})
    assert metrics["slices"]["payment_type=Credit Card"]["auc"] < 0.75 < metrics["slices"]["payment_type=Cash"]["auc"]
    assert not blessing.blessed
    assert blessing.reason.startswith("auc [payment_type=Credit Card] ")
    assert "violates lower_bound 0.75" in blessing.reason
    # The 3-row slice, all wrong, is reported but not judged.
    assert metrics["small_slices"] == ["payment_type=Dispute"]
    assert metrics["slices"]["payment_type=Dispute"]["binary_accuracy"] == 0.0
    assert "Dispute" not in blessing.reason.split(";")[0] and "1 skipped (under min_slice_size)" in blessing.reason
