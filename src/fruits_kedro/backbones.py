"""Pretrained ImageNet CNN backbones, as data behind one small interface.

A :class:`Backbone` names a ``keras.applications`` constructor, the module whose
``preprocess_input`` turns RGB uint8 pixels into that network's input (VGG16: RGB->BGR and
ImageNet mean subtraction; MobileNetV2: scale to [-1, 1]), how its last feature map becomes a
vector, and its default input size. Adding a backbone is adding one entry to ``BACKBONES``.

TensorFlow/Keras are imported lazily: importing this module (as ``kedro viz`` does through
the pipelines) must stay cheap and must not start anything.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Pooling = Literal["avg", "flatten"]


class UnknownBackboneError(ValueError):
    """The configured backbone name is not one of ``BACKBONES``."""


class WeightsUnavailableError(RuntimeError):
    """The configured weights cannot be loaded (no network, no cache, no file)."""


@dataclass(frozen=True)
class Backbone:
    name: str
    keras_application: str  # attribute of keras.applications, e.g. "MobileNetV2"
    preprocess_module: str  # module of keras.applications holding preprocess_input
    pooling: Pooling  # "avg": global average pooling; "flatten": the raw feature map, flattened
    default_input_size: int
    # Keras' ImageNet weight files for this network in its cache (keras_cache_dir()): what a
    # cached ONNX conversion is keyed by, so that a run finds it without importing Keras.
    imagenet_files: str = ""
    min_input_size: int = 32
    channels: int = 3

    def build(self, input_size: int, weights: str | None):
        """Build the Keras model that maps (N, s, s, 3) preprocessed input to (N, features)."""
        import keras

        constructor = getattr(keras.applications, self.keras_application)
        base = constructor(
            include_top=False,
            weights=weights,
            input_shape=(input_size, input_size, self.channels),
            pooling="avg" if self.pooling == "avg" else None,
        )
        if self.pooling == "avg":
            return base
        return keras.Model(base.input, keras.layers.Flatten(name="flatten_features")(base.output), name=self.name)

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """RGB uint8 (N, s, s, 3) -> the float32 input this network was trained on."""
        return self._preprocess_input(pixels.astype("float32", copy=True))

    def _preprocess_input(self, x):
        module = importlib.import_module(f"keras.applications.{self.preprocess_module}")
        return module.preprocess_input(x)

    def inference_model(self, input_size: int, weight_arrays: list[np.ndarray]):
        """The network as the executors run it: RGB uint8 pixels in, features out.

        The backbone's own ``preprocess_input`` (the same Keras function as :meth:`preprocess`)
        is part of the graph, so the exported ONNX model needs nothing but ONNX Runtime on the
        workers (no TensorFlow import there), and pixels cross into it as uint8, a quarter of
        the bytes of the float input.
        """
        import keras

        network = self.build(input_size, weights=None)
        network.set_weights(weight_arrays)
        pixels = keras.Input((input_size, input_size, self.channels), dtype="uint8", name="pixels")
        # In a layer, so that the preprocessing constants (VGG16's ImageNet means) are created
        # inside the traced graph: built outside it, the ONNX exporter takes them for inputs.
        preprocess = keras.layers.Lambda(
            lambda x: self._preprocess_input(keras.ops.cast(x, "float32")), name="preprocess"
        )
        features = network(preprocess(pixels))
        model = keras.Model(pixels, features, name=f"{self.name}_features")
        model(np.zeros((1, input_size, input_size, self.channels), np.uint8))  # built and called once
        return model

    def feature_dim(self, input_size: int) -> int:
        """Length of the feature vector for a given input size, without building the model."""
        if self.pooling == "avg":
            return _AVG_POOL_CHANNELS[self.name]
        side = input_size // 32  # five stride-2 stages
        return side * side * _AVG_POOL_CHANNELS[self.name]


# Channels of each network's last feature map.
_AVG_POOL_CHANNELS = {"mobilenet_v2": 1280, "vgg16": 512, "resnet50": 2048, "efficientnet_b0": 1280}

BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "mobilenet_v2",
            "MobileNetV2",
            "mobilenet_v2",
            pooling="avg",
            default_input_size=224,
            imagenet_files="mobilenet_v2_weights_*.h5",
        ),
        # The original study: 100x100 input, 3x3x512 feature map flattened to 4608 features.
        Backbone(
            "vgg16", "VGG16", "vgg16", pooling="flatten", default_input_size=100, imagenet_files="vgg16_weights_*.h5"
        ),
        Backbone(
            "resnet50",
            "ResNet50",
            "resnet50",
            pooling="avg",
            default_input_size=224,
            imagenet_files="resnet50_weights_*.h5",
        ),
        Backbone(
            "efficientnet_b0",
            "EfficientNetB0",
            "efficientnet",
            pooling="avg",
            default_input_size=224,
            imagenet_files="efficientnetb0_*.h5",
        ),
    )
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(
            f"Unknown backbone {name!r} (setting 'backbone.name'). Known backbones: {', '.join(sorted(BACKBONES))}."
        ) from None


def resolve_input_size(backbone: Backbone, input_size: int | None) -> int:
    return int(input_size) if input_size else backbone.default_input_size


# --------------------------------------------------------------------------------------
# Driver side: load the weights once, so that they can be broadcast to the executors.
# --------------------------------------------------------------------------------------
_driver_weights: dict[tuple[str, int, str | None], list[np.ndarray]] = {}
# Random weights (structural runs, tests) are seeded, so that two runs (local and S3, or a
# rerun) give the same features.
RANDOM_WEIGHTS_SEED = 0
_driver_lock = threading.Lock()


def keras_cache_dir() -> Path:
    """Where Keras looks for downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _weights_help(backbone: Backbone, weights: str | None) -> str:
    return (
        f"Cannot load weights {weights!r} for backbone {backbone.name!r} (setting 'backbone.weights'). "
        "Provide them in one of these ways:\n"
        f"  1. KERAS_HOME: point KERAS_HOME at a folder whose models/ holds the Keras ImageNet file "
        f'(looked in {keras_cache_dir()}), e.g. export KERAS_HOME="$(cd ../shared/keras && pwd)";\n'
        "  2. a weights file: --params backbone.weights=/path/to/weights.h5;\n"
        "  3. no pretrained weights, for a structural run only: --params backbone.weights=null."
    )


