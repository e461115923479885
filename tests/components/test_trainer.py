"""Tests of the Trainer: the Parquet input pipeline, run_fn contract, strategies, MLflow logging.

Tests that configure TF devices or clusters run in subprocesses so they do not
clash with the TF state of this process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.components import trainer as trainer_module
from sluice.components.artifacts import Examples, Model, ModelRun
from sluice.components.sdk import ComponentError, ExecutionContext
from sluice.components.trainer import parquet_dataset, run_trainer
from sluice.components.training import data as trainer_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A small penguin classifier over raw numeric columns, with a tf.Example serving signature.
PENGUIN_MODULE = textwrap.dedent('''
    import tensorflow as tf

    FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    LABEL = "species_id"

    def run_fn(fn_args):
        batch = (fn_args.custom_config or {}).get("batch_size", 32)
        train = fn_args.dataset(fn_args.train_files, batch, label_key=LABEL, feature_keys=FEATURES)
        evaluation = fn_args.dataset(fn_args.eval_files, batch, label_key=LABEL, feature_keys=FEATURES)
        with fn_args.strategy.scope():
            inputs = {f: tf.keras.Input(shape=(), name=f, dtype=tf.float32) for f in FEATURES}
            x = tf.keras.layers.Concatenate()([tf.keras.layers.Reshape((1,))(inputs[f]) for f in FEATURES])
            x = tf.keras.layers.Normalization(mean=[44.0, 17.0, 200.0, 4200.0],
                                              variance=[30.0, 4.0, 200.0, 640000.0])(x)
            x = tf.keras.layers.Dense(16, activation="relu")(x)
            outputs = tf.keras.layers.Dense(3, activation="softmax")(x)
            model = tf.keras.Model(inputs, outputs)
            model.compile(tf.keras.optimizers.Adam((fn_args.hyperparameters or {}).get("learning_rate", 0.02)),
                          "sparse_categorical_crossentropy", metrics=["accuracy"])
        epochs = 2
        model.fit(train, steps_per_epoch=max(1, fn_args.train_steps // epochs), epochs=epochs,
                  validation_data=evaluation, validation_steps=fn_args.eval_steps,
                  callbacks=fn_args.callbacks(), verbose=0)
        spec = {f: tf.io.VarLenFeature(tf.float32) for f in FEATURES}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(examples):
            parsed = tf.io.parse_example(examples, spec)
            dense = {f: tf.reshape(tf.sparse.to_dense(parsed[f]), [-1]) for f in FEATURES}
            return {"probabilities": model(dense)}

        module = tf.Module()
        module.model = model
        module.serve = serve
        tf.saved_model.save(module, fn_args.serving_model_dir, signatures={"serving_default": serve})
''')


def _penguin_examples(root) -> Examples:
    from palmerpenguins import load_penguins

    frame = load_penguins().dropna()
    frame["species_id"] = frame["species"].map({"Adelie": 0, "Chinstrap": 1, "Gentoo": 2}).astype("int64")
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    cut = int(len(frame) * 0.75)
    for split, part in (("train", table.slice(0, cut)), ("eval", table.slice(cut))):
        os.makedirs(os.path.join(root, f"Split-{split}"))
        pq.write_table(part, os.path.join(root, f"Split-{split}", "part-00000-of-00001.parquet"))
    return Examples(uri=str(root), split_names=["train", "eval"])


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    return _penguin_examples(tmp_path_factory.mktemp("penguins"))


@pytest.fixture(scope="module")
def module_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("module") / "penguin_module.py"
    path.write_text(PENGUIN_MODULE)
    return str(path)


def _outputs(tmp_path):
    (tmp_path / "model").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    return Model(uri=str(tmp_path / "model")), ModelRun(uri=str(tmp_path / "run"))


def _predict(serving_dir, examples: Examples, split="eval"):
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    table = pq.read_table(os.path.join(examples.split_uri(split), "part-00000-of-00001.parquet"))
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    lists = [pa.ListArray.from_arrays(pa.array(np.arange(table.num_rows + 1, dtype=np.int32)),
                                      table.column(c).combine_chunks().cast(pa.float32())) for c in columns]
    serialized = RecordBatchToExamplesEncoder().encode(pa.RecordBatch.from_arrays(lists, columns))
    loaded = tf.saved_model.load(serving_dir)
    probabilities = loaded.signatures["serving_default"](examples=tf.constant(serialized))["probabilities"]
    accuracy = float(np.mean(np.argmax(probabilities.numpy(), 1) == table.column("species_id").to_numpy()))
    return probabilities.numpy(), accuracy


# --- parquet_dataset ---------------------------------------------------------


def _synthetic(tmp_path, files=2, rows=50):
    paths = []
    for i in range(files):
        ids = np.arange(i * rows, (i + 1) * rows)
        table = pa.table({
            "id": pa.array(ids, pa.int64()),
            "x": pa.array([None if v % 7 == 0 else float(v) for v in ids], pa.float64()),
            "s": pa.array([None if v % 5 == 0 else f"v{v}" for v in ids], pa.large_string()),
            "label": pa.array(ids % 2, pa.int64()),
        })
        path = tmp_path / f"part-{i:05d}-of-{files:05d}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("streaming", [False, True])
def test_parquet_dataset_reads_every_row_once_without_repeat(tmp_path, monkeypatch, streaming):
    if streaming:
        monkeypatch.setattr(trainer_data, "IN_MEMORY_ROW_LIMIT", 0)
        monkeypatch.setattr(trainer_data, "STREAM_CHUNK_ROWS", 16)
    files = _synthetic(tmp_path)
    dataset = parquet_dataset(files, batch_size=8, label_key="label", shuffle=True, repeat=False, seed=1)
    ids, xs, labels, strings = [], [], [], []
    for features, label in dataset:
        assert set(features) == {"id", "x", "s"}
        ids.extend(features["id"].numpy())
        xs.extend(features["x"].numpy())
        strings.extend(features["s"].numpy())
        labels.extend(label.numpy())
    ids = np.array(ids)
    assert sorted(ids) == list(range(100))
    assert list(ids) != list(range(100))  # shuffled
    np.testing.assert_array_equal(np.array(labels), ids % 2)
    np.testing.assert_allclose(np.array(xs), np.where(ids % 7 == 0, 0.0, ids))  # nulls -> 0
    assert [s.decode() for s in strings] == ["" if v % 5 == 0 else f"v{v}" for v in ids]


@pytest.mark.parametrize("streaming", [False, True])
def test_parquet_dataset_repeats_with_full_batches(tmp_path, monkeypatch, streaming):
    if streaming:
        monkeypatch.setattr(trainer_data, "IN_MEMORY_ROW_LIMIT", 0)
        monkeypatch.setattr(trainer_data, "STREAM_CHUNK_ROWS", 16)
    files = _synthetic(tmp_path)
    dataset = parquet_dataset(files, batch_size=30, feature_keys=["x"], shuffle=True)
    batches = list(dataset.take(10))  # 300 rows from 100: crosses epochs
    assert all(set(b) == {"x"} and b["x"].shape == (30,) and b["x"].dtype.name == "float32"
               for b in batches)


def test_streamed_dataset_takes_its_signature_from_the_first_file_with_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_data, "IN_MEMORY_ROW_LIMIT", 0)
    files = _synthetic(tmp_path, files=2)
    empty = tmp_path / "part-empty.parquet"
    pq.write_table(pq.read_table(files[0]).slice(0, 0), empty)
    dataset = parquet_dataset([str(empty), *files], batch_size=8, label_key="label", repeat=False)
    assert sorted(np.concatenate([f["id"].numpy() for f, _ in dataset])) == list(range(100))


def test_parquet_dataset_missing_label_names_label_and_file(tmp_path):
    files = _synthetic(tmp_path, files=1)
    with pytest.raises(ComponentError, match=r"label 'tips' is not a column of .*part-00000-of-00001\.parquet"):
        parquet_dataset(files, 8, label_key="tips")


def _record_stream_decisions(monkeypatch) -> list[bool]:
    decisions = []
    real = trainer_data._should_stream

    def recording(*args):
        decisions.append(real(*args))
        return decisions[-1]

    monkeypatch.setattr(trainer_data, "_should_stream", recording)
    return decisions


def test_parquet_dataset_streams_when_far_more_rows_than_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_data, "STREAM_SHUFFLE_ROWS", 32)
    monkeypatch.setattr(trainer_data, "STREAM_CHUNK_ROWS", 8)
    decisions = _record_stream_decisions(monkeypatch)
    ids = np.arange(200)
    path = tmp_path / "part-00000-of-00001.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "label": pa.array(ids % 2, pa.int64())}),
                   path, row_group_size=20)  # 10 row groups
    dataset = parquet_dataset([str(path)], batch_size=8, label_key="label", seed=2, rows_needed=16)
    seen = np.concatenate([f["id"].numpy() for f, _ in dataset.take(50)])  # two passes of 200 rows
    assert decisions == [True]
    first, second = seen[:200], seen[200:]
    assert sorted(first) == list(range(200)) and sorted(second) == list(range(200))  # each row once a pass
    assert list(first) != list(second)  # a new order each pass
    assert len(set(seen[:32] // 20)) > 1  # a shuffle buffer mixes several row groups
    # Small inputs, or inputs not much bigger than what is needed, stay in memory.
    parquet_dataset([str(path)], batch_size=8, label_key="label", rows_needed=100)
    monkeypatch.setattr(trainer_data, "STREAM_SHUFFLE_ROWS", 1000)
    parquet_dataset([str(path)], batch_size=8, label_key="label", rows_needed=16)
    assert decisions == [True, False, False]


def test_parquet_dataset_streams_above_the_memory_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_data, "IN_MEMORY_BYTE_LIMIT", 100)
    decisions = _record_stream_decisions(monkeypatch)
    dataset = parquet_dataset(_synthetic(tmp_path), batch_size=8, label_key="label", repeat=False)
    assert decisions == [True]
    assert sorted(np.concatenate([f["id"].numpy() for f, _ in dataset])) == list(range(100))


def test_fn_args_datasets_know_the_rows_their_steps_need(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_data, "STREAM_SHUFFLE_ROWS", 10)
    decisions = _record_stream_decisions(monkeypatch)
    train, evaluation = _synthetic(tmp_path, files=2)[:1], _synthetic(tmp_path, files=2)[1:]
    fn_args = trainer_module.FnArgs(
        train_files=train, eval_files=evaluation, transform_output=None, schema_path=None,
        serving_model_dir=str(tmp_path), model_run_dir=str(tmp_path), train_steps=2, eval_steps=100,
        custom_config={}, hyperparameters={}, base_model=None, strategy=None,
        data_accessor=trainer_module.DataAccessor({tuple(train): 2, tuple(evaluation): 100}))
    fn_args.dataset(train, 4, label_key="label")            # 50 rows > 4 x 2 x 4: streamed
    fn_args.dataset(evaluation, 4, label_key="label")       # 50 rows < 4 x 100 x 4: in memory
    options = trainer_module.DatasetOptions(batch_size=4, label_key="label")
    fn_args.data_accessor.tf_dataset_factory(train, options)
    fn_args.data_accessor.tf_dataset_factory(evaluation, options)
    assert decisions == [True, False, True, False]


# --- run_trainer -------------------------------------------------------------


def test_module_without_run_fn_names_the_file(tmp_path, penguins):
    bad = tmp_path / "no_run_fn.py"
    bad.write_text("def train(fn_args):\n    pass\n")
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"no_run_fn\.py defines no function 'run_fn'"):
        run_trainer(examples=penguins, model=model, model_run=model_run, module_file=str(bad),
                    train_steps=10, ctx=ExecutionContext())


def test_module_with_syntax_error_names_file_and_line(tmp_path, penguins):
    bad = tmp_path / "broken.py"
    bad.write_text("def run_fn(fn_args):\n    return (\n")
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"broken\.py, line \d+"):
        run_trainer(examples=penguins, model=model, model_run=model_run, module_file=str(bad),
                    train_steps=10, ctx=ExecutionContext())


def test_label_missing_from_data_names_label_and_file(tmp_path, penguins):
    module = tmp_path / "wrong_label.py"
    module.write_text(PENGUIN_MODULE.replace('LABEL = "species_id"', 'LABEL = "tips"'))
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"label 'tips' is not a column of .*Split-train"):
        run_trainer(examples=penguins, model=model, model_run=model_run, module_file=str(module),
                    train_steps=10, ctx=ExecutionContext())


def test_trains_exports_and_logs_to_mlflow(tmp_path, penguins, module_file):
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("trainer-test")).info.run_id
    model, model_run = _outputs(tmp_path)
    ctx = ExecutionContext(tracking_uri=tracking_uri, mlflow_run_id=run_id)
    run_trainer(examples=penguins, model=model, model_run=model_run, module_file=module_file,
                train_steps=200, eval_steps=2, hyperparameters={"learning_rate": 0.02},
                custom_config={"batch_size": 32}, ctx=ctx)

    _, accuracy = _predict(model.serving_dir, penguins)
    assert accuracy > 0.9
    assert os.listdir(os.path.join(model_run.uri, "logs"))  # TensorBoard event files
    run = client.get_run(run_id)
    assert run.data.params["hp.learning_rate"] == "0.02"
    assert run.data.params["config.batch_size"] == "32"
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [0, 1]
    assert "val_accuracy" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run_id, "model")]
    assert "model/saved_model.pb" in artifacts


def test_run_fn_raising_names_the_module_line(tmp_path, penguins):
    module = tmp_path / "buggy.py"
    module.write_text("def run_fn(fn_args):\n    x = {}\n    return x['missing']\n")
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"run_fn in .*buggy\.py, line 3 failed: KeyError: 'missing'"):
        run_trainer(examples=penguins, model=model, model_run=model_run, module_file=str(module),
                    train_steps=10, ctx=ExecutionContext())


def test_run_fn_that_saves_nothing_is_an_error(tmp_path, penguins):
    module = tmp_path / "lazy.py"
    module.write_text("def run_fn(fn_args):\n    pass\n")
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"lazy\.py saved no SavedModel"):
        run_trainer(examples=penguins, model=model, model_run=model_run, module_file=str(module),
                    train_steps=10, ctx=ExecutionContext())


def test_run_fn_by_dotted_name_gets_tfx_fn_args(tmp_path, penguins, monkeypatch):
    # A package beside nothing: importable from sys.path, as TFX's run_fn= expects.
    (tmp_path / "sluice_dotted_pkg").mkdir()
    (tmp_path / "sluice_dotted_pkg" / "__init__.py").write_text("")
    (tmp_path / "sluice_dotted_pkg" / "train.py").write_text(
        "def run_fn(fn_args):\n"
        "    raise RuntimeError(repr((fn_args.working_dir, fn_args.eval_model_dir, fn_args.schema_file,\n"
        "                             fn_args.custom_config, fn_args.data_accessor.data_view_decode_fn)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"run_fn in .*train\.py, line 2 failed: RuntimeError: "
                                             r"\(None, None, None, \{'k': 1\}, None\)"):
        run_trainer(examples=penguins, model=model, model_run=model_run, run_fn="sluice_dotted_pkg.train.run_fn",
                    train_steps=10, custom_config={"k": 1}, ctx=ExecutionContext())


def test_custom_config_and_hyperparameters_are_none_when_not_given_as_in_tfx(tmp_path, penguins):
    module = tmp_path / "peek.py"
    module.write_text("def run_fn(fn_args):\n"
                      "    raise RuntimeError(repr((fn_args.custom_config, fn_args.hyperparameters)))\n")
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=r"RuntimeError: \(None, None\)"):
        run_trainer(examples=penguins, model=model, model_run=model_run, module_file=str(module),
                    train_steps=10, ctx=ExecutionContext())


@pytest.mark.parametrize("given, message", [
    ({}, r"^Trainer: set exactly one of module_file or run_fn$"),
    ({"module_file": "m.py", "run_fn": "a.run_fn"}, r"^Trainer: set exactly one of module_file or run_fn$"),
    ({"run_fn": "run_fn"}, r"^Trainer: run_fn 'run_fn' must be 'module.function'$"),
    ({"run_fn": "sluice_no_such_module.run_fn"}, r"^Trainer: run_fn 'sluice_no_such_module.run_fn': cannot import"),
])
def test_module_file_or_run_fn_errors_are_one_line(tmp_path, penguins, given, message):
    model, model_run = _outputs(tmp_path)
    with pytest.raises(ComponentError, match=message) as raised:
        run_trainer(examples=penguins, model=model, model_run=model_run, train_steps=10, ctx=ExecutionContext(),
                    **given)
    assert "\n" not in str(raised.value)


# --- strategies, each in its own process --------------------------------------

_SUBPROCESS = textwrap.dedent('''
    import json, os, sys
    config = json.loads(sys.argv[1])
    if config.get("logical_cpus"):
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * config["logical_cpus"])
    from sluice.components.artifacts import Examples, Model, ModelRun
    from sluice.components.sdk import ComponentError
    from sluice.components.trainer import run_trainer, FnArgs
    # The runners apply the Keras workarounds for distribution strategies; this calls the executor directly.
    from sluice.orchestration.runtime import keras as keras_runtime
    keras_runtime.apply()
    seen = {}
    import sluice.components.trainer.component as t
    original = t.make_strategy
    def spy(*args, **kwargs):
        strategy = original(*args, **kwargs)
        seen["strategy"] = type(strategy).__name__
        seen["replicas"] = strategy.num_replicas_in_sync
        return strategy
    t.make_strategy = spy
    try:
        run_trainer(examples=Examples(uri=config["examples"], split_names=["train", "eval"]),
                    model=Model(uri=config["model"]), model_run=ModelRun(uri=config["run"]),
                    module_file=config["module_file"], train_steps=config["train_steps"], eval_steps=2,
                    distribution=config["distribution"], cluster_spec=config.get("cluster_spec"))
        seen["ok"] = True
    except ComponentError as exc:
        seen["error"] = str(exc)
    print("RESULT " + json.dumps(seen), flush=True)
''')


def _start(tmp_path, name, **config):
    for key in ("model", "run"):
        config[key] = str(tmp_path / f"{name}-{key}")
        os.makedirs(config[key])
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, "-c", _SUBPROCESS, json.dumps(config)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), config


def _result(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_mirrored_over_two_logical_cpus(tmp_path, penguins, module_file):
    process, config = _start(tmp_path, "mirrored", examples=penguins.uri, module_file=module_file,
                             train_steps=100, distribution="mirrored", logical_cpus=2)
    result = _result(process)
    assert result == {"strategy": "MirroredStrategy", "replicas": 2, "ok": True}
    _, accuracy = _predict(os.path.join(config["model"], "Format-Serving"), penguins)
    assert accuracy > 0.8


def test_tpu_without_a_tpu_is_a_clear_error(tmp_path, penguins, module_file):
    process, _ = _start(tmp_path, "tpu", examples=penguins.uri, module_file=module_file,
                        train_steps=10, distribution="tpu")
    result = _result(process)
    assert result["error"].startswith("Trainer: distribution 'tpu': no TPU found: ")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_with_two_local_workers(tmp_path, penguins, module_file):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    started = []
    for index in range(2):
        cluster_spec = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        started.append(_start(tmp_path, f"worker{index}", examples=penguins.uri, module_file=module_file,
                              train_steps=60, distribution="multi_worker", cluster_spec=cluster_spec))
    results = [_result(process) for process, _ in started]
    for result in results:
        # MultiWorkerMirroredStrategy is an alias of this class.
        assert result == {"strategy": "CollectiveAllReduceStrategy", "replicas": 2, "ok": True}
    chief_model = os.path.join(started[0][1]["model"], "Format-Serving")
    probabilities, _ = _predict(chief_model, penguins)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    # Only the chief writes the model; the other worker saved into a scratch dir, since removed.
    assert not os.listdir(started[1][1]["model"])


# --- the example pipelines' module files, after the real Transform ----------------

TAXI_CSV = os.path.join(os.path.dirname(REPO), "shared", "data", "chicago_taxi", "data.csv")
ARROW_TO_SCHEMA = {"int64": "INT", "double": "FLOAT", "string": "BYTES", "large_string": "BYTES"}


def _transformed(root, table, preprocessing_module):
    """Raw examples (rows i%3==0 are eval), then Transform with the pipeline's preprocessing."""
    from sluice.components import transform
    from sluice.components.artifacts import Schema, TransformGraph

    index = np.arange(table.num_rows)
    splits = {"train": table.filter(pa.array(index % 3 != 0)), "eval": table.filter(pa.array(index % 3 == 0))}
    for split, part in splits.items():
        os.makedirs(os.path.join(root, "raw", f"Split-{split}"))
        pq.write_table(part, os.path.join(root, "raw", f"Split-{split}", "part-00000-of-00001.parquet"))
    os.makedirs(os.path.join(root, "schema"))
    with open(os.path.join(root, "schema", "schema.pbtxt"), "w") as out:
        out.write("".join(f'feature {{ name: "{f.name}" type: {ARROW_TO_SCHEMA[str(f.type)]} }}\n'
                          for f in table.schema))
    outputs = {}
    for name, cls in (("transform_graph", TransformGraph), ("transformed_examples", Examples),
                      ("post_transform_schema", Schema)):
        os.makedirs(os.path.join(root, name))
        outputs[name] = cls(uri=os.path.join(root, name))
    raw = Examples(uri=os.path.join(root, "raw"), split_names=["train", "eval"])
    transform.run_transform(examples=raw, schema=Schema(uri=os.path.join(root, "schema")),
                            module_file=os.path.join(REPO, "pipelines", preprocessing_module, "preprocessing.py"),
                            **outputs)
    return raw, outputs["transformed_examples"], outputs["transform_graph"]


def _train_and_evaluate(tmp_path, raw, transformed, graph, pipeline, train_steps, eval_steps, **evaluator_params):
    from sluice.components.artifacts import ModelBlessing, ModelEvaluation
    from sluice.components.evaluator import evaluate_model

    model, model_run = _outputs(tmp_path)
    started = time.perf_counter()
    run_trainer(examples=transformed, transform_graph=graph, model=model, model_run=model_run,
                module_file=os.path.join(REPO, "pipelines", pipeline, "model.py"),
                train_steps=train_steps, eval_steps=eval_steps, ctx=ExecutionContext())
    seconds = time.perf_counter() - started
    for name in ("evaluation", "blessing"):
        (tmp_path / name).mkdir()
    evaluation = ModelEvaluation(uri=str(tmp_path / "evaluation"))
    blessing = ModelBlessing(uri=str(tmp_path / "blessing"))
    evaluate_model(examples=raw, model=model, evaluation=evaluation, blessing=blessing,
                   ctx=ExecutionContext(), **evaluator_params)
    with open(evaluation.path("metrics.json")) as fh:
        return json.load(fh), blessing, seconds


@pytest.mark.slow
def test_taxi_wide_and_deep_beats_the_payment_type_rule_threshold(tmp_path):
    import pyarrow.csv as pacsv

    raw, transformed, graph = _transformed(str(tmp_path / "data"), pacsv.read_csv(TAXI_CSV), "taxi")
    metrics, blessing, seconds = _train_and_evaluate(
        tmp_path, raw, transformed, graph, "taxi", train_steps=1000, eval_steps=150,
        label_key="tips_xf", prediction_key="outputs", slicing_features=["payment_type"],
        thresholds={"binary_accuracy": {"lower_bound": 0.88}})
    assert metrics["overall"]["example_count"] == 5001
    assert metrics["overall"]["binary_accuracy"] >= 0.88, metrics["overall"]
    assert blessing.blessed
    assert seconds < 60


