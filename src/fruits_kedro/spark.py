"""The one place that creates the SparkSession.

Kedro hands the ``spark`` configuration of the active environment to :func:`configure`
when a context is created; the session itself is only built on the first call to
:func:`get_spark`. That keeps ``kedro viz`` and ``kedro jupyter`` free of a JVM until
something really needs Spark.

Whatever the executors need from the driver travels in the Spark configuration, never
through the shells that started the cluster's workers: the Python interpreter
(``spark.pyspark.python``) and the S3 settings and credentials (``spark.executorEnv.*``,
see :func:`fruits_kedro.datasets.aws.executor_aws_environment`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fruits_kedro import interrupts
from fruits_kedro.datasets.aws import executor_aws_environment

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_spark_conf: dict[str, Any] = {}
# spark.yml switch (local masters only): map Spark's classes from a class-data archive.
CLASS_ARCHIVE_SETTING = "fruits.jvm_class_archive"
# spark.yml switch: the driver's AWS credentials reach the executors (a cluster without roles).
FORWARD_CREDENTIALS_SETTING = "fruits.forward_aws_credentials"
# Settings of the project, not of Spark: read here, never handed to Spark.
PROJECT_SETTINGS = (CLASS_ARCHIVE_SETTING, FORWARD_CREDENTIALS_SETTING, "fruits.log_level")


def configure(spark_conf: dict[str, Any] | None) -> None:
    """Record the Spark configuration to use when the session is first needed."""
    global _spark_conf
    _spark_conf = {str(k): v for k, v in (spark_conf or {}).items() if v is not None}


def spark_conf() -> dict[str, Any]:
    """The configuration that :func:`get_spark` builds a session from."""
    return dict(_spark_conf)


def forwards_aws_credentials() -> bool:
    """Whether this environment sends the driver's AWS credentials to the executors."""
    return _truthy(_spark_conf.get(FORWARD_CREDENTIALS_SETTING, False))


