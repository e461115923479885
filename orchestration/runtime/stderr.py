"""What a CLI process lets through to its terminal: the user's messages, not libraries' chatter.

Native libraries (TensorFlow, XLA, gRPC) write straight to file descriptor 2, before any
Python log level applies, and Python libraries log and warn about things that are not the
user's to fix. ``filtered_stderr`` passes fd 2 through a thread that drops the native lines
and masks credentials (``masked_stdout`` masks fd 1 the same way);
``quiet_libraries`` lowers the libraries' log levels; ``stdout_to_stderr`` keeps stdout for
the one JSON document a ``--json`` run prints. ``--debug`` keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading

_PROGRESS_STREAM = None  # the real stderr while native chatter is being filtered

# Native libraries (TensorFlow, XLA, gRPC) print these straight to fd 2 before
# any log level applies; they say nothing a user can act on.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ \S+\.(cc|h):\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)$"
)


def quiet_libraries(debug: bool) -> None:
    """Logs warnings and up; without ``debug``, libraries only log their errors."""
    from sluice.orchestration.runtime import log_masking

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log_masking.install()
    if not debug:
        import warnings

        warnings.filterwarnings("ignore")  # library deprecation/usage warnings are not the user's to fix
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        for name in ("mlflow", "alembic", "absl", "tensorflow", "urllib3"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # Beam logs a failing DoFn's traceback; the component's error says it in one line.
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool):
    """Keeps stdout for the single JSON document: library chatter goes to stderr."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def progress_stream():
    """The real stderr while ``filtered_stderr`` is active (None otherwise)."""
    return _PROGRESS_STREAM


def _masked_lines(read_fd: int, out_fd: int, drop_noise: bool) -> None:
    """Copies lines from ``read_fd`` to ``out_fd``: credentials masked, native chatter dropped."""
    from sluice.orchestration.secrets import mask_text

    with os.fdopen(read_fd, "rb") as pipe, os.fdopen(out_fd, "wb", buffering=0) as out:
        for line in pipe:
            text = line.decode("utf-8", "replace")
            if drop_noise and NATIVE_NOISE.match(text.rstrip("\n")):
                continue
            clean = mask_text(text)
            out.write(line if clean == text else clean.encode("utf-8"))


@contextlib.contextmanager
def _through_pump(fd: int, drop_noise: bool):
    """Passes everything written to ``fd`` through ``_masked_lines``; yields a copy of the real ``fd``."""
    (sys.stderr if fd == 2 else sys.stdout).flush()
    saved = os.dup(fd)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, fd)
    os.close(write_fd)
    out_fd = os.dup(saved)  # the pump's own copy: `saved` is closed when the block ends
    thread = threading.Thread(target=_masked_lines, args=(read_fd, out_fd, drop_noise), daemon=True)
    thread.start()
    try:
        yield saved
    finally:
        (sys.stderr if fd == 2 else sys.stdout).flush()
        os.dup2(saved, fd)  # closes the pipe's last writer, so the pump drains and ends
        os.close(saved)
        thread.join(timeout=5)


@contextlib.contextmanager
def filtered_stderr(quiet: bool):
    """Masks credentials in every line written to fd 2; with ``quiet``, drops native-library chatter.

    The masking stays with --debug: a traceback or a library's own print (MLflow prints each
    run's URL, tracking server credentials included) must not show a password either.
    """
    with _through_pump(2, drop_noise=quiet) as real:
        global _PROGRESS_STREAM
        # Progress goes straight to the real stderr: its live line has no newline for the
        # line-based filter to pass on (it shows component ids and times only).
        _PROGRESS_STREAM = os.fdopen(os.dup(real), "w", buffering=1, encoding="utf-8", errors="replace")
        try:
            yield
        finally:
            stream, _PROGRESS_STREAM = _PROGRESS_STREAM, None
            stream.close()


@contextlib.contextmanager
def masked_stdout():
    """Masks credentials in every line written to fd 1 (components' and libraries' prints too)."""
    with _through_pump(1, drop_noise=False):
        yield
