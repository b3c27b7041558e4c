"""Progress lines of a node's Spark work, taken on the driver from Spark's status tracker."""

import logging
import re
import time
from dataclasses import replace

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

    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.05)  # a line while the CNN stage runs, however short
    project = make_project_copy(tmp_path / "project")
    lines: list[str] = []  # Kedro's logging set-up drops handlers that a test adds: take the calls
    monkeypatch.setattr(progress.logger, "info", lines.append)
    run_kedro(project, monkeypatch, images_root=str(generated_sample), backbone={"weights": None})
    photos = sum(1 for _ in generated_sample.rglob("*.jpg"))
    assert any(
        line.startswith("featurizing: ") and f"of {photos:,} images" in line and "rejected" in line for line in lines
    ), lines


def test_the_featurizing_line_counts_images_within_a_task(spark, tmp_path, monkeypatch):
    """One task of 16 images in Arrow batches of 4: the line passes through counts between 0
    and 16 before the task ends. Each count the tasks send is looked at as it arrives, so
    no timing decides what is seen."""
    from fruits_kedro import progress
    from fruits_kedro.inference.featurize import featurize_images
    from tests.inference.raw_images import FEATURE_EXTRACTION, PREPROCESSING, random_images

    images = random_images(spark, tmp_path, n=16, size=32).coalesce(1)
    progress.expect_images(16)
    reporter = progress.for_node(spark.sparkContext, "merge_with_previous_features", featurizes=True)
    lines: list[str] = []
    record = progress.ImageCounter.record

    def record_and_look(counter, partition, done):
        record(counter, partition, done)
        lines.append(reporter.line())

    monkeypatch.setattr(progress.ImageCounter, "record", record_and_look)
    previous_batch = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "4")
    try:
        features, _ = featurize_images(
            images, {"name": "mobilenet_v2", "input_size": 32, "weights": None}, PREPROCESSING, FEATURE_EXTRACTION
        )
        assert features.count() == 16
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous_batch)
    matches = [re.match(r"featurizing: (\d+) of 16 images \(0/1 tasks\)", line) for line in lines]
    counts = [int(m.group(1)) for m in matches if m]
    assert any(0 < count < 16 for count in counts), lines


def test_the_image_count_takes_each_tasks_latest_total_and_ignores_strangers(spark):
    from fruits_kedro.progress import ImageCounter, TaskImageReport

    counter = ImageCounter.for_driver(spark.sparkContext)
    try:
        first, second = TaskImageReport(counter.sender, 0), TaskImageReport(counter.sender, 1)
        first.add(3)
        second.add(5)
        retried = TaskImageReport(counter.sender, 0)  # a retry counts from 0 again
        retried.add(1)
        stranger = replace(counter.sender, token="another run")
        TaskImageReport(stranger, 2).add(100)
        first.add(4)
        deadline = time.monotonic() + 30  # loopback datagrams: delivered, but by another thread
        while counter.done() < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counter.done() == 12
    finally:
        counter.close()


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
