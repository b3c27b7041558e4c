"""Executor side: one model per Python worker, reused across tasks and batches.

What the Spark tasks run: :func:`worker_feature_fn` turns the broadcast payload (Keras weight
arrays or ONNX model bytes) into a ``pixels -> features`` function, built once per worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
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


def _onnx_feature_fn(backbone: Backbone, input_size: int, onnx_model: bytes, threads: int, provider: str = "cpu"):
    return onnx_features(onnx_model, threads, provider)


class ProviderUnavailableError(RuntimeError):
    """``feature_extraction.execution_provider`` names a device this ONNX Runtime cannot use."""


# ONNX Runtime execution providers per feature_extraction.execution_provider, in order of preference.
EXECUTION_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def execution_providers(choice: str) -> list[str]:
    """The providers a session gets: ``auto`` takes CUDA where the installed ONNX Runtime offers
    it (the ``onnxruntime-gpu`` package), else the CPU; ``cuda``/``tensorrt`` insist on it."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if choice == "auto":
        return [p for p in EXECUTION_PROVIDERS["cuda"] if p in available]
    wanted = EXECUTION_PROVIDERS[choice]
    if wanted[0] not in available:
        raise ProviderUnavailableError(
            f"feature_extraction.execution_provider = {choice!r}, but this ONNX Runtime "
            f"({ort.__version__}) offers only {', '.join(sorted(available))}: install onnxruntime-gpu "
            "on a machine with a GPU, or use auto or cpu."
        )
    return [p for p in wanted if p in available]


def onnx_features(onnx_model: bytes, threads: int, provider: str = "cpu"):
    """A function (N, s, s, 3) uint8 pixels -> (N, features), from the exported ONNX model:
    ONNX Runtime only (no TensorFlow, no JVM), on the device ``provider`` names."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_model, options, providers=execution_providers(provider))
    input_name = session.get_inputs()[0].name

    def features(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: pixels})[0]

    features.on_gpu = session.get_providers()[0] != "CPUExecutionProvider"
    return features


# Images per inference call when feature_extraction.batch_size is null: on a CPU core a small
# batch's activations stay in its caches; a GPU needs many images per call to be kept busy.
CPU_BATCH_SIZE = 2
GPU_BATCH_SIZE = 64


def inference_batch_size(infer: Callable[[np.ndarray], np.ndarray], configured: int | None) -> int:
    """``configured`` where set, else the default of the device ``infer`` runs on."""
    if configured:
        return int(configured)
    return GPU_BATCH_SIZE if getattr(infer, "on_gpu", False) else CPU_BATCH_SIZE


# The ONNX model quantized to INT8 on the driver (:mod:`.quantize`): the workers run it as any ONNX model.
INT8_RUNTIME = "onnx_int8"
# feature_extraction.runtime: auto -> onnx_int8 where the CPU has fast 8-bit dot products, else onnx.
AUTO_RUNTIME = "auto"
# /proc/cpuinfo's names of the 8-bit dot-product instructions ONNX Runtime's INT8 kernels use:
# VNNI on x86 (AVX-512 or AVX), the dot-product extension on arm64.
FAST_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")
_runtime_choices_logged: set[str] = set()


def fast_int8_instructions(cpuinfo: str | None = None) -> list[str]:
    """The fast 8-bit instructions among the CPU's flags (``/proc/cpuinfo``, or its text given);
    none where there is no such file (macOS, Windows): those get FP32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return []
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86, arm64
            found.update(flag for flag in value.split() if flag in FAST_INT8_FLAGS)
    return sorted(found)


def resolve_runtime(runtime: str, provider: str = "cpu", cpuinfo: str | None = None) -> str:
    """``feature_extraction.runtime`` as it runs: explicit values as they are; ``auto`` gives
    ``onnx_int8`` on a CPU with fast 8-bit dot products and ``onnx`` (FP32) elsewhere, GPUs
    included, saying which in one info line. The driver's CPU decides: a cluster whose workers
    have another CPU should set the runtime explicitly."""
    if runtime != AUTO_RUNTIME:
        return runtime
    if provider != "cpu" and execution_providers(provider)[0] != "CPUExecutionProvider":
        chosen, why = "onnx", "a GPU runs the FP32 model"
    else:
        instructions = fast_int8_instructions(cpuinfo)
        if instructions:
            chosen, why = INT8_RUNTIME, f"this CPU has fast 8-bit dot products ({', '.join(instructions)})"
        else:
            chosen, why = "onnx", "this CPU lacks fast 8-bit dot products (VNNI, asimddp), where INT8 gains little"
    message = f"feature_extraction.runtime auto: {chosen} ({why}; set onnx or onnx_int8 to choose)"
    if message not in _runtime_choices_logged:
        _runtime_choices_logged.add(message)
        logger.info(message)
    return chosen


# How each inference runtime turns the broadcast payload into a features function.
_WORKER_BUILDERS = {"keras": _keras_feature_fn, "onnx": _onnx_feature_fn, INT8_RUNTIME: _onnx_feature_fn}
RUNTIMES = tuple(_WORKER_BUILDERS)


def worker_feature_fn(
    backbone_name: str,
    input_size: int,
    payload_broadcast,
    threads: int,
    job_token: str,
    runtime: str = "keras",
    provider: str = "cpu",
) -> Callable[[np.ndarray], np.ndarray]:
    """A ``pixels(uint8) -> features(float32)`` function, built once per worker.

    ``job_token`` identifies the broadcast payload: a new job (new weights) rebuilds the model.
    ``provider`` is the ONNX runtimes' device (:func:`execution_providers`).
    """
    key = (backbone_name, input_size, job_token, runtime, provider)
    fn = _worker_models.get(key)
    if fn is None:
        backbone, payload = get_backbone(backbone_name), payload_broadcast.value
        if runtime == "keras":
            fn = _keras_feature_fn(backbone, input_size, payload, threads)
        else:
            fn = _WORKER_BUILDERS[runtime](backbone, input_size, payload, threads, provider)
        # One job's models per worker (a job may run several runtimes): a new job replaces them.
        for stale in [k for k in _worker_models if k[2] != job_token]:
            del _worker_models[stale]
        _worker_models[key] = fn
    return fn
