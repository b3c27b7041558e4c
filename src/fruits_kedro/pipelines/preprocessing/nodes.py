"""Preprocessing: how image bytes become a network's input pixels, and which files cannot.

:class:`ImageDecoder` is the one definition of the decode: any mode to RGB (transparency
onto Fruits-360's white), resized to the backbone's ``input_size``, as uint8. This step runs
it over every image to quarantine what cannot be decoded (``rejected_images``, with the
reason) before any CNN time is spent, and hands the valid images on, still encoded.

Why still encoded: Spark cannot fuse two Python UDFs, so decoded pixels would cross from one
Python worker to the JVM and on to the inference worker: 150 KB per image at 224 px, which
measured as ~20% of the CNN's own time (README, Performance). Feature extraction applies this
same decoder inside its inference tasks instead (5 KB of JPEG per image cross, and nothing is
cached). The backbone's ``preprocess_input`` (e.g. VGG16's RGB->BGR and mean subtraction) is
the first step of the network graph itself (:meth:`fruits_kedro.backbones.Backbone.inference_model`).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.backbones import get_backbone, resolve_input_size

logger = logging.getLogger(__name__)

class ImageDecodeError(ValueError):
    """A file is not an image this pipeline can use; the message is the reason."""


PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


@dataclass(frozen=True)
class ImageDecoder:
    """Image bytes -> (size, size, 3) RGB uint8, or :class:`ImageDecodeError` with the reason."""

    size: int
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = PILLOW_MAX_PIXELS

    @classmethod
    def from_params(cls, backbone_params: dict[str, Any], params: dict[str, Any]) -> ImageDecoder:
        """The decoder for ``params:backbone`` (its input size) and ``params:preprocessing``."""
        size = resolve_input_size(get_backbone(backbone_params["name"]), backbone_params.get("input_size"))
        return cls(
            size=size,
            background=tuple(int(c) for c in params.get("background", (255, 255, 255))),
            max_pixels=int(params.get("max_image_pixels", PILLOW_MAX_PIXELS)),
        )

    def decode(self, data: bytes | None) -> np.ndarray:
        rgb = np.asarray(_open_rgb(data, self.background, self.max_pixels), dtype=np.uint8)
        height, width = rgb.shape[:2]
        if (height, width) == (self.size, self.size):
            return rgb
        # OpenCV resizes ~4x faster than Pillow. Bilinear when enlarging (Fruits-360's 100 px
        # to 224); area averaging when shrinking, which, unlike bilinear, does not alias.
        shrinking = height * width > self.size * self.size
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return cv2.resize(rgb, (self.size, self.size), interpolation=interpolation)

    def decode_batch(self, paths: Sequence[str], contents: Sequence[bytes | None]) -> np.ndarray:
        """A batch of images -> (N, size, size, 3); a file that fails is named in the error."""
        batch = np.empty((len(contents), self.size, self.size, 3), np.uint8)
        for i, (path, data) in enumerate(zip(paths, contents)):
            try:
                batch[i] = self.decode(data)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{path}: {exc}") from None
        return batch

    def rejection_reason(self, data: bytes | None) -> str | None:
        """Why :meth:`decode` would reject these bytes, or None when it accepts them."""
        try:
            _open_rgb(data, self.background, self.max_pixels)
        except ImageDecodeError as exc:
            return str(exc)
        return None


def decode_image(
    data: bytes | None,
    size: int,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = PILLOW_MAX_PIXELS,
) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array of shape (size, size, 3).

    Every mode becomes RGB the same way: transparency is composited onto ``background``
    (Fruits-360's white), 16-bit greyscale is scaled to 8 bits, CMYK and palettes convert.
    Raises :class:`ImageDecodeError` for anything that is not a whole, decodable image.
    """
    return ImageDecoder(size, tuple(background), max_pixels).decode(data)


def _open_rgb(data: bytes | None, background: tuple[int, int, int], max_pixels: int) -> Image.Image:
    """The fully decoded image in RGB, at its own size."""
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
                return _to_rgb(image, background)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{bomb}: {exc}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise ImageDecodeError(f"not a decodable image: {type(exc).__name__}: {exc}") from None


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


def decode_images(
    raw_images: DataFrame, backbone_params: dict[str, Any], params: dict[str, Any]
) -> tuple[DataFrame, DataFrame]:
    """Split the images into (decodable ones, still encoded; rejected files with ``reason``).

    Every image is decoded once here, for its verdict only; the rejected rows (a few) are
    kept, so the count logged here and the saved list come from that one pass. The accepted
    images keep their bytes (``content``) and gain ``input_size``: feature extraction decodes
    them with the same :class:`ImageDecoder`, inside its inference tasks.

    Files are read once: this pass keeps their bytes on the executors' local disks (~5 KB
    per photo, never in memory), and inference reads them from there, not from the files
    (or S3) again; the inference stage then has no file-reading Python worker competing
    with it for the cores.
    """
    decoder = ImageDecoder.from_params(backbone_params, params)

    @F.pandas_udf("string")
    def rejection_reason(contents: pd.Series) -> pd.Series:
        return pd.Series([decoder.rejection_reason(data) for data in contents], dtype=object)

    images = raw_images.persist(StorageLevel.DISK_ONLY)
    rejected = (
        images.select("path", "label", "split", rejection_reason(F.col("content")).alias("reason"))
        .where(F.col("reason").isNotNull())
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    n_rejected = rejected.count()  # (ingestion logged how many were listed)
    logger.info("Preprocessing: %d image(s) rejected", n_rejected)
    if n_rejected:
        for row in rejected.limit(10).collect():
            logger.warning("Rejected %s: %s", row.path, row.reason)
    # The rejected list is small: broadcast, it filters each partition where it lies, no shuffle.
    accepted = images.join(F.broadcast(rejected.select("path")), on="path", how="left_anti").withColumn(
        "input_size", F.lit(decoder.size)
    )
    # One partition: saving a few rows must not start a writer task per input partition.
    return accepted, rejected.coalesce(1)