def load_weights(backbone: Backbone, input_size: int, weights: str | None) -> list[np.ndarray]:
    """The model's weight arrays, loaded through Keras' own path (cache, then download).

    Cached per process: the parameter check and the feature-extraction node share one load.
    """
    key = (backbone.name, input_size, weights)
    with _driver_lock:
        if key not in _driver_weights:
            _driver_weights[key] = _load_uncached(backbone, input_size, weights)
        return _driver_weights[key]


def _load_uncached(backbone: Backbone, input_size: int, weights: str | None) -> list[np.ndarray]:
    if _is_remote_uri(weights):
        with _downloaded_weights(backbone, weights) as local_file:
            return _build_weights(backbone, input_size, local_file, shown_as=weights)
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise WeightsUnavailableError(f"Weights file not found: {weights}\n" + _weights_help(backbone, weights))
    if weights is None:
        import keras

        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)  # random weights: structural runs and tests
    return _build_weights(backbone, input_size, weights, shown_as=weights)


def _build_weights(backbone: Backbone, input_size: int, weights: str | None, shown_as: str | None) -> list[np.ndarray]:
    try:
        model = backbone.build(input_size, weights)
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        raise WeightsUnavailableError(f"{_weights_help(backbone, shown_as)}\nCause: {exc}") from exc
    return model.get_weights()


def _is_remote_uri(weights: str | None) -> bool:
    """``s3://...`` (or any fsspec URL but a local path): Keras can only open local files."""
    return bool(weights) and "://" in str(weights) and not str(weights).startswith("file://")


