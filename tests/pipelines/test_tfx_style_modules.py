"""TFX users' module files run on Sluice with their import lines changed, and nothing else.

``tfx_style/tfx_original/`` holds module files of our own written as TFX's examples are
(taxi native Keras; penguin with a helper module beside it and a ``tuner_fn``; image-like
fixed-length float lists; token lists), importing ``tensorflow_transform`` and ``tfx``.
``tfx_style/sluice/`` holds the same files importing ``from sluice import tft, tfx``.
The first test checks that the two differ in import lines only; the others run each Sluice
copy end to end (ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer, a few
steps) and call the exported model's ``serving_default`` on raw tf.Examples.
"""

from __future__ import annotations

import ast
import csv
import glob
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.conftest import SHARED_DATA

STYLE = Path(__file__).resolve().parent / "tfx_style"
ORIGINAL, SLUICE = STYLE / "tfx_original", STYLE / "sluice"
MODULES = ["taxi_native_keras.py", "penguin_keras.py", "penguin_base.py", "mnist_keras.py", "imdb_keras.py"]
# The only imports a TFX user changes: name bound -> (TFX's source, Sluice's source).
RENAMED = {"tft": ("tensorflow_transform", "sluice.tft"), "tfx": ("tfx.v1", "sluice.tfx")}


# --- the two copies differ in import lines only -------------------------------------------


def _split_imports(path: Path) -> tuple[dict[str, str], list[str]]:
    """``({bound name: imported thing}, the other lines)`` of a module; blank runs become one blank."""
    source = path.read_text()
    tree = ast.parse(source)
    bound, import_lines = {}, set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            import_lines.update(range(node.lineno, node.end_lineno + 1))
            for alias in node.names:
                name = alias.asname or alias.name.partition(".")[0]
                bound[name] = f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
    rest = []
    for number, line in enumerate(source.splitlines(), start=1):
        if number in import_lines or (not line.strip() and rest and not rest[-1].strip()):
            continue
        rest.append(line)
    return bound, rest


@pytest.mark.parametrize("name", MODULES)
def test_sluice_copy_differs_from_its_tfx_original_in_import_lines_only(name):
    original_imports, original_rest = _split_imports(ORIGINAL / name)
    sluice_imports, sluice_rest = _split_imports(SLUICE / name)
    assert sluice_rest == original_rest
    assert "tensorflow_transform" in original_imports.values()  # really a TFX-style original
    for bound, (tfx_source, sluice_source) in RENAMED.items():
        if bound in original_imports:
            assert (original_imports.pop(bound), sluice_imports.pop(bound)) == (tfx_source, sluice_source)
    assert sluice_imports == original_imports  # tensorflow, keras_tuner, tfx_bsl's tfxio, helpers: unchanged


def test_penguin_module_imports_keras_tuner_before_tensorflow():
    bound, _ = _split_imports(SLUICE / "penguin_keras.py")
    assert list(bound)[:1] == ["keras_tuner"]


# --- end to end ------------------------------------------------------------------------------


def _run(root: Path, example_gen, module: str, train_steps: int, eval_steps: int = 3, **trainer_args):
    """ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer over ``module``; the run's outputs."""
    from sluice.components.schema_gen import SchemaGen
    from sluice.components.statistics_gen import StatisticsGen
    from sluice.components.trainer import Trainer
    from sluice.components.transform import Transform
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
    transform = Transform(examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
                          module_file=str(SLUICE / module))
    trainer = Trainer(examples=transform.outputs["transformed_examples"],
                      transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
                      module_file=str(SLUICE / module), train_steps=train_steps, eval_steps=eval_steps,
                      **trainer_args)
    pipeline = Pipeline(name=module.removesuffix(".py").replace("_", "-"),
                        components=[example_gen, statistics_gen, schema_gen, transform, trainer],
                        pipeline_root=str(root / "root"))
    result = run_pipeline(pipeline)
    assert result.ok, result.error
    outputs = result.outputs(trainer.id)
    return {"graph": result.outputs(transform.id)["transform_graph"][0].uri,
            "serving_dir": outputs["model"][0].serving_dir, "model_run": outputs["model_run"][0].uri}


