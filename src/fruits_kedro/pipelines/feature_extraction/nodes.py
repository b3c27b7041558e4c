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
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.backbones import get_backbone, inference_payload, resolve_input_size, worker_feature_fn

logger = logging.getLogger(__name__)


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
    runtime = params.get("runtime", "keras")
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
        "path", "relative_path", "label", "split", features_udf(F.col("pixels")).alias("features")
    )
