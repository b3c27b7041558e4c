from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from fruits_kedro.pyspark_daemon import without_bundled_archives


def _installed_pyspark(site: Path) -> dict[str, str]:
    """A pip-style PySpark under ``site``, with the archives Spark puts on workers' paths."""
    (site / "pyspark" / "python" / "lib").mkdir(parents=True)
    (site / "pyspark" / "jars").mkdir()
    (site / "pyspark" / "__init__.py").write_text("")
    paths = {
        "zip": site / "pyspark" / "python" / "lib" / "pyspark.zip",
        "py4j": site / "pyspark" / "python" / "lib" / "py4j-0.10.9.9-src.zip",
        "jar": site / "pyspark" / "jars" / "spark-core_2.13-4.0.0.jar",
    }
    for path in paths.values():
        path.write_bytes(b"")
    return {name: str(path) for name, path in paths.items()}


def test_drops_the_archives_shipped_inside_the_installed_pyspark(tmp_path):
    site = tmp_path / "site-packages"
    bundled = _installed_pyspark(site)
    user_zip = str(tmp_path / "deps.zip")
    path = [bundled["zip"], bundled["py4j"], bundled["jar"], str(tmp_path / "work"), str(site), user_zip]
    assert without_bundled_archives(path) == [str(tmp_path / "work"), str(site), user_zip]


def test_keeps_the_path_of_a_cluster_spark_that_pyspark_is_not_installed_beside(tmp_path):
    # e.g. EMR: /usr/lib/spark/python/lib/pyspark.zip and no pip-installed pyspark
    cluster_zip = str(tmp_path / "spark" / "python" / "lib" / "pyspark.zip")
    path = [cluster_zip, str(tmp_path / "site-packages")]
    assert without_bundled_archives(path) == path


def test_keeps_archives_of_another_spark_install_than_the_installed_package(tmp_path):
    _installed_pyspark(tmp_path / "site-packages")
    other = str(tmp_path / "opt" / "spark" / "python" / "lib" / "pyspark.zip")
    path = [other, str(tmp_path / "site-packages")]
    assert without_bundled_archives(path) == path


def test_project_workers_import_compiled_pyspark_not_its_zip(spark):
    """The project's local Spark starts its Python workers through this daemon."""

    @F.pandas_udf("string")
    def where_pyspark_comes_from(ids: pd.Series) -> pd.Series:
        import sys

        import pyspark

        archives = [p for p in sys.path if p.endswith((".zip", ".jar"))]
        return pd.Series([f"{pyspark.__file__}|{';'.join(archives)}"] * len(ids))

    rows = spark.range(4, numPartitions=2).select(where_pyspark_comes_from("id").alias("origin")).collect()
    assert len(rows) == 4
    for row in rows:
        module_file, archives = row.origin.split("|")
        assert ".zip" not in module_file and module_file.endswith("pyspark/__init__.py")
        assert "pyspark.zip" not in archives


def test_a_reused_worker_freezes_what_it_holds_after_its_first_task(spark):
    """PySpark collects garbage after every task of a reused worker: from its second task on,
    the modules and model it keeps are frozen, out of those collections."""

    @F.pandas_udf("string")
    def worker_state(ids: pd.Series) -> pd.Series:
        import gc
        import os

        return pd.Series([f"{os.getpid()}:{gc.get_freeze_count()}"] * len(ids))

    states = []
    for _ in range(3):  # more tasks than cores: each worker runs more than one
        rows = spark.range(2, numPartitions=2).select(worker_state("id").alias("state")).distinct().collect()
        states += [tuple(int(x) for x in row.state.split(":")) for row in rows]
    by_worker: dict[int, list[int]] = {}
    for pid, frozen in states:
        by_worker.setdefault(pid, []).append(frozen)
    reused = {pid: counts for pid, counts in by_worker.items() if len(counts) > 1}
    assert reused, states
    for counts in reused.values():  # its first task seen here may be its first ever: then 0
        assert all(c > 1000 for c in counts[1:]), counts