def _serialize(rows: list[dict], raw_spec: dict, leave_out: str) -> list[bytes]:
    """Raw rows as serialized tf.Examples, typed by the graph's raw feature spec."""
    import tensorflow as tf

    examples = []
    for row in rows:
        example = tf.train.Example()
        for name, value in row.items():
            if name == leave_out or name not in raw_spec or value is None:
                continue
            values = value if isinstance(value, list) else [value]
            feature = example.features.feature[name]
            if raw_spec[name].dtype == tf.string:
                feature.bytes_list.value.extend(str(v).encode() for v in values)
            elif raw_spec[name].dtype == tf.int64:
                feature.int64_list.value.extend(int(v) for v in values)
            else:
                feature.float_list.value.extend(float(v) for v in values)
        examples.append(example.SerializeToString())
    return examples


def _serve(run: dict, rows: list[dict], label: str) -> dict:
    """The model's ``serving_default`` on raw tf.Examples of ``rows`` (label left out)."""
    import tensorflow as tf

    from sluice import tft

    output = tft.TFTransformOutput(run["graph"])
    serve = tf.saved_model.load(run["serving_dir"]).signatures["serving_default"]
    answer = serve(examples=tf.constant(_serialize(rows, output.raw_feature_spec(), label)))
    return {name: value.numpy() for name, value in answer.items()}


def _assert_tensorboard_logs(run: dict) -> None:
    assert glob.glob(os.path.join(run["model_run"], "**", "events.out.tfevents.*"), recursive=True)


def _write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# taxi ---------------------------------------------------------------------------------------

TAXI_CSV = SHARED_DATA / "chicago_taxi" / "data.csv"


@pytest.mark.slow
@pytest.mark.skipif(not TAXI_CSV.is_file(), reason="no ../shared/data")
def test_taxi_native_keras_module_trains_and_serves_raw_examples(tmp_path):
    from sluice.components.example_gen import CsvExampleGen

    table = pacsv.read_csv(TAXI_CSV).slice(0, 1500)
    pacsv.write_csv(table, _mkdir(tmp_path / "data") / "data.csv")
    run = _run(tmp_path, CsvExampleGen(input_base=str(tmp_path / "data")), "taxi_native_keras.py", train_steps=100)
    rows = table.take(list(range(0, 1500, 5))).to_pylist()
    probability = _serve(run, rows, "tips")["outputs"].reshape(-1)
    assert probability.shape == (300,) and ((probability >= 0) & (probability <= 1)).all()
    big_tip = np.array([(r["tips"] or 0) > 0.2 * (r["fare"] or 0) for r in rows])
    # Trained: big tippers (card payments mostly; cash fares record no tip) score far higher.
    gap = probability[big_tip].mean() - probability[~big_tip].mean()
    assert gap > 0.2, (gap, probability[:20])
    _assert_tensorboard_logs(run)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# penguin ------------------------------------------------------------------------------------


def _penguin_rows() -> list[dict]:
    """The palmerpenguins rows with every value present (so each raw feature is dense [batch, 1])."""
    from sluice.pipelines.penguin.pipeline import penguins_data_dir

    with open(os.path.join(penguins_data_dir(), "penguins.csv")) as fh:
        rows = [r for r in csv.DictReader(fh) if "NA" not in r.values() and "" not in r.values()]
    return rows


def _load_module(path: Path, name: str):
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


@pytest.fixture(scope="module")
def penguin_run(tmp_path_factory):
    import keras_tuner

    from sluice.components.example_gen import CsvExampleGen

    root = tmp_path_factory.mktemp("penguin")
    rows = _penguin_rows()
    _write_csv(root / "data" / "penguins.csv", rows)
    # The Trainer gets hyperparameters as a Tuner would hand them over: a KerasTuner config.
    hp = keras_tuner.HyperParameters()
    hp.Fixed("learning_rate", 3e-2)
    hp.Fixed("hidden_layers", 2)
    hp.Fixed("units", 16)
    run = _run(root, CsvExampleGen(input_base=str(root / "data")), "penguin_keras.py", train_steps=120,
               hyperparameters=hp.get_config())
    return root, rows, run


