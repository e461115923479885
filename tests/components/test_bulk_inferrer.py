"""The BulkInferrer: a trained taxi model's predictions over real rows, as the Evaluator computes them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components.artifacts import Examples, InferenceResult, Model, ModelBlessing
from sluice.components.bulk_inferrer import run_bulk_inferrer
from sluice.components.sdk import ComponentError, ExecutionContext
from tests.components.test_trainer import REPO, _outputs, _transformed
from tests.conftest import SHARED_DATA
from tests.orchestration.test_object_store import s3  # noqa: F401 - a fixture

TAXI_CSV = SHARED_DATA / "chicago_taxi" / "data.csv"
needs_taxi = pytest.mark.skipif(not TAXI_CSV.is_file(), reason="no ../shared/data")


@pytest.fixture(scope="module")
def taxi_model(tmp_path_factory):
    """3,000 taxi rows (with a row_id the model does not read), transformed, and a model trained briefly."""
    import pyarrow.csv as pacsv

    from sluice.components.trainer import run_trainer

    root = tmp_path_factory.mktemp("taxi")
    table = pacsv.read_csv(TAXI_CSV).slice(0, 3000)
    table = table.append_column("row_id", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    raw, transformed, graph = _transformed(str(root / "data"), table, "taxi")
    model, model_run = _outputs(root)
    run_trainer(examples=transformed, transform_graph=graph, model=model, model_run=model_run,
                module_file=os.path.join(REPO, "pipelines", "taxi", "model.py"), train_steps=30, eval_steps=2,
                ctx=ExecutionContext())
    return raw, model


def _infer(tmp_path: Path, examples: Examples, model: Model, **params) -> InferenceResult:
    result = InferenceResult(uri=str(tmp_path / "inference"))
    os.makedirs(result.uri, exist_ok=True)
    run_bulk_inferrer(examples=examples, model=model, inference_result=result, ctx=ExecutionContext(), **params)
    return result


def _evaluator_predictions(table: pa.Table, model: Model) -> np.ndarray:
    from sluice.components.evaluator.predict import load_serving, model_call, run_signatures

    loaded = load_serving(model, "model")  # kept alive while its function runs
    (predictions,) = run_signatures(table, [model_call(loaded, "outputs", "model")])
    return predictions.reshape(len(predictions), -1)[:, 0]


@needs_taxi
def test_predictions_on_the_eval_split_equal_the_evaluators(taxi_model, tmp_path):
    raw, model = taxi_model
    result = _infer(tmp_path, raw, model, splits=["eval"], key_columns=["row_id", "payment_type"])
    assert result.split_names == ["eval"] and not result.skipped
    written = pq.read_table(result.split_uri("eval"))
    assert written.column_names == ["row_id", "payment_type", "outputs"]
    assert sorted(p.name for p in Path(result.split_uri("eval")).iterdir())[0].startswith("part-")
    evaluation = pq.read_table(raw.split_uri("eval"))
    assert result.rows == written.num_rows == evaluation.num_rows == 1000
    expected = dict(zip(evaluation.column("row_id").to_pylist(), _evaluator_predictions(evaluation, model)))
    got = dict(zip(written.column("row_id").to_pylist(), written.column("outputs").to_numpy()))
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in sorted(got)], [expected[k] for k in sorted(got)], rtol=1e-5)
    assert not os.path.exists(result.split_uri("train"))


@needs_taxi
def test_unlabelled_rows_get_the_same_predictions(taxi_model, tmp_path):
    raw, model = taxi_model
    evaluation = pq.read_table(raw.split_uri("eval")).drop_columns(["tips"])
    os.makedirs(tmp_path / "unlabelled" / "Split-new")
    pq.write_table(evaluation, tmp_path / "unlabelled" / "Split-new" / "part-00000-of-00001.parquet")
    unlabelled = Examples(uri=str(tmp_path / "unlabelled"), split_names=["new"])
    result = _infer(tmp_path, unlabelled, model)
    written = pq.read_table(result.split_uri("new"))
    assert written.column_names == [*evaluation.column_names, "outputs"]
    labelled = _evaluator_predictions(pq.read_table(raw.split_uri("eval")), model)
    order = np.argsort(written.column("row_id").to_numpy())
    np.testing.assert_allclose(written.column("outputs").to_numpy()[order], labelled, rtol=1e-5)


@needs_taxi
def test_a_model_not_blessed_is_skipped_with_its_reason(taxi_model, tmp_path):
    raw, model = taxi_model
    blessing = ModelBlessing(uri=str(tmp_path / "blessing"), blessed=False, reason="accuracy 0.5 < 0.9")
    result = _infer(tmp_path, raw, model, model_blessing=blessing)
    assert result.skipped and result.reason == "model not blessed (accuracy 0.5 < 0.9)"
    assert os.listdir(result.uri) == [] and result.summary() == "no predictions: model not blessed (accuracy 0.5 < 0.9)"


def _signature_model(root: Path, with_signature: bool) -> Model:
    """A SavedModel doubling a float feature 'x', with or without a serving_default over tf.Examples."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32, [0.0])})
        return {"doubled": parsed["x"] * 2.0, "pair": tf.concat([parsed["x"], -parsed["x"]], axis=1)}

    module = tf.Module()
    model = Model(uri=str(root / "model"))
    if with_signature:
        module.serve = serve
        tf.saved_model.save(module, model.serving_dir, signatures={"serving_default": serve})
    else:  # a function without an input signature: the SavedModel gets no signature at all
        module.double = tf.function(lambda x: x * 2.0)
        module.double.get_concrete_function(tf.TensorSpec([None], tf.float32))
        tf.saved_model.save(module, model.serving_dir)
    return model


