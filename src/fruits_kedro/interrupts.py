"""Ctrl-C during ``kedro run``: one line, exit code 130, the current outputs unchanged.

PySpark's own SIGINT handler cancels the Spark jobs through the Py4J connection that the main
thread is blocked on: Py4J then reports a "reentrant call", and Spark's cancelled tasks print
Java stack traces. The handler here notes the interruption, cancels the jobs from another
thread (its own Py4J connection) with Spark's logging turned off, and raises
``KeyboardInterrupt`` in the main thread, which :mod:`fruits_kedro.cli` reports in one line.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_interrupted = threading.Event()
_installed = False


@contextmanager
def handled() -> Iterator[None]:
    """Handle SIGINT here inside the block (in the main thread; elsewhere nothing changes)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    _installed = True
    _interrupted.clear()
    try:
        yield
    finally:
        _installed = False
        signal.signal(signal.SIGINT, previous)


def reinstall() -> None:
    """Take SIGINT back after a SparkContext has installed its own handler, if installed before."""
    if _installed and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)


def interrupted() -> bool:
    """Whether Ctrl-C was pressed inside :func:`handled`'s block."""
    return _interrupted.is_set()


def _on_interrupt(signum, frame) -> None:
    if not _interrupted.is_set():
        _interrupted.set()
        # Py4J logs the call that the interruption broke, with its traceback, partly through the
        # root logger: the CLI writes that traceback to logs/ instead.
        logging.getLogger("py4j").setLevel(logging.CRITICAL + 1)
        logging.getLogger().addFilter(_not_from_py4j)
        threading.Thread(target=_cancel_spark_jobs, name="cancel-spark-jobs", daemon=True).start()
    raise KeyboardInterrupt


def _cancel_spark_jobs() -> None:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None:
        return
    try:
        context.setLogLevel("OFF")  # each cancelled task would log a Java stack trace
        context.cancelAllJobs()
    except Exception:  # noqa: BLE001, S110 - the JVM may be going already: nothing left to cancel
        pass


def _not_from_py4j(record: logging.LogRecord) -> bool:
    return f"{os.sep}py4j{os.sep}" not in record.pathname
