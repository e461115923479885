"""Checks of a pipeline's registered champion as an MLflow model, shared by the penguin and taxi tests."""

from __future__ import annotations

import glob
import os

import numpy as np


def eval_rows(doc: dict, rows: int = 40):
    """The first raw eval rows the run's ExampleGen wrote (Arrow)."""
    import pyarrow.parquet as pq

    example_gen = doc["components"][0]
    folder = os.path.join(example_gen["outputs"]["examples"][0], "Split-eval")
    return pq.read_table(sorted(glob.glob(os.path.join(folder, "*.parquet")))[0]).slice(0, rows)


def serving_default(doc: dict, table, output: str) -> np.ndarray:
    """What the pushed SavedModel's ``serving_default`` answers for the rows, as tf.Examples."""
    import tensorflow as tf

    from sluice.components.serving import serialize_examples

    pusher = next(c for c in doc["components"] if c["type"] == "Pusher")
    with open(os.path.join(pusher["outputs"]["pushed_model"][0], "push.json")) as fh:
        import json

        destination = json.load(fh)["destination"]
    loaded = tf.saved_model.load(destination)
    return loaded.signatures["serving_default"](examples=tf.constant(serialize_examples(table)))[output].numpy()


def check_pyfunc_champion(doc: dict, name: str, output: str):
    """``models:/<name>@champion`` loads as a pyfunc with a raw-feature signature and an input example,
    and predicts what ``serving_default`` does; returns the rows and those predictions."""
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    table = eval_rows(doc)
    expected = serving_default(doc, table, output)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(doc["tracking_uri"])
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    finally:
        mlflow.set_tracking_uri(previous)
    signature = model.metadata.signature
    assert set(signature.inputs.input_names()) <= set(table.column_names)
    assert len(signature.inputs.input_names()) >= 4 and signature.outputs.input_names() == [output]
    assert model.metadata.saved_input_example_info["type"] == "dataframe"
    got = np.asarray(model.predict(table.to_pandas()))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    version = MlflowClient(doc["tracking_uri"]).get_model_version_by_alias(name, "champion")
    assert version.source.endswith("/serving_model")
    return table, expected