@contextmanager
def _downloaded_weights(backbone: Backbone, uri: str) -> Iterator[str]:
    """Copy a remote weights file to a local temporary file, once, on the driver.

    The executors never read it: the driver broadcasts the loaded arrays. Credentials and
    endpoint come from the standard AWS chain (``AWS_ENDPOINT_URL`` included) via fsspec.
    """
    import fsspec

    # Keep the file name: Keras picks the format by it (".weights.h5" vs a legacy ".h5").
    name = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "weights.h5"
    with tempfile.TemporaryDirectory(prefix="fruits_kedro_weights_") as folder:
        local_file = str(Path(folder) / name)
        try:
            with fsspec.open(uri, "rb") as source, open(local_file, "wb") as target:
                shutil.copyfileobj(source, target, length=8 * 1024 * 1024)
        except Exception as exc:  # fsspec/botocore raise many types: the URI is what matters
            raise WeightsUnavailableError(
                f"Cannot read weights {uri} (setting 'backbone.weights'): {type(exc).__name__}: {exc}\n"
                "Check the bucket and key, and that AWS credentials are available "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role)."
            ) from exc
        logger.info("Downloaded weights %s for backbone %s", uri, backbone.name)
        yield local_file


_onnx_models: dict[tuple[str, int, str | None], bytes] = {}
_onnx_lock = threading.Lock()


def inference_payload(backbone: Backbone, input_size: int, weights: str | None, runtime: str) -> Any:
    """What the driver broadcasts for a runtime: Keras weight arrays, or the ONNX model bytes.

    Cached per process: the parameter check and the feature-extraction node share one load.
    """
    if runtime == "keras":
        return load_weights(backbone, input_size, weights)
    if runtime == "onnx":
        key = (backbone.name, input_size, weights)
        with _onnx_lock:  # not _driver_lock: converting loads the weights, which takes that one
            if key not in _onnx_models:
                _onnx_models[key] = _cached_onnx_model(backbone, input_size, weights)
            return _onnx_models[key]
    raise ValueError(
        f"Unknown runtime {runtime!r} (setting 'feature_extraction.runtime'); known: {', '.join(RUNTIMES)}"
    )


ONNX_OPSET = 17
# Part of the cache key: bump it whenever _export_onnx makes a different graph
# (2: uint8 "pixels" input, preprocessing inside, frozen constants).
ONNX_EXPORT_VERSION = 2


def onnx_cache_dir() -> Path:
    """Where converted models are kept between runs: ``$FRUITS_KEDRO_CACHE_DIR/onnx``,
    by default ``~/.cache/fruits_kedro/onnx``."""
    root = os.environ.get("FRUITS_KEDRO_CACHE_DIR") or Path.home() / ".cache" / "fruits_kedro"
    return Path(root) / "onnx"


def weights_source_digest(backbone: Backbone, weights: str | None) -> str | None:
    """A hash of the file(s) Keras would load the weights from, computed without Keras.

    ImageNet weights: every file of this network in Keras' cache; a weights path: that file;
    random weights: the seed (the installed versions are part of the cache key). ``None`` when
    only Keras can tell: ImageNet weights not downloaded yet, a remote URI, a missing file.
    """
    digest = hashlib.sha256()
    if weights is None:
        digest.update(f"random weights, seed {RANDOM_WEIGHTS_SEED}".encode())
        return digest.hexdigest()
    if weights == "imagenet":
        files = sorted(keras_cache_dir().glob(backbone.imagenet_files)) if backbone.imagenet_files else []
    elif _is_remote_uri(weights) or not Path(weights).is_file():
        files = []
    else:
        files = [Path(weights)]
    if not files:
        return None
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


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

    Converting takes 5-20 s of driver time, and loading the weights through Keras (to convert
    them, or to hash them) another ~8 s and ~0.6 GB: the file is keyed by a hash of the weights
    file itself where there is one, so a run that finds it never imports TensorFlow. Weights
    known only to Keras (a remote URI, ImageNet weights still to download) are keyed by a hash
    of the loaded arrays. Either way a stale model is never used, and a cache that cannot be
    written only costs the conversion.
    """
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(onnx_bytes)
        os.replace(partial, path)  # atomic: a concurrent run reads a whole file or none
    except OSError as exc:
        logger.warning("Cannot cache the ONNX model in %s (%s); it will be converted again next run", path.parent, exc)
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


# --------------------------------------------------------------------------------------
# Executor side: one model per Python worker, reused across tasks and batches.
# --------------------------------------------------------------------------------------
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
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def features(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: pixels})[0]

    return features


# How each inference runtime turns the broadcast payload into a features function.
_WORKER_BUILDERS = {"keras": _keras_feature_fn, "onnx": _onnx_feature_fn}
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
