"""A serving SavedModel folder that is also an MLflow model: what the Pusher registers.

``make_mlflow_model(folder, example)`` adds an ``MLmodel`` to a copy of a SavedModel folder: the
``python_function`` flavor with this module as its loader and the folder itself as its data, a
signature over the raw features, and an input example. The folder stays a SavedModel (TF
Serving and ``tf.saved_model.load`` read it as before), and
``mlflow.pyfunc.load_model("models:/<name>@champion").predict(frame)`` (or ``mlflow models
serve``) returns for a pandas frame of raw rows what the SavedModel's ``serving_default``
returns for them: the one output's array, or ``{output: array}`` when there are several.

Imports MLflow and TensorFlow only when called.
"""

from __future__ import annotations

import os
from typing import Any

MLMODEL_FILE = "MLmodel"


class ServingPyfunc:
    """What ``mlflow.pyfunc.load_model`` wraps: raw rows (pandas) -> the serving outputs."""

    def __init__(self, loaded: Any):
        self.loaded = loaded

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        return predict_frame(self.loaded, model_input)


def _load_pyfunc(data_path: str) -> ServingPyfunc:
    """The ``python_function`` loader MLflow calls with the model's data folder (the SavedModel's)."""
    from sluice.components.serving import load_serving_model

    return ServingPyfunc(load_serving_model(data_path, "model", "MLflow model"))


def predict_frame(loaded: Any, frame: Any) -> Any:
    """The serving outputs of a pandas frame's rows: one array, or a dict of them."""
    import pyarrow as pa

    from sluice.components.serving import predict_batch

    table = pa.Table.from_pandas(frame, preserve_index=False)
    outputs = predict_batch(loaded, table)
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def raw_columns(loaded: Any) -> dict[str, str]:
    """``{raw feature: "int64"|"float32"|"string"}`` the model reads (models exported with
    ``export_serving_model``); an empty dict for other SavedModels."""
    from sluice.components.serving import raw_feature_types, raw_function

    raw = raw_function(loaded)
    return raw_feature_types(raw) if raw is not None else {}


def signature(loaded: Any, example: Any | None) -> Any:
    """Inputs: every raw feature, optional; strings as ``string``, numbers as ``Any`` (pandas holds
    integers with gaps as floats and whole floats as integers; the model casts them, where MLflow's
    own checks refuse int64 for a double column and NaN for a long one).
    Outputs: the serving outputs' tensors, as ``example`` predicts them (none without one)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    columns = raw_columns(loaded)
    inputs = Schema([ColSpec("string" if kind == "string" else AnyType(), name, required=False)
                     for name, kind in sorted(columns.items())]) if columns else None
    outputs = None
    if example is not None:
        import pyarrow as pa

        from sluice.components.serving import predict_batch

        named = predict_batch(loaded, pa.Table.from_pandas(example, preserve_index=False))
        outputs = Schema([TensorSpec(value.dtype, (-1, *value.shape[1:]), name)
                          for name, value in sorted(named.items())])
    return ModelSignature(inputs=inputs, outputs=outputs)


def make_mlflow_model(folder: str, example: Any | None = None) -> None:
    """Writes ``MLmodel`` (and the input example) into ``folder``, a copy of a serving SavedModel.

    ``example``: a few raw rows (pandas) for the input example and the output signature; the
    columns the model does not read are left out of it.
    """
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import Model
    from mlflow.models.utils import _save_example  # MLflow's own example writer (file and metadata)

    from sluice.components.serving import load_serving_model

    loaded = load_serving_model(folder, "model", "Pusher")
    columns = raw_columns(loaded)
    if example is not None and columns:
        example = example[[name for name in example.columns if name in columns]]
    mlmodel = Model()
    mlflow.pyfunc.add_to_model(mlmodel, loader_module=__name__, data=".")
    mlmodel.signature = signature(loaded, example)
    if example is not None:
        _save_example(mlmodel, example, folder)
    mlmodel.save(os.path.join(folder, MLMODEL_FILE))
