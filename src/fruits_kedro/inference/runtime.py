"""Executor side: one model per Python worker, reused across tasks and batches.

What the Spark tasks run: :func:`worker_feature_fn` turns the broadcast payload (Keras weight
arrays or ONNX model bytes) into a ``pixels -> features`` function, built once per worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from fruits_kedro.inference.registry import Backbone, get_backbone

logger = logging.getLogger(__name__)

_worker_models: dict[tuple[Any, ...], Callable[[np.ndarray], np.ndarray]] = {}
_threads_configured = False


def _configure_threads(threads: int) -> None:
    """Pin TensorFlow's thread pools so that Spark tasks x threads never exceed the cores."""
    global _threads_configured
    if _threads_configured:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already initialised in this process; its pools are fixed
        logger.debug("TensorFlow threads already set in this worker")
    _threads_configured = True


def _keras_feature_fn(backbone: Backbone, input_size: int, weights: list[np.ndarray], threads: int):
    _configure_threads(threads)
    import tensorflow as tf

    model = backbone.inference_model(input_size, weights)
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def features(pixels: np.ndarray) -> np.ndarray:
        return infer(tf.constant(pixels)).numpy()

    return features


def _onnx_feature_fn(backbone: Backbone, input_size: int, onnx_model: bytes, threads: int):
    return onnx_features(onnx_model, threads)


def onnx_features(onnx_model: bytes, threads: int):
    """A function (N, s, s, 3) uint8 pixels -> (N, features), from the exported ONNX model:
    ONNX Runtime only (no TensorFlow, no JVM)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def features(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: pixels})[0]

    return features


# The ONNX model quantized to INT8 on the driver (:mod:`.quantize`): the workers run it as any ONNX model.
INT8_RUNTIME = "onnx_int8"
# How each inference runtime turns the broadcast payload into a features function.
_WORKER_BUILDERS = {"keras": _keras_feature_fn, "onnx": _onnx_feature_fn, INT8_RUNTIME: _onnx_feature_fn}
RUNTIMES = tuple(_WORKER_BUILDERS)


def worker_feature_fn(
    backbone_name: str, input_size: int, payload_broadcast, threads: int, job_token: str, runtime: str = "keras"
) -> Callable[[np.ndarray], np.ndarray]:
    """A ``pixels(uint8) -> features(float32)`` function, built once per worker.

    ``job_token`` identifies the broadcast payload: a new job (new weights) rebuilds the model.
    """
    key = (backbone_name, input_size, job_token, runtime)
    fn = _worker_models.get(key)
    if fn is None:
        fn = _WORKER_BUILDERS[runtime](get_backbone(backbone_name), input_size, payload_broadcast.value, threads)
        _worker_models.clear()  # one model per worker: a new job replaces the previous one
        _worker_models[key] = fn
    return fn
