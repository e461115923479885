"""Tests of the Evaluator on small models whose predictions are read from the examples themselves,
so every expected metric can be computed independently here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components import serving
from sluice.components.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
from sluice.components.evaluator import MetricThreshold, binary_metrics, evaluate_model, roc_curve
from sluice.components.evaluator import predict as predict_module
from sluice.components.sdk import ComponentError, ExecutionContext


def _save_feature_model(path, outputs: dict[str, str], transform_label: bool = False, classes: int = 0,
                        odd_raw_function: bool = False, raw_function: bool = False):
    """A SavedModel whose serving_default returns example features as predictions.

    ``outputs`` maps output name -> float feature name (or, with ``classes``, the prefix of
    ``<prefix>0..<prefix>{classes-1}`` probability features).
    """
    import tensorflow as tf

    features = sorted({f"{p}{i}" for p in outputs.values() for i in range(classes)} if classes
                      else set(outputs.values()))
    spec = {f: tf.io.VarLenFeature(tf.float32) for f in features}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        parsed = tf.io.parse_example(examples, spec)
        dense = {f: tf.reshape(tf.sparse.to_dense(parsed[f]), [-1]) for f in features}
        if classes:
            return {name: tf.stack([dense[f"{p}{i}"] for i in range(classes)], axis=1)
                    for name, p in outputs.items()}
        return {name: tf.reshape(dense[f], [-1, 1]) for name, f in outputs.items()}

    signatures = {"serving_default": serve}
    if transform_label:
        raw = {"tips": tf.io.VarLenFeature(tf.float32), "fare": tf.io.VarLenFeature(tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform_features(examples):
            parsed = tf.io.parse_example(examples, raw)
            tips = tf.reshape(tf.sparse.to_dense(parsed["tips"]), [-1])
            fare = tf.reshape(tf.sparse.to_dense(parsed["fare"]), [-1])
            return {"tips_xf": tf.cast(tips > 0.2 * fare, tf.int64)}

        signatures["transform_features"] = transform_features
    module = tf.Module()
    module.serve = serve
    if raw_function:  # as trainer.export_serving_model saves it: raw SparseTensors in
        from sluice.components.tft import raw_input_signature

        @tf.function(input_signature=[raw_input_signature({f: "float32" for f in features})])
        def evaluate_raw_features(raw):
            dense = {f: tf.reshape(tf.sparse.to_dense(raw[f]), [-1]) for f in features}
            return {"outputs": {name: tf.reshape(dense[f], [-1, 1]) for name, f in outputs.items()},
                    "transformed": dense}

        module.evaluate_raw_features = evaluate_raw_features
    if odd_raw_function:  # a function of the name Sluice's exports use, taking something else
        module.evaluate_raw_features = tf.function(lambda x: {"outputs": {"outputs": x}},
                                                   input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, os.path.join(path, "Format-Serving"), signatures=signatures)
    return Model(uri=str(path))


def _binary_data(root, rows=400, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, rows)
    good = np.clip(label * 0.6 + rng.random(rows) * 0.5, 0, 1)      # informative scores
    weak = np.clip(label * 0.1 + rng.random(rows) * 0.9, 0, 1)       # barely informative
    payment = np.where(rng.random(rows) < 0.5, "Cash", "Credit Card").astype(object)
    payment[::37] = None
    fare = rng.random(rows) * 20 + 1
    table = pa.table({
        "label": pa.array(label, pa.int64()), "score": good, "weak_score": weak,
        "payment_type": pa.array(payment, pa.large_string()),
        "fare": fare, "tips": np.where(label == 1, fare * 0.3, 0.0),
    })
    split = os.path.join(root, "Split-eval")
    os.makedirs(split)
    # Two files, to check they are all read.
    pq.write_table(table.slice(0, rows // 2), os.path.join(split, "part-00000-of-00002.parquet"))
    pq.write_table(table.slice(rows // 2), os.path.join(split, "part-00001-of-00002.parquet"))
    return Examples(uri=str(root), split_names=["eval"]), table


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    examples, table = _binary_data(root / "examples")
    good = _save_feature_model(root / "good", {"outputs": "score"}, transform_label=True)
    weak = _save_feature_model(root / "weak", {"outputs": "weak_score"})
    return examples, table, good, weak


def _outputs(tmp_path):
    for name in ("evaluation", "blessing"):
        (tmp_path / name).mkdir(parents=True)
    return ModelEvaluation(uri=str(tmp_path / "evaluation")), ModelBlessing(uri=str(tmp_path / "blessing"))


def _pairwise_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def test_binary_metrics_match_independent_computation():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 1)  # many ties
    metrics = binary_metrics(labels, scores, decision_threshold=0.5)
    predicted = scores >= 0.5
    assert metrics["example_count"] == 300
    assert metrics["auc"] == pytest.approx(_pairwise_auc(labels, scores))
    assert metrics["binary_accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert metrics["precision"] == pytest.approx(np.sum(predicted & (labels == 1)) / predicted.sum())
    assert metrics["recall"] == pytest.approx(np.sum(predicted & (labels == 1)) / labels.sum())
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    expected_log_loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert binary_metrics(np.zeros(3, int), np.array([0.1, 0.2, 0.9]))["auc"] is None


def test_evaluates_overall_and_slices_and_blesses(tmp_path, binary):
    examples, table, good, _ = binary
    evaluation, blessing = _outputs(tmp_path)
    ctx = ExecutionContext()
    evaluate_model(examples=examples, model=good, evaluation=evaluation, blessing=blessing, label_key="label",
                   slicing_features=["payment_type"],
                   thresholds={"binary_accuracy": MetricThreshold(lower_bound=0.7),
                               "log_loss": {"upper_bound": 1.0, "higher_is_better": False}},
                   ctx=ctx)
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    labels, scores = table.column("label").to_numpy(), table.column("score").to_numpy()
    assert metrics["overall"]["example_count"] == 400
    assert metrics["overall"]["auc"] == pytest.approx(_pairwise_auc(labels, scores), abs=1e-6)
    assert metrics["overall"]["binary_accuracy"] == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert set(metrics["slices"]) == {"payment_type=Cash", "payment_type=Credit Card"}
    cash = table.column("payment_type").to_numpy(zero_copy_only=False) == "Cash"
    assert metrics["slices"]["payment_type=Cash"]["example_count"] == int(cash.sum())
    assert metrics["slices"]["payment_type=Cash"]["auc"] == pytest.approx(
        _pairwise_auc(labels[cash], scores[cash]), abs=1e-6)
    assert metrics["baseline"] is None
    assert [t["passed"] for t in metrics["thresholds"]] == [True, True]
    assert os.path.exists(blessing.path("BLESSED")) and not os.path.exists(blessing.path("NOT_BLESSED"))
    assert blessing.blessed and blessing.model_uri == good.uri and evaluation.blessed
    assert ctx.metrics["auc"] == pytest.approx(metrics["overall"]["auc"])
    report = Path(evaluation.path("report.html")).read_text()
    assert "BLESSED" in report and "payment_type=Credit Card" in report


def test_value_threshold_failure_is_not_blessed_with_reason(tmp_path, binary):
    examples, _, _, weak = binary
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=examples, model=weak, evaluation=evaluation, blessing=blessing, label_key="label",
                   thresholds={"auc": MetricThreshold(lower_bound=0.9)}, ctx=ExecutionContext())
    assert os.path.exists(blessing.path("NOT_BLESSED"))
    assert not blessing.blessed and evaluation.blessed is False
    assert blessing.reason.startswith("auc ") and "violates lower_bound 0.9" in blessing.reason


def test_change_thresholds_against_a_baseline_input(tmp_path, binary):
    examples, _, good, weak = binary
    # The weak candidate regresses against the good baseline: not blessed.
    evaluation, blessing = _outputs(tmp_path / "a")
    evaluate_model(examples=examples, model=weak, baseline_model=good, evaluation=evaluation,
                   blessing=blessing, label_key="label",
                   thresholds={"auc": MetricThreshold(max_regression=0.01)}, ctx=ExecutionContext())
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    assert metrics["baseline"]["auc"] > metrics["overall"]["auc"]
    assert not blessing.blessed and "vs baseline" in blessing.reason
    # The good candidate improves on the weak baseline by more than 10% relative: blessed.
    evaluation, blessing = _outputs(tmp_path / "b")
    evaluate_model(examples=examples, model=good, baseline_model=weak, evaluation=evaluation,
                   blessing=blessing, label_key="label",
                   thresholds={"auc": MetricThreshold(min_improvement=0.1, relative=True),
                               "log_loss": MetricThreshold(higher_is_better=False, min_improvement=0.0)},
                   ctx=ExecutionContext())
    assert blessing.blessed, blessing.reason


def test_without_baseline_change_thresholds_are_skipped(tmp_path, binary):
    examples, _, good, _ = binary
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=examples, model=good, evaluation=evaluation, blessing=blessing, label_key="label",
                   thresholds={"auc": MetricThreshold(lower_bound=0.5, min_improvement=0.0)},
                   ctx=ExecutionContext())
    results = json.loads(Path(evaluation.path("metrics.json")).read_text())["thresholds"]
    assert [(r["kind"], r["skipped"]) for r in results] == [("lower_bound", False), ("min_improvement", True)]
    assert blessing.blessed and "1 skipped" in blessing.reason


class _Lookup:
    """The metadata store's query interface, holding given blessings (newest first)."""

    def __init__(self, blessings):
        self.blessings = blessings
        self.calls = []

    def find_artifacts(self, pipeline_name, type_name, predicate):
        self.calls.append((pipeline_name, type_name))
        return [(b, None) for b in self.blessings if predicate(b)]