def test_penguin_dnn_learns_the_species(tmp_path, monkeypatch):
    from palmerpenguins import load_penguins

    table = pa.Table.from_pandas(load_penguins(), preserve_index=False)
    raw, transformed, graph = _transformed(str(tmp_path / "data"), table, "penguin")
    from sluice.components.tft import TransformOutput

    species = [s.decode() for s in TransformOutput(graph).vocabulary_by_name("species")]
    metrics, blessing, _ = _train_and_evaluate(
        tmp_path, raw, transformed, graph, "penguin", train_steps=300, eval_steps=5,
        label_key="species_xf", prediction_key="probabilities", problem="multiclass",
        slicing_features=["island"], thresholds={"accuracy": {"lower_bound": 0.9}})
    assert metrics["overall"]["accuracy"] >= 0.9, metrics["overall"]
    assert blessing.blessed
    # The raw string label with the model's vocabulary gives the same accuracy.
    again = _evaluate_again(tmp_path / "again", raw, label_key="species", problem="multiclass",
                            label_vocabulary=species)
    assert again["overall"]["accuracy"] == pytest.approx(metrics["overall"]["accuracy"])
    # The Evaluator fed the raw columns to evaluate_raw_features; through serialized
    # tf.Examples and the serving signatures the metrics are the same.
    from sluice.components.evaluator import predict as predict_module

    assert predict_module.raw_function(tf_saved_model_load(tmp_path / "model")) is not None
    monkeypatch.setattr(predict_module, "raw_function", lambda loaded: None)
    serialized = _evaluate_again(tmp_path / "serialized", raw, label_key="species_xf",
                                 prediction_key="probabilities", problem="multiclass", slicing_features=["island"])
    def same(got, expected):  # undefined metrics (None: a class never predicted) match exactly
        assert {k for k, v in got.items() if v is None} == {k for k, v in expected.items() if v is None}
        assert {k: v for k, v in got.items() if v is not None} == pytest.approx(
            {k: v for k, v in expected.items() if v is not None}, rel=1e-6)

    same(serialized["overall"], metrics["overall"])
    assert serialized["slices"].keys() == metrics["slices"].keys()
    for name, values in metrics["slices"].items():
        same(serialized["slices"][name], values)


