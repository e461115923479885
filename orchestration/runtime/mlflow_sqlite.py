"""MLflow's SQLite folder creation, made to read an encoded URI as SQLAlchemy does.

Before opening an SQLite store, MLflow 3 creates the database's folder from the URI's raw
text (``mlflow.store.db.utils._make_parent_dirs_if_sqlite``). For a pipeline root named
``a?b`` the URI must encode the ``?`` (``sqlite:////data/a%3Fb/metadata.db``, or SQLAlchemy
would read a query), and MLflow then creates ``/data/a%3Fb``: a stray folder beside the root.
This replaces it with the same creation on the path SQLAlchemy opens.

Applied for MLflow 3 only, and only where that function exists; other versions are left alone.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_applied = False


def apply() -> None:
    """Patches MLflow's SQLite folder creation (idempotent; does nothing for other MLflow versions)."""
    global _applied
    with _lock:
        if _applied:
            return
        _applied = True
        import mlflow
        from mlflow.store.db import utils

        original = getattr(utils, "_make_parent_dirs_if_sqlite", None)
        if not mlflow.__version__.startswith("3.") or original is None:
            return

        def make_parent_dirs(db_uri: str) -> None:
            if not db_uri.startswith("sqlite:///"):
                return
            from sqlalchemy.engine import make_url

            database = make_url(db_uri).database
            if database and database != ":memory:" and not database.startswith("file:"):
                os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)

        make_parent_dirs.__wrapped__ = original  # type: ignore[attr-defined]
        utils._make_parent_dirs_if_sqlite = make_parent_dirs
