"""A class-data sharing (AppCDS) archive of Spark's classes, for the local driver JVM.

A fresh JVM spends seconds loading and verifying Spark's classes, when a session starts and
in a run's first queries (figures in docs/performance.md). Java's class-data sharing maps
those classes from an archive instead.

The archive is made once per Java runtime and Spark release (``make`` does it, or
``python -m fruits_kedro.spark_class_archive``) by a JVM that runs a small job touching the
code paths of a run (Arrow and pandas UDFs, shuffles, a cached DataFrame, Spark ML) with
``-XX:ArchiveClassesAtExit`` and writes the archive as it exits; a streaming query over a
Python data source archives the classes of a streaming run. A second JVM must then start
with it under ``-Xshare:on`` (which refuses an unusable archive) before it is moved into
place: a truncated archive crashes the JVM that maps it. :func:`java_options` names the
archive for the driver when it exists; a JVM that finds it stale ignores it silently
(``-Xshare:auto``) and starts as it would without it.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_DIRECTORY = "~/.cache/fruits_kedro/jvm"
# Spark's launcher adds its own options; these only choose the archive and keep a stale
# one from printing warnings on every start.
_SILENT = ["-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]


def java_executable() -> Path | None:
    """The ``java`` that Spark's launcher runs: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else shutil.which("java")
    if candidate is None or not Path(candidate).exists():
        return None
    return Path(candidate).resolve()


def archive_path(directory: str | Path | None = None) -> Path | None:
    """Where the archive for this Java runtime and this Spark installation lives, in
    ``directory`` (default :data:`DEFAULT_DIRECTORY`); None when no Java is found. The name
    changes with either, so an upgrade never maps a stale archive."""
    java = java_executable()
    if java is None:
        return None
    import pyspark
    from pyspark.find_spark_home import _find_spark_home

    jars = Path(_find_spark_home()) / "jars"
    # Each Spark installation (each virtualenv) has archives of its own: its classpath is
    # part of an archive, and making one must not delete another installation's.
    installation = hashlib.sha256(str(jars).encode()).hexdigest()[:8]
    identity = hashlib.sha256()
    runtime_files = [java, java.parent.parent / "lib" / "server" / "libjvm.so", java.parent.parent / "lib" / "modules"]
    for path in runtime_files:
        if path.exists():
            stat = path.stat()
            identity.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    # The JVM refuses an archive whose jars changed size or time: a reinstalled PySpark (a new
    # virtualenv at the same path) must get a new archive, not a silently ignored one.
    for jar in sorted(jars.glob("*.jar")):
        stat = jar.stat()
        identity.update(f"{jar.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    # A changed job archives other classes: a new name, so that make builds the archive again.
    for job in (_representative_job, _representative_stream):
        identity.update(inspect.getsource(job).encode())
    name = f"spark-{pyspark.__version__}-{installation}-{identity.hexdigest()[:16]}.jsa"
    return Path(directory or DEFAULT_DIRECTORY).expanduser() / name


def java_options(directory: str | Path | None = None) -> list[str]:
    """Driver JVM options that map the archive, or none when it has not been made."""
    path = archive_path(directory)
    if path is None or not path.is_file():
        return []
    return [f"-XX:SharedArchiveFile={path}", *_SILENT]


def build(directory: str | Path | None = None, timeout: float = 900) -> Path:
    """Make the archive unless it exists, remove this installation's stale ones; returns its path."""
    target = archive_path(directory)
    if target is None:
        raise RuntimeError("No Java runtime found: set JAVA_HOME or put java on PATH (Java 17 or newer).")
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            _in_child("--dump", partial, timeout)
            if not partial.is_file() or partial.stat().st_size == 0:
                raise RuntimeError(f"The JVM wrote no class archive to {partial}")
            _in_child("--check", partial, timeout)
            os.replace(partial, target)  # atomic: no JVM ever maps a half-written archive
        finally:
            partial.unlink(missing_ok=True)
    installation = target.name.split("-")[-2]
    for stale in target.parent.glob(f"spark-*-{installation}-*.jsa"):
        if stale != target:  # this installation's, made for an earlier Java or Spark release
            stale.unlink(missing_ok=True)
    return target


def _in_child(step: str, archive: Path, timeout: float) -> None:
    """Run one JVM step in its own Python process: a JVM writes its archive when it exits,
    and PySpark starts one JVM per process."""
    command = [sys.executable, "-m", "fruits_kedro.spark_class_archive", step, str(archive)]
    completed = subprocess.run(command, timeout=timeout, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"Making the JVM class archive failed at {step} (exit status {completed.returncode}):\n"
            f"{completed.stderr[-4000:]}"
        )


def _session(java_option: str):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("fruits_kedro_class_archive")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
        .config("spark.python.daemon.module", "fruits_kedro.pyspark_daemon")
        .config("spark.driver.extraJavaOptions", java_option)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _representative_job(spark) -> None:
    """Touch the classes a run loads: a pandas listing, string functions and a count,
    a shuffle, iterator pandas and Arrow UDFs streaming into each other, a persisted
    result, Spark ML."""
    from collections.abc import Iterator

    import numpy as np
    import pandas as pd
    from pyspark import StorageLevel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StandardScaler, StringIndexer
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    listing = pd.DataFrame(
        {"path": [f"/photos/Training/Class {i % 4}/{i}.JPG" for i in range(256)], "size": np.arange(256)}
    )
    files = spark.createDataFrame(listing)
    parts = F.split(F.col("path"), "/")
    labelled = files.where(F.col("path").rlike(r"(?iu)\.jpg$") & (F.size(parts) >= 2)).select(
        "path", F.regexp_replace(F.trim(F.element_at(parts, -2)), r"(?U)\s", "_").alias("label"), "size"
    )
    labelled.count()

    def features(batches):
        for paths in batches:
            yield pd.Series([np.full(8, len(p), dtype=np.float32) + np.arange(8) for p in paths])

    # Real objects, not this module's postponed (string) annotations: PySpark reads the
    # hints to choose the UDF type, and pandas is imported here, not at module level.
    features.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.Series]}
    features = F.pandas_udf(features, "array<float>").asNondeterministic()

    featurized = (
        labelled.repartition(4)
        .select("path", "label", features("path").alias("features"))
        .where(F.col("features").isNotNull())
    )

    def row_counts(batches):
        import pyarrow as pa

        for batch in batches:
            yield pa.RecordBatch.from_pydict({"rows": [batch.num_rows]})

    featurized.mapInArrow(row_counts, "rows long").collect()  # as the features' Parquet writer
    featurized = featurized.persist(StorageLevel.MEMORY_AND_DISK)  # as the evaluation
    vectors = StringIndexer(inputCol="label", outputCol="target").fit(featurized).transform(featurized)
    vectors = vectors.withColumn("vector", array_to_vector("features"))
    scaled = StandardScaler(inputCol="vector", outputCol="scaled").fit(vectors).transform(vectors)
    LogisticRegression(featuresCol="scaled", labelCol="target", maxIter=3).fit(scaled)
    featurized.groupBy("label").count().toPandas()
    featurized.unpersist()


