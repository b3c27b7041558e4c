"""Driver side: the ONNX model the ``onnx`` runtime broadcasts, converted at most once per machine.

:func:`inference_payload` is what the driver broadcasts for a runtime: the Keras weight arrays,
or the model converted to ONNX with tf2onnx (a PyTorch backbone: exported by
:mod:`.torch_export`) and kept in :func:`.model_cache.onnx_cache_dir`, keyed by the weights and every version
that shapes the exported graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fruits_kedro.inference.model_cache import ONNX_OPSET, onnx_cache_dir, write_cached_model
from fruits_kedro.inference.registry import Backbone
from fruits_kedro.inference.runtime import RUNTIMES
from fruits_kedro.inference.weights import load_weights, weights_source_digest

logger = logging.getLogger(__name__)

_onnx_models: dict[tuple[str, int, str | None], bytes] = {}
_onnx_lock = threading.Lock()


def inference_payload(backbone: Backbone, input_size: int, weights: str | None, runtime: str) -> Any:
    """What the driver broadcasts for a runtime: Keras weight arrays, or the ONNX model bytes.

    Cached per process: the parameter check and the feature-extraction node share one load.
    Raises :class:`~.registry.UnsupportedRuntimeError` for a runtime the backbone cannot run on.
    """
    if runtime in RUNTIMES:
        backbone.check_runtime(runtime)
    if runtime == "keras":
        return load_weights(backbone, input_size, weights)
    if runtime in ("onnx", "onnx_int8"):  # onnx_int8: the FP32 model it is quantized from
        key = (backbone.name, input_size, weights)
        with _onnx_lock:  # not _driver_lock: converting loads the weights, which takes that one
            if key not in _onnx_models:
                _onnx_models[key] = _cached_onnx_model(backbone, input_size, weights)
            return _onnx_models[key]
    raise ValueError(
        f"Unknown runtime {runtime!r} (setting 'feature_extraction.runtime'); known: {', '.join(RUNTIMES)}"
    )


# Part of the cache key: bump it whenever _export_onnx makes a different graph
# (2: uint8 "pixels" input, preprocessing inside, frozen constants).
ONNX_EXPORT_VERSION = 2


def _arrays_digest(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _onnx_cache_path(backbone: Backbone, input_size: int, weights_identity: str) -> Path:
    """The cache file for these weights and every version that shapes the exported graph."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("keras", "tf2onnx", "tensorflow", "tensorflow-cpu"):
        try:
            versions.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pass
    key = json.dumps([ONNX_EXPORT_VERSION, ONNX_OPSET, backbone.name, input_size, versions, weights_identity])
    return onnx_cache_dir() / f"{backbone.name}_{input_size}_{hashlib.sha256(key.encode()).hexdigest()[:20]}.onnx"


def _cached_onnx_model(backbone: Backbone, input_size: int, weights: str | None) -> bytes:
    """The ONNX model for these weights, converted at most once per machine.

    Converting takes seconds of driver time, and loading the weights through Keras (to convert
    them, or to hash them) more seconds and memory: the file is keyed by a hash of the weights
    file itself where there is one, so a run that finds it never imports TensorFlow. Weights
    known only to Keras (a remote URI, ImageNet weights still to download) are keyed by a hash
    of the loaded arrays. Either way a stale model is never used, and a cache that cannot be
    written only costs the conversion.
    """
    if backbone.framework == "torch":
        from fruits_kedro.inference.torch_export import cached_onnx_model

        return cached_onnx_model(backbone, input_size, weights)
    source = weights_source_digest(backbone, weights)
    arrays = load_weights(backbone, input_size, weights) if source is None else None
    identity = f"source {source}" if source is not None else f"arrays {_arrays_digest(arrays)}"
    path = _onnx_cache_path(backbone, input_size, identity)
    if path.is_file():
        logger.info("ONNX model for %s at %dx%d from the cache %s", backbone.name, input_size, input_size, path)
        return path.read_bytes()
    if arrays is None:
        arrays = load_weights(backbone, input_size, weights)
    onnx_bytes = _export_onnx(backbone, input_size, arrays)
    write_cached_model(path, onnx_bytes)
    return onnx_bytes


def _export_onnx(backbone: Backbone, input_size: int, arrays: list[np.ndarray]) -> bytes:
    """Convert the Keras model to ONNX once, on the driver, with tf2onnx (as Keras' exporter does).

    The graph is frozen first: Keras' ``model.export(format="onnx")`` hands tf2onnx the traced
    function as is, and tf2onnx turns every captured constant into an extra graph input
    (EfficientNet's normalisation means, for one), which no caller could feed.
    """
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx  # tf2onnx 1.17 with numpy 2, as Keras does
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = backbone.inference_model(input_size, arrays)
    spec = tf.TensorSpec([None, input_size, input_size, backbone.channels], tf.uint8, name="pixels")
    traced = tf.function(lambda pixels: model(pixels, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    patch_tf2onnx()
    proto, _ = tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=[t.name for t in frozen.inputs],
        output_names=[t.name for t in frozen.outputs],
        opset=ONNX_OPSET,
    )
    onnx_bytes = proto.SerializeToString()
    logger.info("Exported %s at %dx%d to ONNX (%.1f MB)", backbone.name, input_size, input_size, len(onnx_bytes) / 1e6)
    return onnx_bytes
