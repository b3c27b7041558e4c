"""Progress lines of a node's Spark work, taken on the driver from Spark's status tracker."""

import logging
import re
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


def test_a_terminal_gets_a_progress_bar_of_images_between_the_lines(spark, monkeypatch):
    import io

    import rich
    from rich.console import Console

    from fruits_kedro import progress

    screen = io.StringIO()
    monkeypatch.setattr(rich, "_console", Console(file=screen, force_terminal=True, width=120))
    monkeypatch.setattr(progress, "BAR_REFRESH_SECONDS", 0.1)

    def slowly(rows):
        time.sleep(0.5)
        yield from rows

    with SparkProgress(spark.sparkContext, "extract_features", interval=60, images=800, rejected=lambda: 2):
        spark.sparkContext.parallelize(range(8), 8).mapPartitions(slowly).count()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # colours and cursor moves
    assert re.search(r"extract_features [━╺╸]+ \d+/800 images .* \d+ images/s, 2 rejected", shown), shown[-500:]
    assert "━" in shown  # the bar itself


def test_no_bar_where_the_console_is_not_a_terminal(spark, monkeypatch):
    import io

    import rich
    from rich.console import Console

    screen = io.StringIO()
    monkeypatch.setattr(rich, "_console", Console(file=screen, force_terminal=False))
    with SparkProgress(spark.sparkContext, "fit_pca", interval=0.2):
        spark.sparkContext.parallelize(range(4), 4).map(lambda x: time.sleep(0.3) or x).count()
    assert screen.getvalue() == ""