@pytest.mark.slow
def test_penguin_module_with_a_helper_beside_it_trains_and_serves_raw_examples(penguin_run):
    from sluice import tft

    _, rows, run = penguin_run
    output = tft.TFTransformOutput(run["graph"])
    species = Path(output.vocabulary_file_by_name("species")).read_text().splitlines()
    assert sorted(species) == ["Adelie", "Chinstrap", "Gentoo"]
    # island is a one-hot vector output: its post-transform shape is recorded.
    assert output.transformed_feature_spec()["island_xf"].shape == [4]
    sample = rows[::5]
    answer = _serve(run, sample, "species")
    probabilities = answer["probabilities"]
    assert probabilities.shape == (len(sample), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    truth = np.array([species.index(r["species"]) for r in sample])
    assert np.mean(probabilities.argmax(axis=1) == truth) >= 0.85
    _assert_tensorboard_logs(run)


@pytest.mark.slow
def test_penguin_tuner_fn_searches_over_the_transformed_examples(penguin_run, tmp_path):
    import keras_tuner

    from sluice.components.artifacts import Examples, HyperParameters, TransformGraph
    from sluice.components.tuner import run_tuner

    root, _, run = penguin_run
    folders = sorted(glob.glob(str(root / "root" / "**" / "transformed_examples" / "*" / "Split-train"),
                               recursive=True))
    assert len(folders) == 1, folders
    transformed = Examples(uri=os.path.dirname(folders[0]), split_names=["train", "eval"])
    best = HyperParameters(uri=str(_mkdir(tmp_path / "best")))
    run_tuner(examples=transformed, transform_graph=TransformGraph(uri=run["graph"]), best_hyperparameters=best,
              module_file=str(SLUICE / "penguin_keras.py"), train_steps=10, eval_steps=2)
    module = _load_module(SLUICE / "penguin_keras.py", "tfx_style_penguin_keras")
    assert best.trials == module.MAX_TRIALS
    hp = keras_tuner.HyperParameters.from_config(best.read())  # as the module's run_fn reads it
    assert hp.get("learning_rate") in (3e-2, 1e-2) and hp.get("hidden_layers") in (1, 2)


# image-like fixed-length float lists ----------------------------------------------------------


def _digits(rows: int, seed: int = 0) -> pa.Table:
    """784 floats in [-0.5, 0.5] per row: one of 10 random prototypes plus noise."""
    prototypes = np.random.default_rng(784).uniform(-0.5, 0.5, (10, 784))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    images = np.clip(prototypes[labels] + rng.normal(0, 0.15, (rows, 784)), -0.5, 0.5).astype(np.float32)
    return pa.table({"image_floats": pa.array(list(images), type=pa.list_(pa.float32())),
                     "image_class": pa.array(labels, type=pa.int64())})


@pytest.mark.slow
def test_mnist_like_module_over_fixed_length_float_lists(tmp_path):
    from sluice import tft
    from sluice.components.example_gen import ParquetExampleGen

    table = _digits(300)
    pq.write_table(table, _mkdir(tmp_path / "data") / "digits.parquet")
    run = _run(tmp_path, ParquetExampleGen(input_base=str(tmp_path / "data")), "mnist_keras.py", train_steps=40)
    assert tft.TFTransformOutput(run["graph"]).transformed_feature_spec()["image_floats_xf"].shape == [784]
    rows = _digits(60, seed=1).to_pylist()
    probabilities = _serve(run, rows, "image_class")["probabilities"]
    assert probabilities.shape == (60, 10)
    assert np.mean(probabilities.argmax(axis=1) == [r["image_class"] for r in rows]) >= 0.8
    _assert_tensorboard_logs(run)


# imdb-like token lists --------------------------------------------------------------------------

GOOD = ["great", "wonderful", "moving", "brilliant", "funny", "superb", "loved"]
BAD = ["boring", "awful", "dull", "terrible", "weak", "hated", "clumsy"]
FILLER = ["the", "film", "plot", "actors", "a", "was", "and", "music", "story", "scene", "it", "this"]


def _reviews(rows: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        sentiment = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, int(rng.integers(4, 30))))
        words += list(rng.choice(GOOD if sentiment else BAD, int(rng.integers(1, 4))))
        rng.shuffle(words)
        out.append({"review": " ".join(words), "sentiment": sentiment})
    return out