def test_baseline_is_the_latest_blessed_model_from_the_store(tmp_path, binary):
    examples, _, good, weak = binary
    lookup = _Lookup([ModelBlessing(uri="x", blessed=False, model_uri=weak.uri),
                      ModelBlessing(uri="y", blessed=True, model_uri=good.uri)])
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=examples, model=weak, evaluation=evaluation, blessing=blessing, label_key="label",
                   thresholds={"auc": MetricThreshold(max_regression=0.0)},
                   ctx=ExecutionContext(pipeline_name="taxi", lookup=lookup))
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    assert lookup.calls == [("taxi", "ModelBlessing")]
    assert metrics["baseline_model_uri"] == good.uri
    assert not blessing.blessed


def test_label_computed_by_the_models_transform_features(tmp_path, binary):
    examples, table, good, _ = binary
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=examples, model=good, evaluation=evaluation, blessing=blessing,
                   label_key="tips_xf", prediction_key="outputs", ctx=ExecutionContext())
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    labels, scores = table.column("label").to_numpy(), table.column("score").to_numpy()
    assert metrics["overall"]["auc"] == pytest.approx(_pairwise_auc(labels, scores), abs=1e-6)


def test_bad_inputs_are_clear_errors(tmp_path, binary):
    examples, _, good, weak = binary
    evaluation, blessing = _outputs(tmp_path)
    kwargs = dict(examples=examples, evaluation=evaluation, blessing=blessing, ctx=ExecutionContext())
    with pytest.raises(ComponentError, match=r"label 'nope' is not a column of .*part-00000-of-00002\.parquet"):
        evaluate_model(model=weak, label_key="nope", **kwargs)
    with pytest.raises(ComponentError, match=r"label 'fare' .* has value .*binary problem needs labels 0/1"):
        evaluate_model(model=weak, label_key="fare", problem="binary", **kwargs)
    with pytest.raises(ComponentError, match=r"unknown metric 'accuracy'"):
        evaluate_model(model=weak, label_key="label", thresholds={"accuracy": MetricThreshold(lower_bound=0.5)},
                       **kwargs)
    with pytest.raises(ComponentError, match=r"has no output 'probs' \(outputs: outputs\)"):
        evaluate_model(model=weak, label_key="label", prediction_key="probs", **kwargs)
    with pytest.raises(ComponentError, match=r"slicing feature 'company' is not a column"):
        evaluate_model(model=weak, label_key="label", slicing_features=["company"], **kwargs)
    with pytest.raises(ComponentError, match=r"examples split 'test' has no Parquet files"):
        evaluate_model(model=weak, label_key="label", eval_split="test", **kwargs)


SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def _penguin_probabilities():
    """(penguins table with class probabilities p0..p2, true class ids, predicted class ids): the
    prediction right for every third example, the next class otherwise."""
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna().reset_index(drop=True)
    truth = frame["species"].map({s: i for i, s in enumerate(SPECIES)}).to_numpy()
    predicted = np.where(np.arange(len(frame)) % 3 == 0, truth, (truth + 1) % 3)
    for i in range(3):
        frame[f"p{i}"] = np.where(predicted == i, 0.8, 0.1)
    return pa.Table.from_pandas(frame, preserve_index=False), truth, predicted


def test_multiclass_with_string_labels(tmp_path):
    table, truth, predicted = _penguin_probabilities()
    species = SPECIES
    split = tmp_path / "examples" / "Split-eval"
    split.mkdir(parents=True)
    pq.write_table(table, split / "part-00000-of-00001.parquet")
    model = _save_feature_model(tmp_path / "model", {"probabilities": "p"}, classes=3)
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=Examples(uri=str(tmp_path / "examples"), split_names=["eval"]), model=model,
                   evaluation=evaluation, blessing=blessing, label_key="species", problem="multiclass",
                   label_vocabulary=species, slicing_features=["island"],
                   thresholds={"accuracy": MetricThreshold(lower_bound=0.5)}, ctx=ExecutionContext())
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    assert metrics["overall"]["accuracy"] == pytest.approx(np.mean(predicted == truth))
    assert metrics["overall"]["log_loss"] == pytest.approx(
        -np.mean(np.log(np.where(predicted == truth, 0.8, 0.1))), rel=1e-5)
    assert set(metrics["slices"]) == {"island=Biscoe", "island=Dream", "island=Torgersen"}
    assert not blessing.blessed  # accuracy is about 1/3
    matrix = metrics["plots"]["confusion_matrix"]
    assert matrix["labels"] == species
    expected = [[int(np.sum((truth == a) & (predicted == p))) for p in range(3)] for a in range(3)]
    assert matrix["matrix"] == expected
    assert "roc_curve" not in metrics["plots"]  # binary only
    with pytest.raises(ComponentError, match=r"label 'species' holds strings; set parameter 'label_vocabulary'"):
        evaluate_model(examples=Examples(uri=str(tmp_path / "examples"), split_names=["eval"]), model=model,
                       evaluation=evaluation, blessing=blessing, label_key="species", problem="multiclass",
                       ctx=ExecutionContext())


