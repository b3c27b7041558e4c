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
# spark.yml switch (local masters only): map Spark's classes from a class-data archive.
CLASS_ARCHIVE_SETTING = "fruits.jvm_class_archive"


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
        use_class_archive = bool(conf.pop(CLASS_ARCHIVE_SETTING, False))
        if _is_local_master(master):
            # Local Python workers must run this interpreter, or they import another Python's
            # site-packages (or none): the cluster's own Python is set by its environment.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            if use_class_archive:
                java_options = _with_class_archive(conf.get("spark.driver.extraJavaOptions"))
                if java_options:
                    conf["spark.driver.extraJavaOptions"] = java_options
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, _spark_value(value))
        logger.info("Starting SparkSession (master=%s)", master or "from the cluster environment")
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel(str(conf.get("fruits.log_level", "WARN")))
        return session


def _with_class_archive(java_options: str | None) -> str | None:
    """The driver's JVM options, plus the class-data archive of Spark's classes when one
    was made for this Java and Spark (:mod:`fruits_kedro.spark_class_archive`)."""
    from fruits_kedro import spark_class_archive

    archive_options = spark_class_archive.java_options()
    if not archive_options:
        logger.info(
            "No JVM class archive for this Java and Spark: `python -m fruits_kedro.spark_class_archive` "
            "makes one (`make` does), and Spark then starts seconds faster"
        )
        return java_options
    return " ".join([str(java_options or ""), *archive_options]).strip()


def _spark_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
