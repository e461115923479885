"""The metadata store's MLflow client: opening the store and every call made to it.

``StoreClient`` opens the store (``store_access``: an SQLite store created or repaired, a store
that cannot be written refused writes at once), retries transient failures (``store_retry``),
turns failures of the disk, permissions or network into one-line ``StoreError``s, finds or
creates each pipeline's experiment, pages through searches and logs params, metrics and tags in
batches. ``MetadataStore`` (metadata.py) writes and reads Sluice's records through it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from sluice.orchestration import records, roots
from sluice.orchestration.secrets import mask_uri
from sluice.orchestration.store_retry import retrying


class StoreError(RuntimeError):
    """The metadata store could not be reached or used."""


# Client methods that write: refused at once on a store opened read-only.
_WRITES = frozenset({"create_experiment", "create_run", "log_batch", "set_terminated", "set_tag",
                     "update_run", "delete_run", "log_param", "log_metric", "set_experiment_tag"})


# The MLflow UI opens an experiment of this kind in its model-training view (not GenAI's traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class StoreClient:
    """An MLflow tracking client whose failures are one-line ``StoreError``s."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None):
        from sluice.orchestration.runtime.mlflow import quiet_mlflow
        from sluice.orchestration.store_access import known_cause, open_checks

        quiet_mlflow()
        from mlflow.tracking import MlflowClient

        quiet_mlflow()  # mlflow sets its own levels on import
        self.tracking_uri = tracking_uri
        self._artifact_root = artifact_root
        self._lock = threading.RLock()
        self._experiments: dict[str, str] = {}
        # Creates (or repairs) an SQLite store; None, or why this store cannot be written.
        self._read_only = open_checks(tracking_uri)
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
        except Exception as exc:
            why = known_cause(exc, self._folder()) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"metadata store {mask_uri(tracking_uri)}: {why}") from None

    def _folder(self) -> str | None:
        from sluice.orchestration.store_access import sqlite_path

        path = sqlite_path(self.tracking_uri)
        return os.path.dirname(path) if path else None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client call; failures of the disk, permissions or network become one-line StoreErrors."""
        from sluice.orchestration.store_access import known_cause

        if self._read_only and method in _WRITES:
            raise StoreError(f"metadata store {mask_uri(self.tracking_uri)}: {self._read_only}")
        with self._lock:
            try:
                return retrying(getattr(self.client, method))(*args, **kwargs)
            except Exception as exc:
                why = known_cause(exc, self._folder())
                if why is None:
                    raise
                raise StoreError(f"metadata store {mask_uri(self.tracking_uri)}: {why}") from exc

    def experiment_id(self, pipeline: str, create: bool = True) -> str | None:
        if pipeline in self._experiments:
            return self._experiments[pipeline]
        exp = self._call("get_experiment_by_name", pipeline)
        if exp is None:
            if not create:
                return None
            location = roots.experiment_location(self.tracking_uri, self._artifact_root)
            try:
                exp_id = self._call("create_experiment", pipeline, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except Exception:  # created concurrently by another process
                exp = self._call("get_experiment_by_name", pipeline)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
            if EXPERIMENT_KIND_TAG not in exp.tags and not self._read_only:
                self._call("set_experiment_tag", exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self._experiments[pipeline] = exp_id
        return exp_id

    def _search(self, experiment_ids: list[str], filter_string: str, max_results: int = 5000,
                order_by: list[str] | None = None) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self._call(
                "search_runs", experiment_ids, filter_string=filter_string,
                max_results=min(max_results, 1000), order_by=order_by or ["attributes.start_time DESC"],
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token or len(runs) >= max_results:
                return runs

    def _all_experiment_ids(self) -> list[str]:
        from mlflow.entities import ViewType

        exps = self._call("search_experiments", view_type=ViewType.ACTIVE_ONLY, max_results=1000)
        return [e.experiment_id for e in exps]

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._log(run_id, tags=tags)

    def _log(self, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
             tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        p = [Param(k, records.param_text(v)) for k, v in (params or {}).items()]
        m = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        t = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for start in range(0, max(len(p), len(m), len(t), 1), 100):
            self._call("log_batch", run_id, metrics=m[start:start + 100], params=p[start:start + 100],
                       tags=t[start:start + 100], synchronous=True)
