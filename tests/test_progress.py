"""Progress lines of a node's Spark work, taken on the driver from Spark's status tracker."""

import logging
import time

from fruits_kedro.progress import SparkProgress


def test_progress_lines_count_tasks_images_and_rejections_while_spark_works(spark, caplog):
    def slowly(rows):
        time.sleep(0.5)
        yield from rows

    with caplog.at_level(logging.INFO, logger="fruits_kedro.progress"):
        with SparkProgress(spark.sparkContext, "extract_features", interval=0.3, images=800, rejected=lambda: 2):
            spark.sparkContext.parallelize(range(8), 8).mapPartitions(slowly).count()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("extract_features: ")]
    assert lines, "no progress line during a job of several seconds"
    assert all("/8 tasks" in line for line in lines)
    assert any("of 800 images" in line and "2 rejected" in line and "s left" in line for line in lines)


def test_no_line_before_any_spark_work(spark):
    assert SparkProgress(spark.sparkContext, "label_images").line() is None


def test_a_runs_featurization_reports_images_done_of_the_runs_total(tmp_path, monkeypatch, generated_sample):
    from fruits_kedro import progress
    from tests.conftest import make_project_copy, run_kedro

    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.5)
    project = make_project_copy(tmp_path / "project")
    lines: list[str] = []  # Kedro's logging set-up drops handlers that a test adds: take the calls
    monkeypatch.setattr(progress.logger, "info", lines.append)
    run_kedro(project, monkeypatch, images_root=str(generated_sample), backbone={"weights": None})
    photos = sum(1 for _ in generated_sample.rglob("*.jpg"))
    assert any(
        line.startswith("merge_with_previous_features: ") and f"of {photos:,} images" in line and "rejected" in line
        for line in lines
    ), lines
