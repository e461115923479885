"""Every log record this process creates has its credentials masked before any handler sees it.

When a tracking server dies mid-run, MLflow and urllib3 log (and raise) messages that quote
the full request URL, password or token included. ``install`` masks each record as it is
created, through ``secrets.mask_text``: its message (arguments merged in) and the traceback
of an exception logged with it. It works at record creation rather than as a filter on the
root logger's handlers because libraries log through handlers of their own that never
reach the root (MLflow's ``mlflow`` logger does not propagate), and handlers added after
``install`` would miss a handler filter. ``MaskingFilter`` is the same masking as a
``logging.Filter``, for handlers that also receive records made elsewhere.

Only the stdlib's documented ``logging.setLogRecordFactory`` is used; installing twice
keeps one wrapper.
"""

from __future__ import annotations

import logging
import sys
import traceback

from sluice.orchestration.secrets import mask_text

_installed = False


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with its message and exception text masked (in place)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record: logging reports it when it formats it
        return record
    if "=" in message or "@" in message or "uthoriz" in message:
        clean = mask_text(message)
        if clean != message:
            record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = mask_text(text)  # formatters use exc_text as it is when it is set
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)
    return record


class MaskingFilter(logging.Filter):
    """Masks the records a handler emits (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install() -> None:
    """Masks every log record created from now on in this process, and what the root handlers emit."""
    global _installed
    if not _installed:
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            return mask_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler is not None and not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def masked_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` as ``--debug`` prints it, credentials masked."""
    return mask_text("".join(traceback.format_exception(exc)))


def print_masked_traceback(exc: BaseException, file=None) -> None:
    print(masked_traceback(exc), end="", file=file or sys.stderr)
