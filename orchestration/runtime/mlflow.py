"""MLflow in a Sluice process: quiet, and quick to give up on a server that is gone.

MLflow reads its HTTP client settings from the environment at every request, so the only way
to bound them for the whole process is to set those variables (``setdefault``: a user's own
values win). What they buy:

- MLflow's own HTTP retries (seven, exponential) nested in the store's retries made an
  unreachable tracking server take minutes to report; two short ones leave the store's own
  bounded retries (a few seconds) in charge.
- ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``: MLflow prints "View run ... at: <tracking URI>"
  whenever a run ends on a server; noise in ``sluice run`` output, and the URI may carry a password.
- ``MLFLOW_ENABLE_ASYNC_LOGGING=false``: records are written when the call returns.

The variable names were checked against MLflow 2 and 3 (``mlflow/environment_variables.py``);
for another major version the environment is left alone.
"""

from __future__ import annotations

import logging
import os

_WRITTEN_FOR = ("2.", "3.")


def quiet_mlflow() -> None:
    """Lowers MLflow's log levels, bounds its HTTP retries, fixes its SQLite folder creation (idempotent)."""
    from sluice.orchestration.runtime import mlflow_sqlite

    mlflow_sqlite.apply()
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs a traceback for every failed SQL statement (a read-only or full disk) before
    # raising; the store turns the exception into one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    if not _mlflow_version().startswith(_WRITTEN_FOR):
        return
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # MLflow parses it as an int
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")


def _mlflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return ""
