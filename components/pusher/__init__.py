"""Pusher: registers a blessed model in MLflow and places it in a TF Serving model directory.

The layout is TF Serving's: ``<serving_dir>/<version>/saved_model.pb`` with
integer versions; a push adds ``max(existing) + 1``. The copy is written into a
hidden staging folder inside ``serving_dir`` and renamed into place, so a
server watching the folder never sees a half-written version.

A push, in order: stage the copy; upload the SavedModel to the Pusher's MLflow run
and register it, tagged with the model's fingerprint; write a marker (fingerprint,
registered version) into the copy; rename it into place; point ``champion`` at the
newest placed version. A kill leaves nothing (a stale staging folder) or one
registered version, which the next push of the same model completes and reuses.

    Pusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
           serving_dir="/srv/models/taxi", registered_model_name="taxi")

Modules: ``component`` (the push, step by step, and ``Pusher``), ``registry`` (the MLflow
Model Registry side: upload, register, tags, the ``champion`` alias).
"""

from sluice.components.pusher.component import (
    MARKER,
    Pusher,
    model_fingerprint,
    place_version,
    push_model,
    read_marker,
    remove_stale_staging,
    rename_no_replace,
    stage_copy,
)
from sluice.components.pusher.registry import (
    ALIAS,
    ARTIFACT_PATH,
    EXECUTION_TAG,
    FINGERPRINT_TAG,
    MODEL_URI_TAG,
    SERVING_TAG,
    Registry,
    upload_model,
)

__all__ = [
    "ALIAS",
    "ARTIFACT_PATH",
    "EXECUTION_TAG",
    "FINGERPRINT_TAG",
    "MARKER",
    "MODEL_URI_TAG",
    "SERVING_TAG",
    "Pusher",
    "Registry",
    "model_fingerprint",
    "place_version",
    "push_model",
    "read_marker",
    "remove_stale_staging",
    "rename_no_replace",
    "stage_copy",
    "upload_model",
]
