"""Feature extraction: image bytes -> CNN feature vectors, in a batched iterator pandas UDF.

Each inference task decodes its images with preprocessing's :class:`ImageDecoder` and runs
the network on batches of ``batch_size``: decoding inside the task keeps the 150 KB of pixels
per image (at 224 px) inside one Python worker (see :mod:`..preprocessing.nodes`).

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
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.backbones import get_backbone, inference_payload, worker_feature_fn
from fruits_kedro.pipelines.preprocessing.nodes import ImageDecoder

logger = logging.getLogger(__name__)

FEATURE_ID_COLUMNS = ("path", "relative_path", "label", "split", "size", "modified")


def extract_features(
    preprocessed_images: DataFrame,
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    params: dict[str, Any],
) -> DataFrame:
    """Add ``features`` (array<float>) to every image; drop its bytes."""
    backbone = get_backbone(backbone_params["name"])
    decoder = ImageDecoder.from_params(backbone_params, preprocessing_params)
    size = decoder.size
    runtime = params.get("runtime", "onnx")
    payload = inference_payload(backbone, size, backbone_params.get("weights", "imagenet"), runtime)
    spark = preprocessed_images.sparkSession
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

    @F.pandas_udf("array<float>")
    def features_udf(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        infer = worker_feature_fn(name, size, payload_broadcast, threads, job_token, runtime)
        for paths, contents in batches:  # Arrow batches; inference re-slices them to batch_size
            outputs = []
            for start in range(0, len(contents), batch_size):
                window = slice(start, start + batch_size)
                outputs.append(infer(decoder.decode_batch(paths.iloc[window], contents.iloc[window])))
            features = np.concatenate(outputs) if outputs else np.empty((0, 0), np.float32)
            yield pd.Series(list(features.astype(np.float32, copy=False)))

    return preprocessed_images.select(
        *FEATURE_ID_COLUMNS, features_udf(F.col("path"), F.col("content")).alias("features")
    )


def merge_with_previous_features(
    new_features: DataFrame,
    previous_image_features: DataFrame | None,
    current_images: DataFrame,
    params: dict[str, Any],
) -> tuple[DataFrame, dict[str, Any]]:
    """The features of every current image: this run's, plus (incremental mode) the previous
    run's for images that did not change. Images no longer listed are dropped.

    Returns the features, still lazy (saving them runs the CNN, once, in the executors), and
    what was reused, for :func:`report_feature_extraction`.
    """
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


def report_feature_extraction(image_features: DataFrame, reuse: dict[str, Any]) -> dict[str, Any]:
    """How many images this run featurized and how many kept last run's features.

    Counted on the saved features (a Parquet row count), not by running the CNN again.
    """
    total = image_features.count()
    report = {"incremental": reuse["incremental"], "featurized": total - reuse["reused"], "reused": reuse["reused"]}
    logger.info("Feature extraction: %d images featurized, %d reused", report["featurized"], report["reused"])
    return report
