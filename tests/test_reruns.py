"""Reruns are exact, and an interrupted run never leaves outputs that look complete."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from fruits_kedro.datasets.spark_csv import SparkCSVFileDataset
from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset
from tests.conftest import PROJECT_ROOT, run_kedro
from tests.outputs import current_output, current_outputs


def _parquet_content(path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values("path").reset_index(drop=True)


def test_rerun_with_no_new_images_gives_identical_outputs(default_run, generated_sample, tmp_path, monkeypatch):
    """The same numbers, under the new run's id; the replaced run's files stay readable."""
    project = tmp_path / "project"
    shutil.copytree(default_run, project, symlinks=True)
    before = current_outputs(project)
    before_csv = pd.read_csv(current_output(project, "04_feature/image_features_pca.csv"))
    before_pca = _parquet_content(current_output(project, "04_feature/image_features_pca.parquet"))
    before_report = json.loads(current_output(project, "08_reporting/pca_explained_variance.json").read_text())
    run_kedro(project, monkeypatch, images_root=str(generated_sample), backbone={"weights": None, "input_size": 64})
    after = current_outputs(project)
    assert after["run_id"] != before["run_id"] and set(after["outputs"]) == set(before["outputs"])
    csv = pd.read_csv(current_output(project, "04_feature/image_features_pca.csv"))
    assert set(csv["run_id"]) == {after["run_id"]} and set(before_csv["run_id"]) == {before["run_id"]}
    pd.testing.assert_frame_equal(csv.drop(columns="run_id"), before_csv.drop(columns="run_id"))
    pd.testing.assert_frame_equal(
        _parquet_content(current_output(project, "04_feature/image_features_pca.parquet")), before_pca
    )
    report = json.loads(current_output(project, "08_reporting/pca_explained_variance.json").read_text())
    assert report == {**before_report, "run_id": after["run_id"]}
    assert all((project / "data" / path).exists() for path in before["outputs"].values())


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    sys.path.insert(0, {root!r})
    from tests.conftest import project_spark_conf
    from fruits_kedro import spark as spark_module
    from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset
    from pyspark.sql import functions as F

    spark_module.configure(project_spark_conf())
    spark = spark_module.get_spark()
    # Small Arrow batches: each part file appears after its first 5 rows, long before its
    # task (and the job, and the commit) ends.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "5")

    @F.pandas_udf("long")
    def slowly(values: pd.Series) -> pd.Series:
        time.sleep(0.2 * len(values))  # long enough for the test to kill the run while parts are being written
        return values

    frame = spark.range(0, 400, numPartitions=8).withColumn("id", slowly("id"))
    SparkParquetFsspecDataset(filepath={target!r}).save(frame)
    """
)


def test_a_killed_write_leaves_the_previous_parquet_intact(spark, tmp_path):
    target = tmp_path / "features.parquet"
    previous = spark.createDataFrame([(i,) for i in range(10)], "id long")
    SparkParquetFsspecDataset(filepath=str(target)).save(previous)

    script = _SLOW_WRITER.format(root=str(PROJECT_ROOT), target=str(target))
    child = subprocess.Popen(
        [sys.executable, "-c", script], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not any((target / "_temporary").rglob("*.parquet")):  # parts are being written
            assert child.poll() is None, "the writer ended before it could be interrupted"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
        child.wait()

    reloaded = SparkParquetFsspecDataset(filepath=str(target)).load()
    assert sorted(r.id for r in reloaded.collect()) == list(range(10))
    assert sorted(pd.read_parquet(target)["id"]) == list(range(10))  # plain pyarrow readers too


def test_a_failed_csv_write_leaves_the_previous_csv_intact(spark, tmp_path):
    target = tmp_path / "features.csv"
    SparkCSVFileDataset(filepath=str(target)).save(spark.createDataFrame([("a", 1.0)], "path string, pc_1 double"))
    before = target.read_bytes()
    failing = spark.range(0, 20000, numPartitions=4).selectExpr(
        "cast(id as string) as path", "case when id = 15000 then raise_error('disk gone') else id end as pc_1"
    )
    with pytest.raises(Exception, match="disk gone"):
        SparkCSVFileDataset(filepath=str(target), save_args={"rows_per_chunk": 1000}).save(failing)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["features.csv"]  # the temporary file is gone