def forward_aws_environment(spark_context, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Give the Python workers of the UDFs created from now on the driver's AWS settings.

    The session's start already put them in ``spark.executorEnv.*``; this catches variables
    set later (a notebook cell, a test's monkeypatch, a second ``kedro run`` in one process),
    which would otherwise never reach the workers, so s3fs in the executors would silently
    talk to another endpoint. PySpark sends ``SparkContext.environment`` with every Python
    function.
    """
    forwarded = executor_aws_environment(str(spark_context.master), forwards_aws_credentials(), environ)
    spark_context.environment.update(forwarded)
    return forwarded


def _is_local_master(master: str | None) -> bool:
    return bool(master) and master.startswith("local")


def _is_standalone_master(master: str | None) -> bool:
    return bool(master) and master.startswith("spark://")


def start_spark() -> None:
    """Start Spark's JVM and SparkContext from the recorded configuration in a background
    thread, so that the driver's other start-up work (MLflow's run, the catalog) goes on
    meanwhile; :func:`get_spark` waits for it and builds the session."""
    global _starting
    from pyspark import SparkContext

    with _lock:
        if _starting is not None or SparkContext._active_spark_context is not None:
            return
        _starting = _ContextStart(session_conf(spark_conf()))
        _starting.start()


class _ContextStart(threading.Thread):
    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(name="start-spark", daemon=True)
        self.conf = conf
        self.error: BaseException | None = None

    def run(self) -> None:
        from pyspark import SparkConf, SparkContext

        try:
            _prepare(self.conf)
            SparkContext.getOrCreate(SparkConf().setAll((k, _spark_value(v)) for k, v in self.conf.items()))
        except BaseException as error:  # noqa: BLE001 - raised again by get_spark, in the thread that needs Spark
            self.error = error


def _prepare(conf: dict[str, Any]) -> None:
    if _truthy(conf.get("spark.eventLog.enabled", False)):
        _ensure_remote_folder(str(conf["spark.eventLog.dir"]))
    logger.info("Starting SparkSession (master=%s)", conf.get("spark.master") or "from the cluster environment")


_starting: _ContextStart | None = None


def get_spark() -> SparkSession:
    """Return the active SparkSession, building it from the recorded configuration (on the
    context that :func:`start_spark` started, if it did)."""
    global _starting
    from pyspark.sql import SparkSession

    starting = _starting
    if starting is not None and starting is not threading.current_thread():
        starting.join()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        starting, _starting = _starting, None
        if starting is not None and starting.error is not None:
            raise starting.error
        conf = starting.conf if starting is not None else session_conf(spark_conf())
        if starting is None:
            _prepare(conf)
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, _spark_value(value))
        session = builder.getOrCreate()
        interrupts.reinstall()  # SparkContext replaced the CLI's Ctrl-C handler with its own
        session.sparkContext.setLogLevel(str(_spark_conf.get("fruits.log_level", "WARN")))
        _log_where_to_watch(session, conf)
        return session


def started_session() -> SparkSession | None:
    """The session, if one runs or :func:`start_spark` is starting it (waiting for that); None
    otherwise: never starts Spark."""
    from pyspark.sql import SparkSession

    if _starting is not None:
        return get_spark()
    return SparkSession.getActiveSession()


def session_conf(recorded: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings handed to Spark: the recorded ones, less the project's own switches,
    plus what the executors need from the driver (interpreter, S3 settings, event-log folder).

    Sets ``PYSPARK_PYTHON`` in this process as a side effect: PySpark reads the workers'
    interpreter from it, never from ``spark.pyspark.python``, in a session created in-process.
    """
    from fruits_kedro import verbosity

    environ = os.environ if environ is None else environ
    conf = {k: v for k, v in recorded.items() if k not in PROJECT_SETTINGS}
    master = conf.get("spark.master")
    python = conf.get("spark.pyspark.python")
    if python is None and (_is_local_master(master) or _is_standalone_master(master)):
        # Local and loopback-cluster workers share this machine: run this very interpreter.
        python = environ.get("PYSPARK_PYTHON") or sys.executable
        conf["spark.pyspark.python"] = python
    if python is not None:
        environ["PYSPARK_PYTHON"] = str(python)
        environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    forward = _truthy(recorded.get(FORWARD_CREDENTIALS_SETTING, False))
    for name, value in executor_aws_environment(master, forward, environ).items():
        conf.setdefault(f"spark.executorEnv.{name}", value)
    if _truthy(conf.get("spark.eventLog.enabled", False)):
        conf["spark.eventLog.dir"] = _event_log_dir(str(conf.get("spark.eventLog.dir", "logs/spark-events")))
    if _is_local_master(master) and _truthy(recorded.get(CLASS_ARCHIVE_SETTING, False)):
        java_options = _with_class_archive(conf.get("spark.driver.extraJavaOptions"))
        if java_options:
            conf["spark.driver.extraJavaOptions"] = java_options
    if (_is_local_master(master) or _is_standalone_master(master)) and not verbosity.is_verbose():
        # A driver JVM started here: Spark's warnings without its start-up notices.
        quiet = f"-Dlog4j2.configurationFile={verbosity.LOG4J2_QUIET.as_uri()}"
        conf["spark.driver.extraJavaOptions"] = f"{conf.get('spark.driver.extraJavaOptions') or ''} {quiet}".strip()
    if _is_local_master(master):
        environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # one machine: no hostname lookup to warn about
    return conf


def _event_log_dir(location: str) -> str:
    """A local event-log folder made absolute and created (Spark refuses a missing one);
    URLs (``s3://``, ``hdfs://``) are left to Spark."""
    if "://" in location and not location.startswith("file://"):
        return location
    folder = Path(location.removeprefix("file://")).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_uri()


def _ensure_remote_folder(location: str) -> None:
    """Spark refuses an event-log folder that does not exist; on S3 a folder exists once an
    object is under it."""
    if "://" not in location or location.startswith(("file://", "hdfs://")):
        return
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(location)
        marker = f"{root.rstrip('/')}/.keep"
        if not fs.exists(marker):
            fs.pipe_file(marker, b"")
    except Exception as exc:  # noqa: BLE001 - Spark's own check then says what is wrong
        logger.warning("Could not prepare the event-log folder %s: %s", location, exc)


def _log_where_to_watch(session: SparkSession, conf: dict[str, Any]) -> None:
    url = session.sparkContext.uiWebUrl
    if url:
        logger.info("Spark UI: %s", url)
    else:
        logger.info("Spark UI off (spark.ui.enabled: false in this environment's spark.yml)")
    if _truthy(conf.get("spark.eventLog.enabled", False)):
        logger.info("Spark event log: %s (`make history` serves it)", conf["spark.eventLog.dir"])


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


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def _spark_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def warm_python_workers(spark: SparkSession, modules: tuple[str, ...]) -> threading.Thread | None:
    """Start a local session's Python workers now, one per core, each importing ``modules``, in
    a background job: the first Python tasks of the run then find workers ready instead of
    starting them (PySpark's worker, pyarrow and the project's modules), while the driver does
    other work. Returns the thread (None for a cluster's executors, which start their own)."""
    context = spark.sparkContext
    if not _is_local_master(str(context.master)):
        return None
    cores = context.defaultParallelism

    def warm(batches):
        import importlib

        for name in modules:
            importlib.import_module(name)
        yield from batches

    def run() -> None:
        try:
            spark.range(0, cores, 1, cores).mapInArrow(warm, "id long").collect()
        except Exception as error:  # noqa: BLE001 - only a head start: the run's own tasks still start workers
            logger.debug("Warming the Python workers failed: %s", error)

    thread = threading.Thread(target=run, name="warm-python-workers", daemon=True)
    thread.start()
    return thread
