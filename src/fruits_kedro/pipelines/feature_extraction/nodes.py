"""Feature extraction: image files -> CNN feature vectors, in a batched iterator pandas UDF.

Each inference task reads its images' bytes, decodes them with preprocessing's
:class:`ImageDecoder` and runs the network on batches of ``batch_size``. One pass over the
photos does it all: every image is read once and decoded once, and one that cannot be decoded
gets its reason in the same pass (``rejected_images``) instead of costing a second pass over
every file (README, Performance, has the measurements behind this design).

The weights are loaded once on the driver (through Keras' own loading path) and broadcast
once per job: as weight arrays for the ``keras`` runtime, or as an ONNX model converted on
the driver for the ``onnx`` runtime (ONNX Runtime runs the same network ~4x faster on CPUs).
Each Python worker builds the model once and keeps it for every batch and task it runs
(see :func:`fruits_kedro.backbones.worker_feature_fn`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.backbones import get_backbone, inference_payload, worker_feature_fn
from fruits_kedro.datasets.image_folder import read_file_bytes
from fruits_kedro.pipelines.preprocessing.nodes import ImageDecoder

logger = logging.getLogger(__name__)

FEATURE_ID_COLUMNS = ("path", "relative_path", "label", "split", "size", "modified")
REJECTED_COLUMNS = ("path", "label", "split", "reason")


def extract_features(
    raw_images: DataFrame,
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    params: dict[str, Any],
) -> DataFrame:
    """Every listed image with its ``features`` (array<float>), or the ``reason`` it has none.

    Exactly one of the two is null on each row. The images' bytes are read inside the
    inference tasks, from ``path``: a separate reading UDF would be one more Python worker
    per task handing every photo through the JVM (~10% of the CNN stage, measured), and the
    next Arrow batch is fetched while the current one runs through the network, so S3
    latency overlaps inference.

    The result is persisted on the executors' local disks (never in memory): the features
    and the rejected files both come from it, and the CNN must run once. Nothing runs until
    the features are saved.
    """
    backbone = get_backbone(backbone_params["name"])
    decoder = ImageDecoder.from_params(backbone_params, preprocessing_params)
    size = decoder.size
    runtime = params.get("runtime", "onnx")
    payload = inference_payload(backbone, size, backbone_params.get("weights", "imagenet"), runtime)
    spark = raw_images.sparkSession
    payload_broadcast = spark.sparkContext.broadcast(payload)
    job_token = uuid.uuid4().hex
    batch_size = int(params.get("batch_size", 64))
    # Each Spark task gets spark.task.cpus cores; inference uses exactly that many threads,
    # so tasks x threads never oversubscribe the executor's cores.
    threads = int(params.get("threads_per_task") or spark.conf.get("spark.task.cpus", "1"))
    name = backbone.name
    logger.info(
        "Feature extraction: %s at %dx%d (%s), %d features, batch %d, %d thread(s) per task",
        name, size, size, runtime, backbone.feature_dim(size), batch_size, threads,
    )

    def featurize(contents: pd.Series, infer) -> pd.DataFrame:
        features: list[np.ndarray | None] = [None] * len(contents)
        reasons: list[str | None] = [None] * len(contents)
        for start in range(0, len(contents), batch_size):
            pixels, decoded, window_reasons = decoder.decode_valid(contents.iloc[start : start + batch_size])
            reasons[start : start + len(window_reasons)] = window_reasons
            if decoded:
                vectors = infer(pixels).astype(np.float32, copy=False)
                for vector, i in zip(vectors, decoded):
                    features[start + i] = vector
        return pd.DataFrame({"features": features, "reason": reasons})

    @F.pandas_udf("struct<features:array<float>,reason:string>")
    def features_udf(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        infer = worker_feature_fn(name, size, payload_broadcast, threads, job_token, runtime)
        # Reading releases the GIL (file and network I/O), inference too (ONNX Runtime,
        # TensorFlow): one reader thread fetches batch k+1 while batch k is inferred.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-reader") as reader:
            pending = None
            for paths in batches:  # Arrow batches; inference re-slices them to batch_size
                upcoming = reader.submit(read_file_bytes, paths)
                if pending is not None:
                    yield featurize(pending.result(), infer)
                pending = upcoming
            if pending is not None:
                yield featurize(pending.result(), infer)

    result = features_udf(F.col("path"))
    return raw_images.select(
        *FEATURE_ID_COLUMNS, result.getField("features").alias("features"), result.getField("reason").alias("reason")
    ).persist(StorageLevel.DISK_ONLY)


def merge_with_previous_features(
    featurized_images: DataFrame,
    previous_image_features: DataFrame | None,
    current_images: DataFrame,
    params: dict[str, Any],
) -> tuple[DataFrame, dict[str, Any]]:
    """The features of every current image: this run's, plus (incremental mode) the previous
    run's for images that did not change. Images no longer listed are dropped, and so are the
    ones that could not be decoded (:func:`report_feature_extraction` lists them).

    Returns the features, still lazy (saving them runs the CNN, once, in the executors), and
    what was reused, for :func:`report_feature_extraction`.
    """
    new_features = featurized_images.where(F.col("reason").isNull()).drop("reason")
    incremental = bool(params.get("incremental")) and previous_image_features is not None
    if not incremental:
        return new_features, {"incremental": False, "reused": 0}
    # The previous rows must be read before this run overwrites them: materialise them now.
    current_keys = current_images.select("path", "size", "modified")
    reused = previous_image_features.join(current_keys, on=["path", "size", "modified"], how="left_semi")
    reused = reused.join(new_features.select("path"), on="path", how="left_anti").select(*new_features.columns)
    reused = reused.localCheckpoint(eager=True)
    n_reused = reused.count()
    logger.info("Incremental feature extraction: %d images' features reused", n_reused)
    return new_features.unionByName(reused), {"incremental": True, "reused": n_reused}


def report_feature_extraction(
    image_features: DataFrame, featurized_images: DataFrame, reuse: dict[str, Any]
) -> tuple[dict[str, Any], DataFrame]:
    """What this run did: images featurized, reused from the last run, and rejected; and the
    rejected files themselves, each with its reason.

    Runs after the features are saved: the featurized count is the saved Parquet's row count,
    and the rejected rows are read from the persisted pass (no CNN runs here).
    """
    total = image_features.count()
    # One partition: saving a few rows must not start a writer task per input partition.
    rejected = featurized_images.where(F.col("reason").isNotNull()).select(*REJECTED_COLUMNS).coalesce(1)
    examples = rejected.limit(10).collect()
    n_rejected = rejected.count() if examples else 0
    report = {
        "incremental": reuse["incremental"],
        "featurized": total - reuse["reused"],
        "reused": reuse["reused"],
        "rejected": n_rejected,
    }
    logger.info(
        "Feature extraction: %d images featurized, %d reused, %d rejected",
        report["featurized"], report["reused"], report["rejected"],
    )
    for row in examples:
        logger.warning("Rejected %s: %s", row.path, row.reason)
    return report, rejected