@pytest.mark.slow
def test_imdb_like_module_over_token_lists(tmp_path):
    from sluice import tft
    from sluice.components.example_gen import CsvExampleGen

    _write_csv(tmp_path / "data" / "reviews.csv", _reviews(300))
    run = _run(tmp_path, CsvExampleGen(input_base=str(tmp_path / "data")), "imdb_keras.py", train_steps=60)
    output = tft.TFTransformOutput(run["graph"])
    assert output.transformed_feature_spec()["review_ids"].shape == [24]
    words = Path(output.vocabulary_file_by_name("words")).read_text().splitlines()
    assert set(words) == set(GOOD + BAD + FILLER)
    rows = _reviews(80, seed=1)
    probability = _serve(run, rows, "sentiment")["outputs"].reshape(-1)
    assert np.mean((probability > 0.5) == [r["sentiment"] for r in rows]) >= 0.85
    _assert_tensorboard_logs(run)


# editing a helper module; keras_tuner imported first, in a fresh `sluice run` --------------------

EDIT_PIPELINE = '''
import os

from sluice.components.example_gen import CsvExampleGen
from sluice.components.import_schema_gen import ImportSchemaGen
from sluice.components.transform import Transform
from sluice.orchestration.pipeline import Pipeline

HERE = os.path.dirname(os.path.abspath(__file__))


def create_pipeline(pipeline_root: str = "root") -> Pipeline:
    examples = CsvExampleGen(input_base=os.path.join(HERE, "data"))
    schema = ImportSchemaGen(schema_file=os.path.join(HERE, "schema.pbtxt"))
    transform = Transform(examples=examples.outputs["examples"], schema=schema.outputs["schema"],
                          module_file=os.path.join(HERE, "modules", "penguin_keras.py"))
    return Pipeline(name="penguin-helper-edit", components=[examples, schema, transform], pipeline_root=pipeline_root)
'''


def _schema_of(rows: list[dict]) -> str:
    """Every column present once per row (dense inputs), typed as the CSV reads it."""
    def kind(value: str) -> str:
        try:
            int(value)
            return "INT"
        except ValueError:
            try:
                float(value)
                return "FLOAT"
            except ValueError:
                return "BYTES"

    return "".join(f'feature {{ name: "{name}" type: {kind(value)} presence {{ min_fraction: 1.0 min_count: 1 }} '
                   f'shape {{ dim {{ size: 1 }} }} }}\n' for name, value in rows[0].items())


@pytest.mark.slow
def test_editing_the_helper_beside_a_module_file_reexecutes_transform(tmp_path):
    import json
    import shutil
    import subprocess

    from tests.conftest import REPO

    rows = _penguin_rows()
    _write_csv(tmp_path / "data" / "penguins.csv", rows)
    (tmp_path / "schema.pbtxt").write_text(_schema_of(rows))
    (tmp_path / "pipeline.py").write_text(EDIT_PIPELINE)
    shutil.copytree(SLUICE, tmp_path / "modules")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)

    def sluice_run() -> dict[str, str]:
        proc = subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "run", str(tmp_path / "pipeline.py"),
                               "--pipeline-root", str(tmp_path / "root"), "--json"],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        # penguin_keras.py imports keras_tuner before TensorFlow, while the runner imports TensorFlow.
        assert proc.returncode == 0, proc.stderr[-3000:]
        components = json.loads(proc.stdout)["components"]
        graphs.append(next(c for c in components if c["type"] == "Transform")["outputs"]["transform_graph"][0])
        return {c["type"]: c["status"] for c in components}

    from sluice import tft

    graphs = []

    assert sluice_run() == {"CsvExampleGen": "executed", "ImportSchemaGen": "executed", "Transform": "executed"}
    helper = tmp_path / "modules" / "penguin_base.py"
    helper.write_text(helper.read_text().replace("ISLAND_OOV = 1", "ISLAND_OOV = 2"))
    assert sluice_run() == {"CsvExampleGen": "cached", "ImportSchemaGen": "cached", "Transform": "executed"}
    # The edited helper ran: island's one-hot is one wider.
    assert [tft.TFTransformOutput(g).transformed_feature_spec()["island_xf"].shape for g in graphs] == [[4], [5]]
