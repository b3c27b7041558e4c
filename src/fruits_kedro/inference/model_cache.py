"""Driver side: where converted ONNX models are kept between runs (Keras, PyTorch and INT8 alike)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# The opset every exported graph targets (part of each cache key).
ONNX_OPSET = 17


def onnx_cache_dir() -> Path:
    """Where converted models are kept between runs: ``$FRUITS_KEDRO_CACHE_DIR/onnx``,
    by default ``~/.cache/fruits_kedro/onnx``."""
    root = os.environ.get("FRUITS_KEDRO_CACHE_DIR") or Path.home() / ".cache" / "fruits_kedro"
    return Path(root) / "onnx"


def write_cached_model(path: Path, onnx_bytes: bytes) -> None:
    """Keep a converted model in the cache; one that cannot be written only costs a conversion."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(onnx_bytes)
        os.replace(partial, path)  # atomic: a concurrent run reads a whole file or none
    except OSError as exc:
        logger.warning("Cannot cache the ONNX model in %s (%s); it will be converted again next run", path.parent, exc)
