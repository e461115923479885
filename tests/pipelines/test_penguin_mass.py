"""The penguin body-mass pipeline: a regression end to end, judged in grams overall and per
species, its metrics recomputed here from the pushed model's own predictions."""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.pipelines.test_penguin import sluice

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("penguin_mass")
    proc = sluice("run", "penguin_mass", "--pipeline-root", str(ws / "root"), "--json", cwd=ws)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, json.loads(proc.stdout)


def _component(doc, kind):
    return next(c for c in doc["components"] if c["type"] == kind)


def test_regression_is_blessed_and_its_metrics_are_the_models(run):
    import tensorflow as tf

    ws, doc = run
    evaluator = _component(doc, "Evaluator")
    evaluation = evaluator["outputs"]["evaluation"][0]
    metrics = json.loads(Path(evaluation, "metrics.json").read_text())
    assert metrics["problem"] == "regression"
    assert os.path.exists(os.path.join(evaluator["outputs"]["blessing"][0], "BLESSED"))
    # The served model on the raw eval rows, metrics in numpy: the Evaluator's numbers.
    examples = _component(doc, "CsvExampleGen")["outputs"]["examples"][0]
    rows = [r for r in pq.read_table(os.path.join(examples, "Split-eval")).to_pylist() if r["body_mass_g"] is not None]
    served = tf.saved_model.load(str(ws / "root" / "serving" / "penguin_mass" / "1"))
    records = []
    for row in rows:
        feature = {}
        for key, value in row.items():
            if key == "body_mass_g" or value is None:
                continue
            if isinstance(value, str):
                feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif isinstance(value, int):
                feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            else:
                feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    predicted = served.signatures["serving_default"](examples=tf.constant(records))["mass"].numpy().reshape(-1)
    truth = np.array([r["body_mass_g"] for r in rows], dtype=np.float64)
    errors = predicted - truth
    assert metrics["overall"]["example_count"] == len(truth)
    assert metrics["overall"]["rmse"] == pytest.approx(np.sqrt(np.mean(errors ** 2)), rel=1e-4)
    assert metrics["overall"]["r2"] == pytest.approx(1 - np.sum(errors ** 2) / np.sum((truth - truth.mean()) ** 2),
                                                     rel=1e-4)
    assert metrics["overall"]["rmse"] < 450 and metrics["overall"]["r2"] > 0.6
    assert [c["slice"] for c in metrics["thresholds"]] == ["overall", "overall", "species=Adelie",
                                                          "species=Chinstrap", "species=Gentoo"]
    assert sum(1 for s in metrics["slice_specs"].values() if s == "flipper_length_mm") == 4
    report = Path(evaluation, "report.html").read_text()
    assert "rmse by species" in report and "rmse by flipper_length_mm" in report


def test_thresholds_it_cannot_meet_block_the_push(run):
    ws, _doc = run
    proc = sluice("run", "penguin_mass", "--pipeline-root", str(ws / "root"), "--json",
                  "--param", "species_max_rmse=100", cwd=ws)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    statuses = {c["type"]: c["status"] for c in doc["components"]}
    assert statuses["Trainer"] == "cached" and statuses["Evaluator"] == "executed"
    blessing = _component(doc, "Evaluator")["outputs"]["blessing"][0]
    assert os.path.exists(os.path.join(blessing, "NOT_BLESSED"))
    assert not (ws / "root" / "serving" / "penguin_mass" / "2").exists()