def test_binary_plots_confusion_matrix_and_roc_curve(tmp_path, binary):
    examples, table, _, weak = binary
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=examples, model=weak, evaluation=evaluation, blessing=blessing, label_key="label",
                   decision_threshold=0.4, ctx=ExecutionContext())
    plots = json.loads(Path(evaluation.path("metrics.json")).read_text())["plots"]
    labels = table.column("label").to_numpy()
    scores = table.column("weak_score").to_numpy().astype(np.float32).astype(np.float64)  # as the model gives
    predicted = (scores >= 0.4).astype(int)
    assert plots["confusion_matrix"] == {
        "labels": ["0", "1"],
        "matrix": [[int(np.sum((labels == a) & (predicted == p))) for p in (0, 1)] for a in (0, 1)]}
    roc = plots["roc_curve"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) <= 200
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    # Every point is the rates at its threshold, computed independently.
    for fpr, tpr, threshold in zip(roc["fpr"], roc["tpr"], roc["thresholds"]):
        assert tpr == pytest.approx(np.mean(scores[labels == 1] >= threshold))
        assert fpr == pytest.approx(np.mean(scores[labels == 0] >= threshold))
    assert np.all(np.diff(roc["thresholds"]) < 0)


def test_roc_curve_is_thinned_to_at_most_200_points_and_keeps_its_area():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 20_000)
    scores = np.clip(labels * 0.3 + rng.random(20_000), 0, 1)
    curve = roc_curve(labels, scores)
    assert len(curve["fpr"]) <= 200
    assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)
    area = np.trapezoid(curve["tpr"], curve["fpr"])
    assert area == pytest.approx(_pairwise_auc(labels, scores), abs=2e-3)
    assert roc_curve(np.zeros(5, dtype=int), rng.random(5)) is None  # one class only


