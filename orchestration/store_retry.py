"""Which metadata store errors are transient, and how long a store call retries them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_LOCKED = ("database is locked", "database table is locked", "database is busy")
_UNREACHABLE = ("connection refused", "connection reset", "temporarily unavailable", "max retries exceeded")
# Waiting on another process's lock is contention, not failure: it may take a while. A server
# that does not answer is retried only briefly (MLflow retries each request twice more itself),
# so a dead one is reported within seconds.
_LOCKED_SECONDS, _UNREACHABLE_SECONDS = 60.0, 3.0


def retrying(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Retries transient store errors (a locked SQLite file, a restarting server), within bounds."""
    import tenacity

    def text(exc: BaseException | None) -> str:
        return str(exc).lower()

    def transient(exc: BaseException) -> bool:
        return any(s in text(exc) for s in _LOCKED + _UNREACHABLE)

    def stop(state: Any) -> bool:
        locked = any(s in text(state.outcome.exception()) for s in _LOCKED)
        return state.seconds_since_start >= (_LOCKED_SECONDS if locked else _UNREACHABLE_SECONDS)

    return tenacity.retry(
        retry=tenacity.retry_if_exception(transient),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=2),
        stop=stop,
        reraise=True,
    )(fn)