def _x_examples(root: Path, rows: int = 10) -> Examples:
    os.makedirs(root / "x" / "Split-new")
    pq.write_table(pa.table({"x": np.arange(rows, dtype=np.float64), "tag": [f"r{i}" for i in range(rows)]}),
                   root / "x" / "Split-new" / "part-00000-of-00001.parquet")
    return Examples(uri=str(root / "x"), split_names=["new"])


def test_any_saved_model_with_a_serving_signature_over_tf_examples(tmp_path):
    result = _infer(tmp_path, _x_examples(tmp_path), _signature_model(tmp_path, True), key_columns=["tag"])
    written = pq.read_table(result.split_uri("new")).sort_by("tag")
    assert written.schema.field("pair").type == pa.list_(pa.float32(), 2)
    assert written.column("doubled").to_pylist() == [2.0 * i for i in range(10)]
    assert written.column("pair").to_pylist()[9] == [9.0, -9.0]


BAD = {
    "no_signature": ({}, r"^BulkInferrer: model at .* has no 'serving_default' signature$"),
    "unknown_split": ({"splits": ["test"]}, r"^BulkInferrer: parameter 'splits' names unknown splits \['test'\]"),
    "unknown_key": ({"key_columns": ["id"]}, r"^BulkInferrer: parameter 'key_columns' names \['id'\], not columns "),
    "unknown_output": ({"output_keys": ["probabilities"]},
                       r"^BulkInferrer: parameter 'output_keys' names \['probabilities'\], not outputs of the "
                       r"serving model \(outputs: doubled, pair\)$"),
    "clash": ({"key_columns": ["x"], "output_keys": ["doubled"]}, None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_are_one_line_naming_the_parameter(case, tmp_path):
    params, message = BAD[case]
    model = _signature_model(tmp_path, case != "no_signature")
    examples = _x_examples(tmp_path)
    if case == "clash":  # an input column named as an output
        table = pq.read_table(Path(examples.split_uri("new"), "part-00000-of-00001.parquet"))
        pq.write_table(table.append_column("doubled", table.column("x")),
                       Path(examples.split_uri("new"), "part-00000-of-00001.parquet"))
        params, message = {}, r"^BulkInferrer: serving output\(s\) \['doubled'\] are also input columns"
    with pytest.raises(ComponentError, match=message):
        _infer(tmp_path, examples, model, **params)


@needs_taxi
def test_on_an_object_store_it_reads_and_writes_the_store_itself(taxi_model, tmp_path, s3):  # noqa: F811
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from sluice.components.io import files
    from tests.orchestration.test_object_store import make_bucket

    raw, model = taxi_model
    local = _infer(tmp_path, raw, model, splits=["eval"], key_columns=["row_id"])
    endpoint, args = s3
    FileSystems.set_options(PipelineOptions(args))  # every Beam pipeline made sets them again
    bucket = f"s3://{make_bucket(endpoint)}"
    files.upload_dir(raw.uri, f"{bucket}/examples")
    files.upload_dir(model.uri, f"{bucket}/model")
    remote = InferenceResult(uri=f"{bucket}/inference")
    run_bulk_inferrer(examples=Examples(uri=f"{bucket}/examples", split_names=["eval"]),
                      model=Model(uri=f"{bucket}/model"), inference_result=remote,
                      ctx=ExecutionContext(beam_pipeline_args=args), key_columns=["row_id"])
    assert remote.rows == local.rows == 1000
    written = files.list_folder(remote.uri)
    assert written and all(f.startswith("Split-eval/part-") for f in written), written
    copy = files.local_copy(remote.uri)
    got = pq.read_table(os.path.join(copy, "Split-eval")).sort_by("row_id")
    expected = pq.read_table(local.split_uri("eval")).sort_by("row_id")
    np.testing.assert_allclose(got.column("outputs").to_numpy(), expected.column("outputs").to_numpy(), rtol=1e-6)
