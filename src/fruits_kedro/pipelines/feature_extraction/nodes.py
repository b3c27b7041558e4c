"""Feature extraction: uint8 pixels -> CNN feature vectors, in a batched iterator pandas UDF.

The weights are loaded once on the driver (through Keras' own loading path) and broadcast
once per job — as weight arrays for the ``keras`` runtime, or as an ONNX model converted on
the driver for the ``onnx`` runtime (ONNX Runtime runs the same network faster on CPUs); each Python worker builds the model once and keeps it for every batch and
task it runs (see :func:`fruits_kedro.backbones.worker_feature_fn`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.backbones import get_backbone, inference_payload, resolve_input_size, worker_feature_fn

logger = logging.getLogger(__name__)

FEATURE_ID_COLUMNS = ("path", "relative_path", "label", "split", "size", "modified")


def pixels_to_batch(pixels: pd.Series, size: int) -> np.ndarray:
    """Raw RGB bytes of equal-size images -> one (N, size, size, 3) uint8 array, no copy per row."""
    flat = np.frombuffer(b"".join(pixels), dtype=np.uint8)
    return flat.reshape(len(pixels), size, size, 3)


def extract_features(
    preprocessed_images: DataFrame, backbone_params: dict[str, Any], params: dict[str, Any]
) -> DataFrame:
    """Add ``features`` (array<float>) to every image; drop the pixels."""
    backbone = get_backbone(backbone_params["name"])
    size = resolve_input_size(backbone, backbone_params.get("input_size"))
    runtime = params.get("runtime", "onnx")
    payload = inference_payload(backbone, size, backbone_params.get("weights", "imagenet"), runtime)
    spark = preprocessed_images.sparkSession
    payload_broadcast = spark.sparkContext.broadcast(payload)
    job_token = uuid.uuid4().hex
    batch_size = int(params.get("batch_size", 64))
    # Each Spark task gets spark.task.cpus cores; TF uses exactly that many threads, so
    # tasks x threads never oversubscribe the executor's cores.
    threads = int(params.get("threads_per_task") or spark.conf.get("spark.task.cpus", "1"))
    name = backbone.name
    logger.info(
        "Feature extraction: %s at %dx%d (%s), %d features, batch %d, %d thread(s) per task",
        name, size, size, runtime, backbone.feature_dim(size), batch_size, threads,
    )

    @F.pandas_udf("array<float>")
    def features_udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        infer = worker_feature_fn(name, size, payload_broadcast, threads, job_token, runtime)
        for pixels in batches:
            outputs = [
                infer(pixels_to_batch(pixels.iloc[start : start + batch_size], size))
                for start in range(0, len(pixels), batch_size)
            ]
            features = np.concatenate(outputs) if outputs else np.empty((0, 0), np.float32)
            yield pd.Series(list(features.astype(np.float32, copy=False)))

    return preprocessed_images.select(
        *FEATURE_ID_COLUMNS, features_udf(F.col("pixels")).alias("features")
    )


def merge_with_previous_features(
    new_features: DataFrame,
    previous_image_features: DataFrame | None,
    current_images: DataFrame,
    params: dict[str, Any],
) -> tuple[DataFrame, dict[str, Any]]:
    """The features of every current image: this run's, plus (incremental mode) the previous
    run's for images that did not change. Images no longer listed are dropped.

    Returns the features and a report of what was computed and what was reused.
    """
    incremental = bool(params.get("incremental")) and previous_image_features is not None
    # Persisted: counting runs the CNN, and the save must not run it a second time.
    new_features = new_features.persist(StorageLevel.MEMORY_AND_DISK)
    n_new = new_features.count()
    if not incremental:
        return new_features, {"incremental": False, "featurized": n_new, "reused": 0}
    # The previous rows must be read before this run overwrites them: materialise them now.
    current_keys = current_images.select("path", "size", "modified")
    reused = previous_image_features.join(current_keys, on=["path", "size", "modified"], how="left_semi")
    reused = reused.join(new_features.select("path"), on="path", how="left_anti").select(*new_features.columns)
    reused = reused.localCheckpoint(eager=True)
    n_reused = reused.count()
    logger.info("Incremental feature extraction: %d images featurized, %d reused", n_new, n_reused)
    return new_features.unionByName(reused), {"incremental": True, "featurized": n_new, "reused": n_reused}
