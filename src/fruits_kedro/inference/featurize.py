"""Featurization: image files -> CNN feature vectors, in Spark tasks fed Arrow batches.

Each inference task reads its images' bytes, decodes them with
:class:`fruits_kedro.imaging.decode.ImageDecoder` and runs the network on batches of
``batch_size``. One pass over the photos does it all: every image is read once and decoded
once, and one that cannot be decoded gets its reason in the same pass (:class:`RejectedImages`)
instead of costing a second pass over every file (docs/performance.md has the measurements
behind this design).

The weights are loaded once on the driver (through Keras' own loading path) and broadcast
once per job: as weight arrays for the ``keras`` runtime, or as an ONNX model converted on
the driver for the ``onnx`` runtime (ONNX Runtime runs the same network faster on CPUs).
Each Python worker builds the model once and keeps it for every batch and task it runs
(see :func:`fruits_kedro.inference.runtime.worker_feature_fn`).

The tasks import this module (the accumulator's merge is defined here) and what its task
functions use: keep their import graph free of pandas, which slows each Python worker's start.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import AccumulatorParam
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from fruits_kedro import progress
from fruits_kedro.datasets.arrow_source import with_arrow_source, with_constant_column
from fruits_kedro.datasets.files import Unreadable, read_files
from fruits_kedro.feature_settings import SETTINGS_COLUMN, feature_settings
from fruits_kedro.imaging.decode import ImageDecoder
from fruits_kedro.inference.onnx_export import inference_payload
from fruits_kedro.inference.quantize import cached_int8_model
from fruits_kedro.inference.registry import get_backbone
from fruits_kedro.inference.runtime import (
    CPU_BATCH_SIZE,
    GPU_BATCH_SIZE,
    INT8_RUNTIME,
    inference_batch_size,
    worker_feature_fn,
)

logger = logging.getLogger(__name__)

FEATURE_ID_COLUMNS = ("path", "relative_path", "label", "split", "size", "modified")
REJECTED_COLUMNS = ("path", "label", "split", "reason")


class _ReasonsByPath(AccumulatorParam):
    """Merges ``{path: reason}`` dicts. Idempotent: a task that runs twice (a retry, a
    speculative copy, a second action on the same DataFrame) reports the same paths again."""

    def zero(self, value: dict[str, str]) -> dict[str, str]:
        return {}

    def addInPlace(self, value1: dict[str, str], value2: dict[str, str]) -> dict[str, str]:
        value1.update(value2)
        return value1


class RejectedImages:
    """The images a featurization could not decode, each with its reason, gathered from the
    inference tasks themselves through a Spark accumulator.

    Why not a ``reason`` column next to the features: the features and the rejected rows
    would then be two outputs of one computation, which Spark runs once only if it is cached
    first; the cache is written to disk, read back, then written again as Parquet, and each
    task would write its Parquet part only after its whole partition had gone through the
    network (docs/performance.md).

    The accumulator fills when the features are computed, i.e. when they are saved: read it
    after that. (Kedro deep-copies what one node hands another in memory; a copy of a PySpark
    accumulator is the driver's registered accumulator itself, so it sees every task's adds.)
    """

    def __init__(self, spark_context) -> None:
        self._accumulator = spark_context.accumulator({}, _ReasonsByPath())

    @property
    def accumulator(self):
        """What a task adds ``{path: reason}`` to (picklable into the tasks' function)."""
        return self._accumulator

    @property
    def reasons(self) -> dict[str, str]:
        """``{path: reason}`` for every rejected image seen so far, on the driver."""
        return dict(self._accumulator.value)

    def to_frame(self, images: DataFrame) -> DataFrame:
        """The rejected images as rows of ``REJECTED_COLUMNS``, labels taken from ``images``."""
        spark = images.sparkSession
        if not self.reasons:  # the usual case: nothing to join, no query
            return spark.createDataFrame([], ", ".join(f"{column} string" for column in REJECTED_COLUMNS))
        reasons = spark.createDataFrame(sorted(self.reasons.items()), "path string, reason string")
        # One partition: saving a few rows must not start a writer task per input partition.
        return (
            reasons.join(images.select("path", "label", "split"), on="path", how="left")
            .select(*REJECTED_COLUMNS)
            .coalesce(1)
        )


def featurize_images(
    raw_images: DataFrame,
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    params: dict[str, Any],
) -> tuple[DataFrame, RejectedImages]:
    """Every listed image that can be decoded, with its ``features`` (array<float>), and the
    images that cannot be, each with its reason.

    ``raw_images`` has the columns ``FEATURE_ID_COLUMNS``; ``backbone_params`` are the
    settings ``backbone.*`` (name, input_size, weights), ``preprocessing_params`` the
    decoder's (``preprocessing.*``) and ``params`` those of ``feature_extraction.*`` (runtime,
    batch_size, read_retry_seconds, threads_per_task).

    The images' bytes are read inside the inference tasks, from ``path``: a separate reading
    UDF would be one more Python worker per task handing every photo through the JVM
    (docs/performance.md), and the next Arrow batch is fetched while the current one runs
    through the network, so S3 latency overlaps inference.

    Nothing runs until the features are saved; saving them streams each task's features
    straight to its Parquet part as they come out of the network, and fills the
    :class:`RejectedImages` (read it after the save). The CNN runs once per image: a
    ``mapInArrow`` is opaque to Spark's optimizer, which cannot split or repeat it.
    """
    backbone = get_backbone(backbone_params["name"])
    decoder = ImageDecoder.from_params(backbone_params, preprocessing_params)
    size = decoder.size
    runtime = params["runtime"]
    payload = inference_payload(backbone, size, backbone_params["weights"], runtime)
    if runtime == INT8_RUNTIME:
        calibration = calibration_pixels(
            raw_images, decoder, int(params["int8_calibration_photos"]), float(params["read_retry_seconds"])
        )
        payload = cached_int8_model(payload, calibration, f"{backbone.name}_{size}")
    spark = raw_images.sparkSession
    payload_broadcast, job_token = _broadcast(spark.sparkContext, payload)
    rejected = RejectedImages(spark.sparkContext)
    rejected_accumulator = rejected.accumulator
    progress.count_rejected(lambda: len(rejected_accumulator.value))
    batch_size = params["batch_size"]
    provider = params["execution_provider"]
    retry_seconds = float(params["read_retry_seconds"])
    # Each Spark task gets spark.task.cpus cores; inference uses exactly that many threads,
    # so tasks x threads never oversubscribe the executor's cores.
    threads = int(params["threads_per_task"] or spark.conf.get("spark.task.cpus", "1"))
    name = backbone.name
    logger.info(
        "Feature extraction: %s at %dx%d (%s), %d features, batch %s, %d thread(s) per task",
        name,
        size,
        size,
        runtime,
        backbone.feature_dim(size),
        batch_size or f"{CPU_BATCH_SIZE} on the CPU, {GPU_BATCH_SIZE} on a GPU",
        threads,
    )

    def featurize(batch: pa.RecordBatch, files: list[bytes | Unreadable], infer, per_call: int) -> pa.RecordBatch:
        """The batch's decodable images with their features; the others go to ``rejected``."""
        paths = batch.column("path").to_pylist()
        contents = [None if isinstance(data, Unreadable) else data for data in files]
        kept: list[int] = []
        vectors: list[np.ndarray] = []
        rejected_here: dict[str, str] = {}
        for start in range(0, len(contents), per_call):
            pixels, decoded, reasons = decoder.decode_valid(contents[start : start + per_call])
            for offset, reason in enumerate(reasons):
                if reason is not None:
                    data = files[start + offset]
                    rejected_here[paths[start + offset]] = data.reason if isinstance(data, Unreadable) else reason
            if decoded:
                vectors.append(infer(pixels).astype(np.float32, copy=False).reshape(len(decoded), -1))
                kept.extend(start + i for i in decoded)
        if rejected_here:
            rejected_accumulator.add(rejected_here)
        matrix = np.concatenate(vectors) if vectors else np.empty((0, 0), np.float32)
        offsets = np.arange(len(kept) + 1, dtype=np.int32) * matrix.shape[1]
        features = pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.ravel()), type=features_type)
        # The path columns pass through as Spark sent them (their Arrow types included).
        ids = batch.take(pa.array(kept, pa.int64()))
        return pa.RecordBatch.from_arrays([*ids.columns, features], names=[*ids.schema.names, "features"])

    def featurize_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        infer = worker_feature_fn(name, size, payload_broadcast, threads, job_token, runtime, provider)
        per_call = inference_batch_size(infer, batch_size)
        # Reading releases the GIL (file and network I/O), inference too (ONNX Runtime,
        # TensorFlow): one reader thread fetches batch k+1 while batch k is inferred.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-reader") as reader:
            pending = None
            for batch in batches:  # Arrow batches; inference re-slices them to per_call
                upcoming = (batch, reader.submit(read_files, batch.column("path").to_pylist(), retry_seconds))
                if pending is not None:
                    yield featurize(pending[0], pending[1].result(), infer, per_call)
                pending = upcoming
            if pending is not None:
                yield featurize(pending[0], pending[1].result(), infer, per_call)

    # Arrow in, Arrow out (mapInArrow, not a pandas UDF): the tasks never import pandas,
    # which slows each Python worker's start, and the features go from NumPy to
    # Arrow in one copy instead of one Python object per image.
    ids = raw_images.select(*FEATURE_ID_COLUMNS)
    schema = T.StructType([*ids.schema.fields, T.StructField("features", T.ArrayType(T.FloatType()), True)])
    features_type = to_arrow_schema(schema).field("features").type
    settings = feature_settings(backbone_params, preprocessing_params, runtime)
    # Marked as an Arrow function of the listing's partitions: the Parquet writer runs in the
    # same worker, so features never become JVM rows and each task holds one ONNX session.
    featurized = with_arrow_source(
        ids.mapInArrow(featurize_partition, schema), ids, featurize_partition, fixed_partitions=True
    )
    return with_constant_column(featurized, SETTINGS_COLUMN, settings), rejected


