"""Preprocessing nodes: image bytes -> fixed-size RGB pixels, or a reason for rejection.

Pixels leave this step as raw uint8 RGB (``input_size`` x ``input_size`` x 3 bytes): four
times smaller than the float tensor a network takes, so the hand-over to feature
extraction stays cheap. The backbone's own ``preprocess_input`` (e.g. VGG16's RGB->BGR and
mean subtraction) runs batched right before inference, in :mod:`fruits_kedro.backbones`.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.backbones import get_backbone, resolve_input_size

logger = logging.getLogger(__name__)

DECODED_SCHEMA = "pixels binary, error string"


class ImageDecodeError(ValueError):
    """A file is not an image this pipeline can use; the message is the reason."""


def decode_image(
    data: bytes | None,
    size: int,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = 89_478_485,
) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array of shape (size, size, 3).

    Every mode becomes RGB the same way: transparency is composited onto ``background``
    (Fruits-360's white), 16-bit greyscale is scaled to 8 bits, CMYK and palettes convert.
    Raises :class:`ImageDecodeError` for anything that is not a whole, decodable image.
    """
    if not data:
        raise ImageDecodeError("empty file")
    bomb = f"image too large (decompression-bomb limit {max_pixels} pixels)"
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own process-wide limit; the explicit size check below
            # applies this run's limit instead, without changing Pillow's global settings.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > max_pixels:
                    raise ImageDecodeError(f"{bomb}: {image.width}x{image.height}")
                image.load()  # force the full decode: truncated files fail here, not later
                rgb = _to_rgb(image, background)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{bomb}: {exc}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise ImageDecodeError(f"not a decodable image: {type(exc).__name__}: {exc}") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.uint32)
        scale = 257 if array.max(initial=0) > 255 else 1
        return Image.fromarray((array // scale).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _decode_batch(contents: pd.Series, size: int, background, max_pixels: int) -> pd.DataFrame:
    pixels, errors = [], []
    for data in contents:
        try:
            pixels.append(decode_image(data, size, background, max_pixels).tobytes())
            errors.append(None)
        except ImageDecodeError as exc:
            pixels.append(None)
            errors.append(str(exc))
    return pd.DataFrame({"pixels": pixels, "error": errors})


def decode_images(
    raw_images: DataFrame, backbone_params: dict[str, Any], params: dict[str, Any]
) -> tuple[DataFrame, DataFrame]:
    """Decode every image; return (accepted images with ``pixels``, rejected files with ``reason``).

    Decoding runs once: the result is persisted because both outputs, and the counts
    logged here, read it.
    """
    backbone = get_backbone(backbone_params["name"])
    size = resolve_input_size(backbone, backbone_params.get("input_size"))
    background = tuple(params.get("background", (255, 255, 255)))
    max_pixels = int(params.get("max_image_pixels", 89_478_485))

    @F.pandas_udf(DECODED_SCHEMA)
    def decode(contents: pd.Series) -> pd.DataFrame:
        return _decode_batch(contents, size, background, max_pixels)

    decoded = (
        raw_images.withColumn("decoded", decode(F.col("content")))
        .select("path", "relative_path", "label", "split", "size", "modified", "decoded.pixels", "decoded.error")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    accepted = decoded.where(F.col("error").isNull()).drop("error").withColumn("input_size", F.lit(size))
    rejected = decoded.where(F.col("error").isNotNull()).select(
        "path", "label", "split", F.col("error").alias("reason")
    )
    n_rejected = rejected.count()
    n_listed = decoded.count()
    logger.info("Preprocessing: %d listed, %d accepted, %d rejected", n_listed, n_listed - n_rejected, n_rejected)
    if n_rejected:
        for row in rejected.limit(10).collect():
            logger.warning("Rejected %s: %s", row.path, row.reason)
    return accepted, rejected