def test_each_batch_is_serialized_once_for_model_baseline_and_label(tmp_path, binary, monkeypatch):
    examples, table, good, weak = binary
    batches = []
    real_serialize = predict_module.serialize_examples

    def counting_serialize(batch):
        batches.append(batch.num_rows)
        return real_serialize(batch)

    monkeypatch.setattr(predict_module, "serialize_examples", counting_serialize)
    monkeypatch.setattr(serving, "SERIALIZED_BATCH_ROWS", 64)
    evaluation, blessing = _outputs(tmp_path)
    evaluate_model(examples=examples, model=good, baseline_model=weak, evaluation=evaluation, blessing=blessing,
                   label_key="tips_xf", prediction_key="outputs", ctx=ExecutionContext())
    assert sum(batches) == table.num_rows and max(batches) == 64  # once, in batches
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    labels = table.column("label").to_numpy()
    assert metrics["overall"]["auc"] == pytest.approx(
        _pairwise_auc(labels, table.column("score").to_numpy()), abs=1e-6)
    assert metrics["baseline"]["auc"] == pytest.approx(
        _pairwise_auc(labels, table.column("weak_score").to_numpy()), abs=1e-6)


def test_an_evaluate_raw_features_of_another_form_is_ignored(tmp_path, binary):
    examples, table, _, _ = binary
    model = _save_feature_model(tmp_path / "odd", {"outputs": "score"}, odd_raw_function=True)
    assert getattr(predict_module.load_serving(model, "model"), "evaluate_raw_features", None) is not None
    evaluation, blessing = _outputs(tmp_path / "out")
    evaluate_model(examples=examples, model=model, evaluation=evaluation, blessing=blessing, label_key="label",
                   ctx=ExecutionContext())
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    labels, scores = table.column("label").to_numpy(), table.column("score").to_numpy()
    assert metrics["overall"]["auc"] == pytest.approx(_pairwise_auc(labels, scores), abs=1e-6)


def test_raw_features_model_beside_a_serialized_baseline(tmp_path, binary, monkeypatch):
    examples, table, _, weak = binary
    model = _save_feature_model(tmp_path / "raw", {"outputs": "score"}, raw_function=True)
    assert predict_module.raw_function(predict_module.load_serving(model, "model")) is not None
    assert predict_module.raw_function(predict_module.load_serving(weak, "baseline")) is None
    serialized_batches = []
    real_serialize = predict_module.serialize_examples
    monkeypatch.setattr(predict_module, "serialize_examples",
                        lambda batch: serialized_batches.append(batch.num_rows) or real_serialize(batch))
    evaluation, blessing = _outputs(tmp_path / "out")
    evaluate_model(examples=examples, model=model, baseline_model=weak, evaluation=evaluation, blessing=blessing,
                   label_key="label", ctx=ExecutionContext())
    metrics = json.loads(Path(evaluation.path("metrics.json")).read_text())
    labels = table.column("label").to_numpy()
    assert metrics["overall"]["auc"] == pytest.approx(_pairwise_auc(labels, table.column("score").to_numpy()),
                                                      abs=1e-6)
    assert metrics["baseline"]["auc"] == pytest.approx(
        _pairwise_auc(labels, table.column("weak_score").to_numpy()), abs=1e-6)
    assert sum(serialized_batches) == table.num_rows  # only for the baseline, once per row


def _evaluate(tmp_path, name, examples, model, **params) -> dict:
    evaluation, blessing = _outputs(tmp_path / name)
    evaluate_model(examples=examples, model=model, evaluation=evaluation, blessing=blessing, ctx=ExecutionContext(),
                   **params)
    return json.loads(Path(evaluation.path("metrics.json")).read_text())


def _examples(root, table) -> Examples:
    split = root / "Split-eval"
    split.mkdir(parents=True)
    pq.write_table(table, split / "part-00000-of-00001.parquet")
    return Examples(uri=str(root), split_names=["eval"])


