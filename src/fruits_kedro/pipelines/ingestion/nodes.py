"""Ingestion nodes: pure Spark transformations of the image listing.

``label_images`` derives ``label`` (the parent folder, spaces -> ``_``) and ``split`` (the
grandparent folder, when the file sits two folders down) and keeps image files only, by the
rules of :mod:`fruits_kedro.datasets.photo_rules` (which the stream applies too).
``sample_per_class`` keeps a deterministic N per (split, label). ``attach_image_bytes``
adds the bytes as a lazy column, fetched by the executors only for the rows that remain.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fruits_kedro import progress
from fruits_kedro.datasets.image_folder import read_file_bytes
from fruits_kedro.datasets.photo_rules import (  # noqa: F401 - normalize_label: the labels' rule, named here too
    depth,
    image_extension_pattern,
    labelled,
    normalize_label,
    skip_reason,
)
from fruits_kedro.feature_settings import IMAGE_KEY, ReusableFeatures, feature_settings, reusable_features
from fruits_kedro.params import section

logger = logging.getLogger(__name__)


def _extensions(params: dict[str, Any]) -> list[str]:
    return section("ingestion", params).extensions


def unsplit_folders(image_files: DataFrame, params: dict[str, Any]) -> list[str]:
    """Folders of images directly under the root while other images sit in split folders
    (``<root>/<Split>/<Class>/``): such a folder becomes a class with no split. Fruits-360's
    own root has one (``test-multiple_fruits``)."""
    images = image_files.where(
        F.col("skipped").isNull() & F.col("relative_path").rlike(image_extension_pattern(_extensions(params)))
    )
    found = images.agg(
        F.max((depth() >= 3).cast("int")).alias("split"),
        F.sort_array(F.collect_set(F.when(depth() == 2, F.split("relative_path", "/")[0]))).alias("unsplit"),
    ).first()
    return list(found["unsplit"] or []) if found["split"] else []


def _skip_reason(params: dict[str, Any], excluded_folders: list[str]) -> F.Column:
    """Why a listed file is not an image of this run (null: it is one), before sampling."""
    settings = section("ingestion", params)
    return skip_reason(settings.extensions, settings.max_file_bytes, excluded_folders)


def _excluded_folders(image_files: DataFrame, params: dict[str, Any], warn: bool) -> list[str]:
    exclude = section("ingestion", params).unsplit_folders == "exclude"
    if not (exclude or warn):
        return []  # kept folders change no count: no query
    folders = unsplit_folders(image_files, params)
    if folders and warn:
        logger.warning(
            "Images directly in %s, beside split folders: %s (ingestion.unsplit_folders: %s)",
            ", ".join(repr(f) for f in folders),
            "left out" if exclude else "each labelled as a class of its own with no split",
            "exclude" if exclude else "keep; set it to exclude to leave them out",
        )
    return folders if exclude else []


def label_images(image_files: DataFrame, params: dict[str, Any]) -> DataFrame:
    """Keep image files and add ``label`` and ``split`` from their folders.

    Never kept: what the listing skipped (FIFOs, devices, broken links, too large), files
    without an image extension or a class folder, files over ``max_file_bytes``, and, with
    ``unsplit_folders: exclude``, folders of images beside the split folders.
    """
    excluded = _excluded_folders(image_files, params, warn=True)
    return labelled(image_files.where(_skip_reason(params, excluded).isNull()))


def account_for_listing(image_files: DataFrame, sampled_images: DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """How many files were listed, and why each one that goes no further was left out (the
    reasons :func:`label_images` applies, then sampling). Feature extraction's report
    completes the account."""
    excluded = _excluded_folders(image_files, params, warn=False)
    listed = image_files.select("path", "relative_path", "size", "skipped")
    reason = _skip_reason(params, excluded)
    if section("ingestion", params).sample_per_class is not None:
        # Without sampling, every image label_images keeps goes on: no join needed.
        sampled = sampled_images.select("path", F.lit(True).alias("_sampled"))
        listed = listed.join(sampled, on="path", how="left")
        reason = F.coalesce(
            reason, F.when(F.col("_sampled").isNull(), F.lit("not drawn by ingestion.sample_per_class"))
        )
    counts = listed.groupBy(reason.alias("reason")).count().collect()
    skipped = {row["reason"]: int(row["count"]) for row in counts if row["reason"] is not None}
    return {"listed": sum(int(row["count"]) for row in counts), "skipped_by_reason": dict(sorted(skipped.items()))}


def sample_per_class(images: DataFrame, params: dict[str, Any]) -> DataFrame:
    """Keep at most ``sample_per_class`` images of each (split, label), chosen by a seeded hash.

    The same seed keeps the same files on every run and on every cluster size. ``null``
    keeps every image.
    """
    settings = section("ingestion", params)
    n, seed = settings.sample_per_class, settings.seed
    if n is None:
        return images
    order = Window.partitionBy("split", "label").orderBy(F.xxhash64(F.col("path"), F.lit(seed)), F.col("path"))
    return images.withColumn("_rank", F.row_number().over(order)).where(F.col("_rank") <= int(n)).drop("_rank")


def reusable_previous_features(
    previous_image_features: DataFrame | None,
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    params: dict[str, Any],
) -> ReusableFeatures:
    """In incremental mode, the previous run's features, if they were computed with this run's
    feature settings (backbone, input size, weights, decoder); otherwise nothing, and every
    image is featurized again."""
    # The orb_baseline and evaluation pipelines map their own section here: it has no switch.
    if not params.get("incremental") or previous_image_features is None:
        return ReusableFeatures()
    settings = feature_settings(backbone_params, preprocessing_params, params["runtime"])
    return ReusableFeatures(reusable_features(previous_image_features, settings))


def select_images_to_featurize(images: DataFrame, reusable_image_features: ReusableFeatures) -> DataFrame:
    """Keep only images with no reusable features yet (new or changed files).

    A file is known when its path, size and modification stamp (mtime, or ETag on S3) match a
    row of the reusable features, so a replaced photo is featurized again. Without reusable
    features (not incremental, a first run, other settings), every image is kept.
    """
    if reusable_image_features.frame is None:
        return images
    known = reusable_image_features.frame.select(*IMAGE_KEY)
    return images.join(known, on=list(IMAGE_KEY), how="left_anti")


def attach_image_bytes(images: DataFrame, params: dict[str, Any]) -> DataFrame:
    """Spread the images over partitions and add their bytes as ``content``.

    The listing is small, so its row count is cheap; it sets the partitions: a whole number
    of waves of one task per core, equal in size and of at most ``images_per_partition``
    images. Equal waves leave no core idle at the end of the CNN stage, and few large tasks
    pay the per-task cost (task launch, UDF hand-over) a few times only (docs/performance.md).
    """
    n_images = images.count()
    per_partition = section("ingestion", params).images_per_partition
    cores = images.sparkSession.sparkContext.defaultParallelism
    waves = max(1, -(-n_images // (cores * per_partition)))
    partitions = cores * waves
    logger.info("Ingestion: %d images in %d partitions (%d per core)", n_images, partitions, waves)
    progress.expect_images(n_images)
    read_bytes = F.pandas_udf(read_file_bytes, "binary")
    return images.repartition(partitions).withColumn("content", read_bytes(F.col("path")))
