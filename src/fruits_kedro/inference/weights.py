"""Driver side: load a backbone's weights once, so that they can be broadcast to the executors.

Weights come through Keras' own loading path (its cache, then a download), from a local file,
from a remote URI (copied to a temporary file first), or are random and seeded (structural
runs, tests). :func:`weights_source_digest` identifies them without importing Keras.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fruits_kedro.inference.registry import Backbone

logger = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
    """The configured weights cannot be loaded (no network, no cache, no file)."""


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


def weights_source_digest(backbone: Backbone, weights: str | None) -> str | None:
    """A hash of the file(s) Keras would load the weights from, computed without Keras.

    ImageNet weights: every file of this network in Keras' cache; a weights path: that file;
    random weights: the seed (the installed versions are part of the cache key). ``None`` when
    only Keras can tell: ImageNet weights not downloaded yet, a remote URI, a missing file.
    A Keras backbone's only (a PyTorch backbone's: :func:`.torch_export.weights_digest`).
    """
    digest = hashlib.sha256()
    if weights is None:
        digest.update(f"random weights, seed {RANDOM_WEIGHTS_SEED}".encode())
        return digest.hexdigest()
    if weights == "imagenet":
        files = sorted(keras_cache_dir().glob(backbone.imagenet_files)) if backbone.imagenet_files else []
        files = [path for path in files if path.is_file()]  # a link left dangling is not the weights
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