# (application, payload id) -> (payload, its broadcast, the token the workers key their model by)
_broadcasts: dict[tuple[str, int], tuple[Any, Any, str]] = {}


def _broadcast(spark_context, payload) -> tuple[Any, str]:
    """The payload's broadcast and token, made once per application and payload: featurizations
    that follow one another (a stream's micro-batches) reuse the workers' models instead of
    building, and keeping, one per call."""
    key = (spark_context.applicationId, id(payload))
    found = _broadcasts.get(key)
    if found is None or found[0] is not payload:
        found = (payload, spark_context.broadcast(payload), uuid.uuid4().hex)
        _broadcasts[key] = found
        while len(_broadcasts) > _KEPT_BROADCASTS:  # payloads made anew each time (Keras weights)
            _broadcasts.pop(next(iter(_broadcasts)))
    return found[1], found[2]


_KEPT_BROADCASTS = 4


def calibration_pixels(raw_images: DataFrame, decoder: ImageDecoder, n: int, retry_seconds: float) -> np.ndarray:
    """Up to ``n`` of the run's photos, decoded as the tasks decode them: the INT8 calibration set.

    Training photos when the run has any (a fixed pseudo-random choice, by a hash of the path),
    so that a model calibrated once is found in the cache by the next run on the same photos.
    """
    training = raw_images.where(F.col("split") == "Training")
    source = training if training.limit(1).count() else raw_images
    paths = [row.path for row in source.select("path").orderBy(F.xxhash64("path"), "path").limit(n).collect()]
    files = read_files(paths, retry_seconds)
    pixels, decoded, _ = decoder.decode_valid([None if isinstance(data, Unreadable) else data for data in files])
    logger.info("INT8 calibration on %d photos (%d asked for)", len(decoded), n)
    return pixels
