"""The one place that creates the SparkSession.

Kedro hands the ``spark`` configuration of the active environment to :func:`configure`
when a context is created; the session itself is only built on the first call to
:func:`get_spark`. That keeps ``kedro viz`` and ``kedro jupyter`` free of a JVM until
something really needs Spark.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_spark_conf: dict[str, Any] = {}


def configure(spark_conf: dict[str, Any] | None) -> None:
    """Record the Spark configuration to use when the session is first needed."""
    global _spark_conf
    _spark_conf = {str(k): v for k, v in (spark_conf or {}).items()}


def spark_conf() -> dict[str, Any]:
    """The configuration that :func:`get_spark` builds a session from."""
    return dict(_spark_conf)


def _is_local_master(master: str | None) -> bool:
    return master is None or master.startswith("local")


def get_spark() -> SparkSession:
    """Return the active SparkSession, building it from the recorded configuration."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        conf = spark_conf()
        master = conf.get("spark.master")
        if _is_local_master(master):
            # Local Python workers must run this interpreter, or they import another Python's
            # site-packages (or none): the cluster's own Python is set by its environment.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, _spark_value(value))
        logger.info("Starting SparkSession (master=%s)", master or "from the cluster environment")
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel(str(conf.get("fruits.log_level", "WARN")))
        return session


def _spark_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
