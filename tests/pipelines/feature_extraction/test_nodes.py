import pytest
from kedro.io import MemoryDataset

from fruits_kedro.feature_settings import ReusableFeatures
from fruits_kedro.inference.featurize import RejectedImages
from fruits_kedro.pipelines.feature_extraction.nodes import (
    AccountingError,
    extract_features,
    merge_with_previous_features,
    report_feature_extraction,
)
from tests.inference.raw_images import FEATURE_EXTRACTION, PREPROCESSING, random_images


def test_merge_keeps_unchanged_previous_features_and_drops_stale_ones(spark):
    schema = (
        "path string, relative_path string, label string, split string, size long, modified string, "
        "features array<float>"
    )
    previous = spark.createDataFrame(
        [
            ("/a.jpg", "T/A/a.jpg", "A", "T", 1, "m1", [1.0]),  # unchanged: reused
            ("/b.jpg", "T/A/b.jpg", "A", "T", 2, "m1", [2.0]),  # changed since (new size): recomputed
            ("/gone.jpg", "T/A/gone.jpg", "A", "T", 3, "m1", [3.0]),
        ],  # deleted: dropped
        schema,
    )
    featurized = spark.createDataFrame([("/b.jpg", "T/A/b.jpg", "A", "T", 5, "m2", [20.0])], schema)
    rejected_images = RejectedImages(spark.sparkContext)
    rejected_images.accumulator.add({"/bad.jpg": "empty file"})  # as the inference task does
    current = spark.createDataFrame(
        [("/a.jpg", "A", "T", 1, "m1"), ("/b.jpg", "A", "T", 5, "m2"), ("/bad.jpg", "A", "T", 4, "m2")],
        "path string, label string, split string, size long, modified string",
    )
    merged, reuse = merge_with_previous_features(featurized, ReusableFeatures(previous), current)
    assert merged.columns == previous.columns
    assert {r.path: list(r.features) for r in merged.collect()} == {"/a.jpg": [1.0], "/b.jpg": [20.0]}
    listing = {"listed": 4, "skipped_by_reason": {"not an image (extension)": 1}}
    skipped = spark.createDataFrame([("/notes.txt", "not an image (extension)")], "path string, reason string")
    report, rejected, named = report_feature_extraction(merged, rejected_images, current, reuse, listing, skipped)
    assert named is skipped
    assert {k: report[k] for k in ("incremental", "listed", "featurized", "reused", "rejected", "skipped")} == {
        "incremental": True,
        "listed": 4,
        "featurized": 1,
        "reused": 1,
        "rejected": 1,
        "skipped": 1,
    }
    assert report["rejected_by_reason"] == {"empty file": 1}
    assert [tuple(r) for r in rejected.collect()] == [("/bad.jpg", "A", "T", "empty file")]
    full, reuse = merge_with_previous_features(featurized, ReusableFeatures(), current)  # nothing reusable
    assert full.count() == 1
    report, _, _ = report_feature_extraction(full, rejected_images, current, reuse, {**listing, "listed": 3}, skipped)
    assert (report["incremental"], report["featurized"], report["reused"], report["rejected"]) == (False, 1, 0, 1)
    with pytest.raises(AccountingError, match="4 files listed but 3 accounted for"):
        report_feature_extraction(full, rejected_images, current, reuse, listing, skipped)  # a photo went missing


def test_kedro_hands_on_the_rejected_images_it_was_given(spark):
    """Kedro deep-copies what one node hands another in memory: the copy must still see
    what the tasks add afterwards, or the report would list no rejected image at all."""
    rejected_images = RejectedImages(spark.sparkContext)
    handed_on = MemoryDataset()
    handed_on.save(rejected_images)
    rejected_images.accumulator.add({"/late.jpg": "empty file"})
    assert handed_on.load().reasons == {"/late.jpg": "empty file"}


def test_the_cnn_runs_once_per_image_when_the_features_are_saved(spark, tmp_path):
    """Without a cache, only Spark's plan keeps the network from running twice per image
    (as a UDF column it did: once in a filter pushed below the repartition, once in the
    projection)."""
    images = random_images(spark, tmp_path, n=4, size=32).repartition(2)
    featurized, _ = extract_features(
        images, {"name": "mobilenet_v2", "input_size": 32, "weights": None}, PREPROCESSING, FEATURE_EXTRACTION
    )
    features, _ = merge_with_previous_features(featurized, ReusableFeatures(), images)
    plan = features._jdf.queryExecution().executedPlan().toString()
    assert plan.count("featurize_partition(") == 1, plan