def _evaluate_again(folder, raw, **evaluator_params) -> dict:
    """Evaluates the model trained under ``folder``'s parent again; returns its metrics.json."""
    from sluice.components.artifacts import ModelBlessing, ModelEvaluation
    from sluice.components.evaluator import evaluate_model

    (folder / "e").mkdir(parents=True)
    (folder / "b").mkdir()
    evaluate_model(examples=raw, model=Model(uri=str(folder.parent / "model")),
                   evaluation=ModelEvaluation(uri=str(folder / "e")), blessing=ModelBlessing(uri=str(folder / "b")),
                   ctx=ExecutionContext(), **evaluator_params)
    return json.loads((folder / "e" / "metrics.json").read_text())


def tf_saved_model_load(model_dir):
    import tensorflow as tf

    return tf.saved_model.load(Model(uri=str(model_dir)).serving_dir)


def test_penguin_warm_start_from_a_base_model(tmp_path):
    from palmerpenguins import load_penguins

    table = pa.Table.from_pandas(load_penguins(), preserve_index=False)
    raw, transformed, graph = _transformed(str(tmp_path / "data"), table, "penguin")
    module = os.path.join(REPO, "pipelines", "penguin", "model.py")
    base, base_run = _outputs(tmp_path / "base")
    ctx = ExecutionContext()
    run_trainer(examples=transformed, transform_graph=graph, model=base, model_run=base_run, module_file=module,
                train_steps=200, eval_steps=5, ctx=ctx)
    assert 0.8 < ctx.metrics["val_accuracy"] <= 1.0 and "loss" in ctx.metrics
    # With a zero learning rate, a warm-started model keeps the base model's weights exactly.
    warm, warm_run = _outputs(tmp_path / "warm")
    run_trainer(examples=transformed, transform_graph=graph, base_model=base, model=warm, model_run=warm_run,
                module_file=module, train_steps=2, eval_steps=1, hyperparameters={"learning_rate": 0.0},
                ctx=ExecutionContext())
    import tensorflow as tf

    serialized = [tf.train.Example(features=tf.train.Features(feature={
        "bill_length_mm": tf.train.Feature(float_list=tf.train.FloatList(value=[45.0])),
        "island": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"Biscoe"]))})).SerializeToString()]
    predict = {name: tf.saved_model.load(m.serving_dir).signatures["serving_default"] for name, m in
               (("base", base), ("warm", warm))}
    base_out = predict["base"](examples=tf.constant(serialized))["probabilities"].numpy()
    warm_out = predict["warm"](examples=tf.constant(serialized))["probabilities"].numpy()
    np.testing.assert_allclose(warm_out, base_out, rtol=1e-6)