def test_binary_logits_give_the_metrics_of_their_probability_twin(tmp_path, binary, capsys):
    examples, table, _, _ = binary
    score = np.clip(table.column("score").to_numpy(), 1e-4, 1 - 1e-4)
    twin = table.append_column("logit", pa.array(np.log(score / (1 - score)))) \
        .set_column(table.schema.get_field_index("score"), "score", pa.array(score))
    data = _examples(tmp_path / "data", twin)
    probabilities = _save_feature_model(tmp_path / "p", {"outputs": "score"})
    logits = _save_feature_model(tmp_path / "l", {"outputs": "logit"})
    expected = _evaluate(tmp_path, "p", data, probabilities, label_key="label", slicing_features=["payment_type"])
    assert "problem inferred as binary (one score per example and every label is 0 or 1)" in capsys.readouterr().err
    for name, params in (("detected", {}), ("declared", {"from_logits": True})):
        got = _evaluate(tmp_path, name, data, logits, label_key="label", slicing_features=["payment_type"], **params)
        assert got["problem"] == "binary"
        for key, value in expected["overall"].items():
            assert got["overall"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, key)
        assert got["slices"].keys() == expected["slices"].keys()


def test_multiclass_logits_and_probabilities_that_do_not_sum_to_one(tmp_path):
    rng = np.random.default_rng(5)
    rows = 300
    label = rng.integers(0, 3, rows)
    logits = rng.normal(size=(rows, 3)) + 2.0 * np.eye(3)[label]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    columns = {"label": pa.array(label)}
    for i in range(3):
        columns |= {f"p{i}": probabilities[:, i], f"l{i}": logits[:, i], f"half{i}": probabilities[:, i] / 2}
    data = _examples(tmp_path / "data", pa.table(columns))
    expected = _evaluate(tmp_path, "p", data, _save_feature_model(tmp_path / "pm", {"probabilities": "p"}, classes=3),
                         label_key="label")
    assert expected["problem"] == "multiclass"
    assert expected["overall"]["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == label))
    got = _evaluate(tmp_path, "l", data, _save_feature_model(tmp_path / "lm", {"logits": "l"}, classes=3),
                    label_key="label")
    for key in ("accuracy", "log_loss", "example_count"):
        assert got["overall"][key] == pytest.approx(expected["overall"][key], rel=1e-5)
    halves = _save_feature_model(tmp_path / "hm", {"probabilities": "half"}, classes=3)
    with pytest.raises(ComponentError, match=r"^Evaluator: model's class probabilities do not sum to 1 \(row 0 "
                                             r"sums to 0\.5\); set parameter 'from_logits' to true"):
        _evaluate(tmp_path, "h", data, halves, label_key="label")


def test_regression_metrics_thresholds_and_blessing(tmp_path, capsys):
    rng = np.random.default_rng(7)
    rows = 500
    fare = rng.gamma(2.0, 6.0, rows)
    fare[::50] = 0.0  # MAPE leaves these out
    predicted = fare * 0.9 + rng.normal(0, 1.5, rows)
    area = np.where(rng.random(rows) < 0.5, "north", "south")
    data = _examples(tmp_path / "data", pa.table({"fare": fare, "pred": predicted, "area": area}))
    model = _save_feature_model(tmp_path / "m", {"predictions": "pred"})
    thresholds = {"rmse": MetricThreshold(upper_bound=3.0), "r2": MetricThreshold(lower_bound=0.8)}
    metrics = _evaluate(tmp_path, "auto", data, model, label_key="fare", slicing_features=["area"],
                        thresholds=thresholds)
    assert "problem inferred as regression" in capsys.readouterr().err
    errors = predicted - fare
    nonzero = fare != 0
    overall = metrics["overall"]
    assert metrics["problem"] == "regression" and overall["example_count"] == rows
    assert overall["mse"] == pytest.approx(np.mean(errors ** 2), rel=1e-5)
    assert overall["rmse"] == pytest.approx(np.sqrt(np.mean(errors ** 2)), rel=1e-5)
    assert overall["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    assert overall["mape"] == pytest.approx(100 * np.mean(np.abs(errors[nonzero] / fare[nonzero])), rel=1e-4)
    assert overall["r2"] == pytest.approx(1 - np.sum(errors ** 2) / np.sum((fare - fare.mean()) ** 2), rel=1e-5)
    assert overall["label_mean"] == pytest.approx(fare.mean()) and set(metrics["slices"]) == {"area=north",
                                                                                                "area=south"}
    assert [r["passed"] for r in metrics["thresholds"]] == [overall["rmse"] <= 3.0, overall["r2"] >= 0.8]
    residuals = metrics["plots"]["residuals"]  # buckets of |error| by half octaves, in value order
    assert sum(residuals["weight"]) == rows and residuals["low"] == sorted(residuals["low"])
    for low, high, weight in zip(residuals["low"], residuals["high"], residuals["weight"]):
        small, big = sorted((abs(low), abs(high)))  # [small, big) of |error|, on the side of the bucket's sign
        side = np.sign(errors) == np.sign(low)
        assert weight == np.sum(side & (np.abs(errors) >= small) & (np.abs(errors) < big))
        assert big / small == pytest.approx(2 ** 0.5)
    report = Path(tmp_path / "auto" / "evaluation" / "report.html").read_text()
    assert "Residuals (prediction - label)" in report and report.count("<svg") >= 2
    strict = _evaluate(tmp_path, "strict", data, model, label_key="fare", problem="regression",
                       thresholds={"rmse": MetricThreshold(upper_bound=0.5)})
    assert not strict["thresholds"][0]["passed"]


def test_streamed_batches_give_the_figures_of_the_whole_split(tmp_path, binary, monkeypatch):
    """The split read in 64-row batches gives exactly the one-batch figures; over EXACT_ROWS rows, the
    same counts and sums and AUC from the score histogram; problem and logits are decided over every
    batch, though the first one holds only 0/1 labels and outputs in [0, 1]."""
    from sluice.components.evaluator import stream

    examples, _, good, weak = binary
    params = dict(label_key="label", baseline_model=weak, slicing_features=["payment_type", "fare"])
    whole = _evaluate(tmp_path, "whole", examples, good, **params)
    monkeypatch.setattr(stream, "READ_ROWS", 64)
    assert _evaluate(tmp_path, "batched", examples, good, **params) == whole
    monkeypatch.setattr(stream, "EXACT_ROWS", 100)
    sketched = _evaluate(tmp_path, "sketched", examples, good, **params)
    assert list(sketched["slices"]) == list(whole["slices"]) and sketched["slices"]
    for got, expected in [(sketched["overall"], whole["overall"]), (sketched["baseline"], whole["baseline"]),
                          *((sketched["slices"][name], whole["slices"][name]) for name in whole["slices"])]:
        assert got["example_count"] == expected["example_count"] and got["auc"] == pytest.approx(expected["auc"],
                                                                                                  abs=1e-3)
        assert got["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-6)

    rng = np.random.default_rng(3)
    labels = np.r_[rng.integers(0, 2, 64), rng.integers(0, 2, 236)]
    logits = np.r_[rng.random(64), rng.normal(0, 3, 236)]  # outside [0, 1] only after the first batch
    values = np.r_[labels[:64], rng.gamma(2.0, 3.0, 236)]  # labels other than 0/1 only after it
    guess = values + rng.normal(0, 1, 300)
    data = _examples(tmp_path / "late", pa.table({"label": labels, "logit": logits, "value": values,
                                                   "guess": guess}))
    got = _evaluate(tmp_path, "logits", data, _save_feature_model(tmp_path / "lm", {"outputs": "logit"}),
                    label_key="label", problem="binary")["overall"]
    assert got["log_loss"] == pytest.approx(binary_metrics(labels, 1 / (1 + np.exp(-logits)))["log_loss"], rel=1e-6)
    got = _evaluate(tmp_path, "regression", data, _save_feature_model(tmp_path / "rm", {"outputs": "guess"}),
                    label_key="value")
    assert got["problem"] == "regression"
    assert got["overall"]["mse"] == pytest.approx(np.mean((values - guess) ** 2), rel=1e-6)
