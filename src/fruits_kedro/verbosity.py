"""Quiet by default, everything on ``--verbose``: what a run prints besides its own log lines.

By default a run hides the chatter of the libraries it drives: TensorFlow's native start-up
lines and deprecation notices (TensorFlow is imported on the driver only to convert a model),
Spark's log4j start-up notices (:data:`LOG4J2_QUIET`, for a driver on this machine), and the
known warnings of the model converter. ``kedro run --verbose`` (or ``FRUITS_KEDRO_VERBOSE=1``
in the environment) shows all of it, and the project's debug lines.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VERBOSE_ENV = "FRUITS_KEDRO_VERBOSE"
# Spark's own logging for a driver on this machine: warnings, less the start-up notices.
LOG4J2_QUIET = Path(__file__).with_name("log4j2.properties")
# Library loggers kept at ERROR by conf/logging.yml, opened up by --verbose.
CHATTY_LOGGERS = ("tensorflow", "absl", "h5py", "tf2onnx")


# Warnings about libraries' internals, which no setting of this project changes: kedro-mlflow's
# pyfunc model (unused here) has no type hints, which MLflow says when kedro-mlflow's commands
# load, i.e. on every kedro command; Kedro-Viz's server uses a response class FastAPI deprecates.
KNOWN_WARNINGS = ("Add type hints to the `predict` method", "ORJSONResponse is deprecated")


def hide_known_warnings() -> None:
    """Drop :data:`KNOWN_WARNINGS` from the log (Kedro logs Python's warnings). A filter on
    the logger, not a warnings filter: MLflow sets its own around that warning."""
    py_warnings = logging.getLogger("py.warnings")
    if _not_known_warning not in py_warnings.filters:
        py_warnings.addFilter(_not_known_warning)


def _not_known_warning(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(known in message for known in KNOWN_WARNINGS)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def set_verbose() -> None:
    """Show what is hidden by default, in this process and the ones it starts."""
    os.environ[VERBOSE_ENV] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("fruits_kedro").setLevel(logging.DEBUG)


@contextmanager
def library_noise_hidden() -> Iterator[None]:
    """Hide native stderr lines (absl, oneDNN) and the converter's known Python warnings.

    Native libraries write to file descriptor 2 directly, past Python's ``sys.stderr``, so the
    descriptor itself is pointed at a temporary file for the duration; what was written is
    shown after all if the block fails. Nothing is hidden when verbose.
    """
    if is_verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    # A filter, not a level: importing tf2onnx sets TensorFlow's logger level itself.
    chatty = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    for chatty_logger in chatty:
        chatty_logger.addFilter(_errors_only)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        # tf2onnx probes for NumPy's removed aliases; Keras' converter wrapper triggers it.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"keras\.src\.export")
        # Other input sizes reuse the 224 px ImageNet file on purpose (backbone.input_size).
        warnings.filterwarnings("ignore", message=r"`input_shape` is undefined or non-square", category=UserWarning)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            for chatty_logger in chatty:
                chatty_logger.removeFilter(_errors_only)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR
