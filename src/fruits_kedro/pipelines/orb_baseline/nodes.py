"""ORB baseline: hand-crafted features to compare the CNN backbones against.

Each photo is decoded like the CNN input (:func:`fruits_kedro.imaging.decode.decode_image`,
so every image mode and size is handled the same way), then OpenCV turns it grey, enhances its
contrast (CLAHE or global equalisation), denoises it and blurs it lightly before ORB finds
keypoints and their 256-bit descriptors. All of that runs in the executors, in a pandas UDF.

The descriptors of the Training photos, sampled, are clustered with Spark ML KMeans into a
vocabulary of "visual words". Each descriptor's 256 bits are unpacked to 0/1 floats first:
the squared Euclidean distance between two such vectors *is* their Hamming distance, the
metric ORB descriptors are designed for. Every photo then becomes a histogram of its words
(length = vocabulary size). A photo with no keypoint gets a zero histogram and is counted
in the report: dropping it would make the baseline look better than it is.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.imaging.decode import ImageDecodeError, decode_image
from fruits_kedro.params import section

logger = logging.getLogger(__name__)

DESCRIPTOR_BYTES = 32  # ORB: 256 binary tests per keypoint
DESCRIPTOR_BITS = DESCRIPTOR_BYTES * 8
ORB_SCHEMA = "n_keypoints int, descriptors array<binary>, error string"


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    return section("orb_baseline", params).model_dump()


def enhance_grey(rgb: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """RGB uint8 -> the grey image ORB sees: contrast enhanced, denoised, lightly blurred."""
    import cv2  # imported where it runs (the executors): the pipeline's import stays light

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if settings["contrast"] == "clahe":
        tile = int(settings["clahe_tile_grid"])
        grey = cv2.createCLAHE(clipLimit=float(settings["clahe_clip_limit"]), tileGridSize=(tile, tile)).apply(grey)
    elif settings["contrast"] == "equalize":
        grey = cv2.equalizeHist(grey)
    if settings["denoise"] == "median":
        grey = cv2.medianBlur(grey, int(settings["median_kernel"]))
    elif settings["denoise"] == "nlmeans":
        # Better on heavy noise, but far slower than the rest of this function together.
        grey = cv2.fastNlMeansDenoising(grey, None, h=float(settings["nlmeans_strength"]))
    kernel = int(settings["blur_kernel"])
    if kernel > 0:
        # A light blur makes FAST corners and BRIEF tests less sensitive to JPEG noise.
        grey = cv2.GaussianBlur(grey, (kernel, kernel), 0)
    return grey


def orb_descriptors(grey: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """(n_keypoints, 32) uint8 ORB descriptors of a grey image; (0, 32) when there is none."""
    import cv2

    orb = cv2.ORB_create(
        nfeatures=int(settings["n_features"]),
        fastThreshold=int(settings["fast_threshold"]),
        edgeThreshold=int(settings["edge_threshold"]),
        patchSize=int(settings["patch_size"]),
    )
    _, descriptors = orb.detectAndCompute(grey, None)
    if descriptors is None:
        return np.empty((0, DESCRIPTOR_BYTES), np.uint8)
    return descriptors


def describe_batch(contents: pd.Series, settings: dict[str, Any]) -> pd.DataFrame:
    """Image bytes -> (n_keypoints, descriptors, error) per image, in the executors."""
    size = int(settings["image_size"])
    counts, descriptors, errors = [], [], []
    for data in contents:
        try:
            rgb = decode_image(data, size)
        except ImageDecodeError as exc:
            counts.append(None)
            descriptors.append(None)
            errors.append(str(exc))
            continue
        found = orb_descriptors(enhance_grey(rgb, settings), settings)
        counts.append(len(found))
        descriptors.append([row.tobytes() for row in found])
        errors.append(None)
    return pd.DataFrame({"n_keypoints": counts, "descriptors": descriptors, "error": errors})


def unpack_bits(descriptors: np.ndarray | list[bytes]) -> np.ndarray:
    """32-byte ORB descriptors -> (n, 256) float32 of 0/1, where L2^2 equals Hamming distance."""
    if isinstance(descriptors, np.ndarray):
        packed = descriptors.astype(np.uint8, copy=False).reshape(-1, DESCRIPTOR_BYTES)
    else:
        packed = np.frombuffer(b"".join(descriptors), dtype=np.uint8).reshape(-1, DESCRIPTOR_BYTES)
    return np.unpackbits(packed, axis=1).astype(np.float32)


def word_histogram(descriptors, centres: np.ndarray) -> np.ndarray:
    """L1-normalised counts of each descriptor's nearest visual word; zeros for no descriptor.

    Normalising makes a photo with 40 keypoints comparable to one with 400.
    """
    histogram = np.zeros(len(centres), dtype=np.float32)
    if descriptors is None or len(descriptors) == 0:  # Arrow hands a numpy array, or None
        return histogram
    bits = unpack_bits(list(descriptors))
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every centre.
    distances = (centres * centres).sum(axis=1)[None, :] - 2.0 * bits @ centres.T
    words = distances.argmin(axis=1)
    histogram += np.bincount(words, minlength=len(centres)).astype(np.float32)
    return histogram / histogram.sum()


# --------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------
def detect_orb_descriptors(raw_images: DataFrame, params: dict[str, Any]) -> tuple[DataFrame, dict[str, Any]]:
    """ORB descriptors of every photo (``path, label, split, n_keypoints, descriptors``).

    Undecodable files are left out and counted (as preprocessing rejects them for the CNNs).
    The result is persisted: the vocabulary and the histograms both read it.
    """
    settings = _settings(params)
    started = time.perf_counter()

    @F.pandas_udf(ORB_SCHEMA)
    def describe(contents: pd.Series) -> pd.DataFrame:
        return describe_batch(contents, settings)

    described = (
        raw_images.withColumn("orb", describe(F.col("content")))
        .select("path", "label", "split", "orb.n_keypoints", "orb.descriptors", "orb.error")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    stats = described.agg(
        F.count(F.lit(1)).alias("n_listed"),
        F.count("error").alias("n_undecodable"),
        F.sum(F.when(F.col("n_keypoints") == 0, 1).otherwise(0)).alias("n_without_keypoints"),
        F.sum("n_keypoints").alias("n_descriptors"),
    ).first()
    accepted = described.where(F.col("error").isNull()).drop("error")
    without = [
        r.path for r in accepted.where(F.col("n_keypoints") == 0).select("path").orderBy("path").limit(20).collect()
    ]
    report = {
        "n_images": int(stats["n_listed"]) - int(stats["n_undecodable"]),
        "n_undecodable": int(stats["n_undecodable"]),
        "n_images_without_keypoints": int(stats["n_without_keypoints"] or 0),
        "images_without_keypoints_first_20": without,
        "n_descriptors": int(stats["n_descriptors"] or 0),
        "detection_seconds": round(time.perf_counter() - started, 3),
    }
    logger.info(
        "ORB: %d images, %d descriptors, %d image(s) without keypoints, %d undecodable",
        report["n_images"],
        report["n_descriptors"],
        report["n_images_without_keypoints"],
        report["n_undecodable"],
    )
    return accepted, report


_SAMPLE_BUCKETS = 1_000_000


def fit_visual_vocabulary(orb_descriptors_table: DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Spark ML KMeans over a seeded sample of the Training descriptors -> the word centres.

    Only Training photos shape the vocabulary, so the Test photos stay unseen (no leakage).
    Without a split (a flat folder) every photo is used.
    """
    settings = _settings(params)
    started = time.perf_counter()
    k = int(settings["vocabulary_size"])
    has_training = orb_descriptors_table.where(F.col("split") == "Training").limit(1).count() > 0
    source = orb_descriptors_table.where(F.col("split") == "Training") if has_training else orb_descriptors_table
    exploded = source.select("path", F.posexplode("descriptors").alias("index", "descriptor"))
    n_available = exploded.count()
    if n_available == 0 and orb_descriptors_table.limit(1).count() == 0:
        logger.info("ORB vocabulary: no photos to describe (orb is not among evaluation.feature_sets)")
        return {
            "centres": [],
            "vocabulary_size": 0,
            "n_descriptors_available": 0,
            "n_descriptors_sampled": 0,
            "vocabulary_seconds": round(time.perf_counter() - started, 3),
        }
    if n_available < k:
        raise ValueError(
            f"Only {n_available} ORB descriptors to build {k} visual words (orb_baseline.vocabulary_size): "
            "lower the vocabulary size, or raise orb_baseline.n_features / image_size."
        )
    wanted = int(settings["vocabulary_sample_size"])
    fraction = min(1.0, wanted / n_available)
    # A hash of each descriptor's (path, index) picks the sample, and KMeans gets it in one
    # partition sorted by that key: its seeded start and its sums then never depend on how
    # many cores the input was split for, so the words are the same on a laptop and a cluster.
    key = F.xxhash64("path", "index", F.lit(int(settings["seed"])))
    sampled = exploded.where(F.pmod(key, F.lit(_SAMPLE_BUCKETS)) < F.lit(round(fraction * _SAMPLE_BUCKETS)))
    sampled = sampled.repartition(1).sortWithinPartitions("path", "index")

    @F.pandas_udf("array<float>")
    def to_bits(descriptor: pd.Series) -> pd.Series:
        return pd.Series(list(unpack_bits(list(descriptor))))

    vectors = sampled.select(array_to_vector(to_bits("descriptor")).alias("bits")).persist(StorageLevel.MEMORY_AND_DISK)
    n_sampled = vectors.count()
    model = KMeans(k=k, featuresCol="bits", maxIter=int(settings["kmeans_max_iter"]), seed=int(settings["seed"])).fit(
        vectors
    )
    vectors.unpersist()
    centres = np.array([c.tolist() for c in model.clusterCenters()], dtype=np.float32)
    logger.info("ORB vocabulary: %d words from %d of %d Training descriptors", len(centres), n_sampled, n_available)
    return {
        "centres": centres.tolist(),
        "vocabulary_size": int(len(centres)),
        "n_descriptors_available": int(n_available),
        "n_descriptors_sampled": int(n_sampled),
        "vocabulary_seconds": round(time.perf_counter() - started, 3),
    }


def build_word_histograms(
    orb_descriptors_table: DataFrame, vocabulary: dict[str, Any], detection_report: dict[str, Any]
) -> tuple[DataFrame, dict[str, Any]]:
    """One histogram per photo (``path, label, split, n_keypoints, histogram``), and the report."""
    started = time.perf_counter()
    spark = orb_descriptors_table.sparkSession
    centres_broadcast = spark.sparkContext.broadcast(np.asarray(vocabulary["centres"], dtype=np.float32))

    @F.pandas_udf("array<float>")
    def histograms(descriptors: pd.Series) -> pd.Series:
        centres = centres_broadcast.value
        return pd.Series([word_histogram(d, centres) for d in descriptors])

    table = orb_descriptors_table.select(
        "path", "label", "split", "n_keypoints", histograms("descriptors").alias("histogram")
    ).persist(StorageLevel.MEMORY_AND_DISK)
    n_images = table.count()  # materialised here so that the time below is the real cost
    histogram_seconds = time.perf_counter() - started
    featurization_seconds = detection_report["detection_seconds"] + vocabulary["vocabulary_seconds"] + histogram_seconds
    report = {
        **detection_report,
        "n_images": int(n_images),
        "vocabulary_size": vocabulary["vocabulary_size"],
        "n_descriptors_available_for_vocabulary": vocabulary["n_descriptors_available"],
        "n_descriptors_sampled_for_vocabulary": vocabulary["n_descriptors_sampled"],
        "vocabulary_seconds": vocabulary["vocabulary_seconds"],
        "histogram_seconds": round(histogram_seconds, 3),
        "featurization_seconds": round(featurization_seconds, 3),
    }
    return table, report