def test_component_definitions_validate_parameters_without_importing_tensorflow():
    code = textwrap.dedent('''
        import sys
        from sluice.components.sdk import DefinitionError
        from sluice.components.trainer import Trainer
        from sluice.components.evaluator import Evaluator, MetricThreshold
        from sluice.components.pusher import Pusher
        heavy = [m for m in ("tensorflow", "apache_beam", "pyarrow", "mlflow") if m in sys.modules]
        assert not heavy, heavy
        try:
            Trainer.parameters["distribution"].validate("gpu", "component Trainer")
        except DefinitionError as exc:
            print("distribution:", exc)
        thresholds = Evaluator.parameters["thresholds"]
        print("thresholds:", thresholds.validate({"auc": {"lower_bound": 0.7}}, "component Evaluator"))
        try:
            thresholds.validate({"auc": {"lower_bond": 0.7}}, "component Evaluator")
        except DefinitionError as exc:
            print("typo:", exc)
        print("inputs:", sorted(Trainer.inputs), sorted(Evaluator.inputs), sorted(Pusher.inputs))
    ''')
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "distribution: component Trainer: parameter 'distribution' expects" in out
    assert "thresholds: {'auc': MetricThreshold(lower_bound=0.7" in out
    assert "typo: component Evaluator: parameter 'thresholds'['auc']['lower_bond']" in out
    assert ("inputs: ['base_model', 'examples', 'hyperparameters', 'schema', 'transform_graph'] "
            "['baseline_model', 'examples', 'model'] ['examples', 'model', 'model_blessing']") in out
