"""Feature extraction: image files -> CNN feature vectors, merged with the reusable ones of
the last run, and an account of every listed file.

The featurization itself (read, decode and infer in Spark tasks fed Arrow batches, one pass
over the photos) is :func:`fruits_kedro.inference.featurize.featurize_images`; this pipeline
wires it to the parameters, keeps the previous features of unchanged images (incremental
mode), and reports what became of each listed file.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pyspark.sql import DataFrame

from fruits_kedro.datasets.spark_parquet import row_count
from fruits_kedro.feature_settings import IMAGE_KEY, ReusableFeatures
from fruits_kedro.inference.featurize import RejectedImages, featurize_images

logger = logging.getLogger(__name__)


def extract_features(
    raw_images: DataFrame,
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    params: dict[str, Any],
    ingestion_params: dict[str, Any] | None = None,
) -> tuple[DataFrame, RejectedImages]:
    """Every listed image that can be decoded, with its ``features`` (array<float>), and the
    images that cannot be, each with its reason: :func:`featurize_images` with
    ``params:backbone``, ``params:preprocessing`` and ``params:feature_extraction``; a file
    found over ``ingestion.max_file_bytes`` when it is read is rejected.

    Nothing runs until the features are saved; saving them fills the :class:`RejectedImages`
    (read it after the save).
    """
    limit = (ingestion_params or {}).get("max_file_bytes")
    return featurize_images(raw_images, backbone_params, preprocessing_params, params, max_file_bytes=limit)


def merge_with_previous_features(
    featurized_images: DataFrame,
    reusable_image_features: ReusableFeatures,
    current_images: DataFrame,
) -> tuple[DataFrame, dict[str, Any]]:
    """The features of every current image: this run's, plus (incremental mode) the reusable
    previous ones (same feature settings) for images that did not change. Images no longer
    listed are dropped, and so are the ones that could not be decoded
    (:func:`report_feature_extraction` lists them).

    Returns the features, still lazy (saving them runs the CNN, once, in the executors), and
    what was reused, for :func:`report_feature_extraction`.
    """
    if reusable_image_features.frame is None:
        return featurized_images, {"incremental": False, "reused": 0}
    # Unchanged images (same path, size and stamp) were not featurized this time
    # (select_images_to_featurize): their previous features are kept. This never looks at
    # this run's features, which would run the CNN once more just to compare.
    current_keys = current_images.select(*IMAGE_KEY)
    reused = reusable_image_features.frame.join(current_keys, on=list(IMAGE_KEY), how="left_semi")
    # Read lazily, in the same job that writes the new version: the Parquet dataset commits
    # under new part names and deletes the old parts only after that job has finished.
    # (A local checkpoint would keep them on executors that dynamic allocation may remove.)
    reused = reused.select(*featurized_images.columns)
    n_reused = reused.count()
    logger.info("Incremental feature extraction: %d images' features reused", n_reused)
    return featurized_images.unionByName(reused), {"incremental": True, "reused": n_reused}


class AccountingError(RuntimeError):
    """The files a run listed are not all accounted for: some went missing on the way."""


def report_feature_extraction(
    image_features: DataFrame,
    rejected_images: RejectedImages,
    images: DataFrame,
    reuse: dict[str, Any],
    listing_account: dict[str, Any],
    skipped_files: DataFrame,
) -> tuple[dict[str, Any], DataFrame, DataFrame]:
    """What this run did with every listed file: featurized, reused from the last run,
    rejected, or skipped, with counts per reason; the rejected files themselves, each with
    its reason and the label of its folder; and the skipped ones (``skipped_files``: path,
    reason), handed on to be saved with the report they complete. Fails if ``listed`` is not
    the sum of the others.

    Runs after the features are saved (they are an input), when the featurization has
    filled ``rejected_images``; no CNN runs here.
    """
    total = row_count(image_features)
    reasons = rejected_images.reasons
    skipped = listing_account["skipped_by_reason"]
    report = {
        "incremental": reuse["incremental"],
        "listed": listing_account["listed"],
        "featurized": total - reuse["reused"],
        "reused": reuse["reused"],
        "rejected": len(reasons),
        "skipped": sum(skipped.values()),
        "rejected_by_reason": dict(sorted(Counter(reasons.values()).items())),
        "skipped_by_reason": skipped,
    }
    logger.info(
        "Feature extraction: %d files listed: %d featurized, %d reused, %d rejected, %d skipped",
        report["listed"],
        report["featurized"],
        report["reused"],
        report["rejected"],
        report["skipped"],
    )
    for path in sorted(reasons)[:10]:
        logger.warning("Rejected %s: %s", path, reasons[path])
    accounted = report["featurized"] + report["reused"] + report["rejected"] + report["skipped"]
    if accounted != report["listed"]:
        raise AccountingError(
            f"{report['listed']} files listed but {accounted} accounted for "
            f"(featurized + reused + rejected + skipped): {report}"
        )
    return report, rejected_images.to_frame(images), skipped_files