def _representative_stream(spark) -> None:
    """Touch the classes of a streaming run: a Python streaming source (``DataSourceStreamReader``
    with a files limit and ``Trigger.AvailableNow``, as the project's sources), micro-batches
    handed to Python (``foreachBatch``), the checkpoint's offset and commit logs. The source is
    defined here: the JVM's classes are the same whatever source it runs."""
    import tempfile

    from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
    from pyspark.sql.streaming.datasource import ReadMaxFiles, SupportsTriggerAvailableNow

    files = 3

    class Reader(DataSourceStreamReader, SupportsTriggerAvailableNow):
        def initialOffset(self):
            return {"taken": 0}

        def getDefaultReadLimit(self):
            return ReadMaxFiles(2)

        def prepareForTriggerAvailableNow(self):
            pass

        def latestOffset(self, start, limit):
            return {"taken": min(files, start["taken"] + limit.max_files)}

        def partitions(self, start, end):
            return [InputPartition(i) for i in range(start["taken"], end["taken"])]

        def read(self, partition):
            yield (f"/photos/Class 0/{partition.value}.jpg", 3)

    class Source(DataSource):
        @classmethod
        def name(cls):
            return "fruits_kedro_class_archive"

        def schema(self):
            return "path string, size long"

        def streamReader(self, schema):
            return Reader()

    spark.dataSource.register(Source)
    with tempfile.TemporaryDirectory(prefix="fruits_kedro_class_archive_") as folder:
        query = (
            spark.readStream.format(Source.name())
            .load()
            .writeStream.foreachBatch(lambda batch, _: batch.collect())
            .option("checkpointLocation", str(Path(folder) / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()


def _stop_and_wait(spark) -> None:
    """Stop Spark and wait for its JVM to exit (it writes the archive as it does)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    spark.stop()
    if process is not None:
        process.stdin.close()  # the gateway JVM exits when its stdin closes
        process.wait(timeout=600)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make the driver JVM's class-data archive of Spark's classes.")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--directory", default=None, help=f"default: {DEFAULT_DIRECTORY}")
    args = parser.parse_args(argv)
    if args.dump:
        spark = _session(f"-XX:ArchiveClassesAtExit={args.dump}")
        _representative_job(spark)
        _representative_stream(spark)
        _stop_and_wait(spark)
    elif args.check:
        spark = _session(f"-XX:SharedArchiveFile={args.check} -Xshare:on")
        spark.range(10).count()
        _stop_and_wait(spark)
    else:
        existed = (archive_path(args.directory) or Path()).is_file()
        path = build(args.directory)
        print(f"JVM class archive: {path}" + (" (up to date)" if existed else " (made)"))


if __name__ == "__main__":
    main()
