"""What the driver hands the executors through Spark's configuration, for every kind of
master: the interpreter, the S3 settings and credentials, the event-log folder."""

from __future__ import annotations

import os
import sys

from fruits_kedro.spark import session_conf

AWS = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_REGION": "eu-west-3",
    "AWS_ACCESS_KEY_ID": "key-id",
    "AWS_SECRET_ACCESS_KEY": "secret",
}


def test_a_standalone_cluster_runs_this_interpreter_and_gets_the_driver_s_s3_settings():
    environ = dict(AWS)
    conf = session_conf({"spark.master": "spark://127.0.0.1:7077", "fruits.forward_aws_credentials": True}, environ)
    assert conf["spark.pyspark.python"] == sys.executable
    assert environ["PYSPARK_PYTHON"] == sys.executable  # what PySpark itself reads
    assert {
        k.removeprefix("spark.executorEnv."): v for k, v in conf.items() if k.startswith("spark.executorEnv.")
    } == AWS
    assert "fruits.forward_aws_credentials" not in conf  # the project's switch, not Spark's


def test_without_the_switch_a_cluster_gets_where_s3_is_but_no_credentials():
    conf = session_conf({"spark.master": "spark://127.0.0.1:7077"}, dict(AWS))
    assert conf["spark.executorEnv.AWS_ENDPOINT_URL"] == AWS["AWS_ENDPOINT_URL"]
    assert "spark.executorEnv.AWS_SECRET_ACCESS_KEY" not in conf
    assert "spark.executorEnv.AWS_ACCESS_KEY_ID" not in conf


def test_yarn_keeps_the_cluster_s_interpreter_unless_one_is_configured():
    assert "spark.pyspark.python" not in session_conf({}, {})
    environ: dict[str, str] = {}
    conf = session_conf({"spark.pyspark.python": "/opt/venv/bin/python"}, environ)
    assert environ["PYSPARK_PYTHON"] == conf["spark.pyspark.python"] == "/opt/venv/bin/python"


def test_a_relative_event_log_folder_is_made_absolute_and_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = session_conf(
        {"spark.master": "local[2]", "spark.eventLog.enabled": True, "spark.eventLog.dir": "logs/ev"}, {}
    )
    assert conf["spark.eventLog.dir"] == (tmp_path / "logs" / "ev").as_uri()
    assert (tmp_path / "logs" / "ev").is_dir()
    on_s3 = session_conf({"spark.eventLog.enabled": True, "spark.eventLog.dir": "s3://b/p/spark-events"}, {})
    assert on_s3["spark.eventLog.dir"] == "s3://b/p/spark-events"


def test_an_event_log_folder_on_s3_is_made_to_exist(aws_env, monkeypatch):
    """Spark refuses a missing event-log folder; on S3 it exists once an object is under it."""
    import s3fs

    from fruits_kedro.spark import _ensure_remote_folder
    from tests.s3_server import new_bucket

    bucket = new_bucket()
    _ensure_remote_folder(f"s3://{bucket}/fruits/spark-events")
    assert s3fs.S3FileSystem(skip_instance_cache=True).isdir(f"{bucket}/fruits/spark-events")


def test_a_driver_started_here_hides_spark_s_start_up_notices_unless_verbose(monkeypatch):
    from fruits_kedro.verbosity import LOG4J2_QUIET, VERBOSE_ENV

    quiet = f"-Dlog4j2.configurationFile={LOG4J2_QUIET.as_uri()}"
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    environ: dict[str, str] = {}
    local = session_conf(
        {"spark.master": "local[2]", "spark.driver.extraJavaOptions": "-Dderby.system.home=/d"}, environ
    )
    assert local["spark.driver.extraJavaOptions"] == f"-Dderby.system.home=/d {quiet}"
    assert environ["SPARK_LOCAL_IP"] == "127.0.0.1"  # one machine: no hostname warning
    assert LOG4J2_QUIET.is_file() and "rootLogger.level = warn" in LOG4J2_QUIET.read_text()
    cluster = session_conf({"spark.master": "spark://127.0.0.1:7077"}, {})
    assert cluster["spark.driver.extraJavaOptions"] == quiet
    assert "spark.driver.extraJavaOptions" not in session_conf({}, {})  # YARN: the cluster's logging
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert "spark.driver.extraJavaOptions" not in session_conf({"spark.master": "local[2]"}, {})


def test_warmed_python_workers_have_imported_the_modules_when_the_next_task_runs(tmp_path):
    """In a new session (as a run's): its first tasks find the workers started, modules imported."""
    import subprocess

    code = """
import sys
from pyspark.sql import SparkSession
from fruits_kedro.spark import warm_python_workers
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
marker = "fruits_kedro.labels"
warm = sys.argv[1] == "warm"
if warm:
    warm_python_workers(spark, (marker,)).join(timeout=300)

def imported(batches):
    import sys
    import pyarrow as pa
    for batch in batches:
        yield pa.record_batch({"found": [str(marker in sys.modules)] * batch.num_rows})

print(sorted(row.found for row in spark.range(0, 2, 1, 2).mapInArrow(imported, "found string").collect()))
"""
    found = {}
    for mode in ("warm", "cold"):
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        run = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        found[mode] = run.stdout.strip().splitlines()[-1]
    assert found == {"warm": "['True', 'True']", "cold": "['False', 'False']"}


def _in_new_process(code: str, tmp_path, **environ: str):
    import subprocess

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, **environ}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)


def test_a_session_started_in_the_background_has_the_configuration_and_is_this_thread_s(tmp_path):
    """As a run's: Spark starts while the driver goes on; the first use waits and gets the
    configured session, active in the thread that asked for it."""
    code = """
import threading
from pyspark.sql import SparkSession
from fruits_kedro import spark
spark.configure({"spark.master": "local[1]", "spark.ui.enabled": False, "spark.sql.shuffle.partitions": 3})
spark.start_spark()
print("starting", any(thread.name == "start-spark" for thread in threading.enumerate()))
session = spark.started_session()
print("active", SparkSession.getActiveSession() is session is spark.get_spark())
print("settings", session.conf.get("spark.sql.shuffle.partitions"), session.sparkContext.master)
print("rows", session.range(5).count())
"""
    run = _in_new_process(code, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[-5:-1] == ["starting True", "active True", "settings 3 local[1]", "rows 5"]


def test_a_background_start_that_fails_raises_where_spark_is_needed_and_nothing_else_starts_it(tmp_path):
    code = """
from fruits_kedro import spark
print("before", spark.started_session())
spark.configure({"spark.master": "local[1]"})
spark.start_spark()
try:
    spark.get_spark()
except Exception as error:
    print("error", type(error).__name__)
"""
    run = _in_new_process(code, tmp_path, JAVA_HOME=str(tmp_path / "no-java"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[-3:-1] == ["before None", "error PySparkRuntimeError"]
