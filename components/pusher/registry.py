"""The Pusher's side of the MLflow Model Registry: uploading a pushed model and registering it.

Used by the Pusher alone (component.py, where a push's steps and their order are told). Each
registered version is tagged with the model's fingerprint, its artifact URI and the execution
that registered it, then with its serving folder once that is in place; alias ``champion``
names the newest version in place.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from sluice.components.artifacts import Examples, Model
from sluice.components.sdk import ComponentError, ExecutionContext

FINGERPRINT_TAG = "sluice.model_fingerprint"
MODEL_URI_TAG = "sluice.model_uri"
EXECUTION_TAG = "sluice.execution_id"  # the execution that last completed or reused the push
SERVING_TAG = "sluice.serving_path"  # set once the version's folder is in place
ARTIFACT_PATH = "serving_model"
ALIAS = "champion"


def upload_model(ctx: ExecutionContext, model: Model, examples: Examples | None = None) -> str:
    """Uploads the SavedModel, made an MLflow model too (``mlflow_model``: ``MLmodel``, signature,
    input example from the first rows of ``examples``), as artifacts of the Pusher's MLflow run;
    returns the URI to register.

    The source then lives in the run's own artifact store (under this run's pipeline root, or a
    tracking server's proxied artifacts), which is what a server accepts as a model version's source.
    """
    with tempfile.TemporaryDirectory(prefix="sluice-mlflow-model-") as scratch:
        folder = os.path.join(scratch, ARTIFACT_PATH)
        shutil.copytree(model.serving_dir, folder)
        try:
            from sluice.components.mlflow_model import make_mlflow_model

            make_mlflow_model(folder, _example_rows(examples))
        except Exception as exc:  # noqa: BLE001 - a SavedModel TensorFlow cannot load: still registered
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"Pusher: registering {model.serving_dir} without an MLmodel (not loadable as an MLflow "
                  f"model): {first}"[:500], file=sys.stderr)
        return ctx.log_artifacts(folder, ARTIFACT_PATH)


def _example_rows(examples: Examples | None, rows: int = 5):
    """The first rows of the first split of ``examples`` as pandas, or None."""
    if examples is None or not examples.split_names:
        return None
    from sluice.components.io.examples import read_batches, split_files

    files = split_files(examples, examples.split_names[0], "Pusher")
    first = next(read_batches(files[0], "Pusher", batch_size=rows), None) if files else None
    return first.to_pandas() if first is not None and first.num_rows else None


class Registry:
    """The registry side of pushes of one registered model name."""

    def __init__(self, ctx: ExecutionContext, name: str, examples: Examples | None = None):
        from mlflow.tracking import MlflowClient

        if not ctx.mlflow_run_id:
            raise ComponentError(f"Pusher: tracking URI set but no MLflow run to upload model '{name}' to")
        self.client = MlflowClient(ctx.tracking_uri)
        self.ctx = ctx
        self.name = name
        self.examples = examples  # the input example of the versions it registers

    def versions(self) -> list:
        quote = '"' if "'" in self.name else "'"
        found, token = [], None
        while True:
            page = self.client.search_model_versions(f"name = {quote}{self.name}{quote}", page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def is_of(self, number: int | None, fingerprint: str) -> bool:
        """Whether registered version ``number`` exists and holds the model ``fingerprint``."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version(self.name, str(number)) if isinstance(number, int) else None
        except MlflowException:
            return False
        return version is not None and version.tags.get(FINGERPRINT_TAG) == fingerprint

    def unplaced(self, fingerprint: str, placed: set[int]) -> int | None:
        """The newest version of this model whose push did not place it (its process was killed)."""
        numbers = [int(v.version) for v in self.versions()
                   if v.tags.get(FINGERPRINT_TAG) == fingerprint and int(v.version) not in placed]
        return max(numbers, default=None)

    def register(self, model: Model, fingerprint: str) -> int:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            try:
                self.client.create_registered_model(self.name, description="Pushed by Sluice's Pusher")
            except MlflowException:  # created meanwhile by a concurrent push
                self.client.get_registered_model(self.name)
        source = upload_model(self.ctx, model, self.examples)
        tags = {FINGERPRINT_TAG: fingerprint, MODEL_URI_TAG: model.uri, EXECUTION_TAG: self.ctx.execution_id}
        version = self.client.create_model_version(self.name, source, run_id=self.ctx.mlflow_run_id, tags=tags)
        return int(version.version)

    def complete(self, number: int, destination: str) -> dict:
        """Records where version ``number`` is served and by which execution; re-points ``champion``."""
        self.client.set_model_version_tag(self.name, str(number), SERVING_TAG, destination)
        # A version registered by a killed execution now also names the one that completed it.
        self.client.set_model_version_tag(self.name, str(number), EXECUTION_TAG, self.ctx.execution_id)
        champion = self.point_champion()
        return {"name": self.name, "version": number, "alias": ALIAS if champion == number else None}

    def _newest_complete(self) -> int | None:
        """The newest version whose folder is in place (versions registered without Sluice count too)."""
        numbers = [int(v.version) for v in self.versions()
                   if FINGERPRINT_TAG not in v.tags or SERVING_TAG in v.tags]
        return max(numbers, default=None)

    def point_champion(self) -> int | None:
        """Points ``champion`` at the newest complete version.

        Concurrent pushes each write the newest they see and then check it: the last
        check after the last write fixes a stale value written by a slower push.
        """
        from mlflow.exceptions import MlflowException

        target = None
        for attempt in range(8):
            target = self._newest_complete()
            if target is None:
                return None
            try:
                self.client.set_registered_model_alias(self.name, ALIAS, str(target))
                current = int(self.client.get_model_version_by_alias(self.name, ALIAS).version)
            except MlflowException:  # e.g. a concurrent push setting it at the same moment
                if attempt == 7:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
            if current == target == self._newest_complete():
                break
        return target
