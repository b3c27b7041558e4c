"""How image bytes become a network's input pixels, and which files cannot.

:class:`ImageDecoder` is the one definition of the decode: any mode to RGB (transparency
onto Fruits-360's white), EXIF orientation applied, resized to the backbone's ``input_size``,
as uint8. The backbone's ``preprocess_input`` (e.g. VGG16's RGB->BGR and mean subtraction)
is the first step of the network graph itself
(:meth:`fruits_kedro.inference.registry.Backbone.inference_model`).

Where it runs: inside the inference tasks, right before each batch goes through the network
(:func:`fruits_kedro.inference.featurize.featurize_images`); the ORB baseline and
:mod:`fruits_kedro.predict` decode with it too. Each image is read once and decoded once; one
that cannot be decoded gets its reason there and ends up in ``rejected_images``. Spark
cannot fuse two Python UDFs, so a separate decode step would either hand every image's pixels
from one Python worker to the next, or make a second pass over every file just for the
verdict (docs/performance.md).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from fruits_kedro.inference.registry import get_backbone, resolve_input_size


class ImageDecodeError(ValueError):
    """A file is not an image this pipeline can use; the message is the reason."""


class ImageTooLargeError(ImageDecodeError):
    """An image with more pixels than the decoder's ``max_pixels``."""


PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
TRUNCATED = "not a decodable image: truncated (its data ends before the image does)"


@dataclass(frozen=True)
class ImageDecoder:
    """Image bytes -> (size, size, 3) RGB uint8, or :class:`ImageDecodeError` with the reason."""

    size: int
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = PILLOW_MAX_PIXELS
    # Decode a large photo at a reduced size (JPEG's DCT scaling, else a box reduction right
    # after loading), never below ``size``: a server's memory then follows ``size``, not the photo.
    reduce: bool = False

    @classmethod
    def from_params(cls, backbone_params: dict[str, Any], params: dict[str, Any]) -> ImageDecoder:
        """The decoder for ``params:backbone`` (its input size) and ``params:preprocessing``."""
        size = resolve_input_size(get_backbone(backbone_params["name"]), backbone_params["input_size"])
        return cls(
            size=size,
            background=tuple(int(c) for c in params["background"]),
            max_pixels=int(params["max_image_pixels"]),
        )

    def decode(self, data: bytes | None) -> np.ndarray:
        rgb = np.asarray(
            _open_rgb(data, self.background, self.max_pixels, self.size if self.reduce else None), dtype=np.uint8
        )
        height, width = rgb.shape[:2]
        if (height, width) == (self.size, self.size):
            return rgb
        # OpenCV resizes faster than Pillow. Bilinear when enlarging (Fruits-360's 100 px
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

    def decode_valid(self, contents: Sequence[bytes | None]) -> tuple[np.ndarray, list[int], list[str | None]]:
        """Decode every image that can be: (their pixels, their indices, a reason per image).

        ``reasons[i]`` is None for a decoded image and says why for any other; one bad file
        never costs the valid images of its batch.
        """
        batch = np.empty((len(contents), self.size, self.size, 3), np.uint8)
        decoded: list[int] = []
        reasons: list[str | None] = [None] * len(contents)
        for i, data in enumerate(contents):
            try:
                batch[len(decoded)] = self.decode(data)
            except ImageDecodeError as exc:
                reasons[i] = str(exc)
                continue
            decoded.append(i)
        return batch[: len(decoded)], decoded, reasons


def decode_image(
    data: bytes | None,
    size: int,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = PILLOW_MAX_PIXELS,
    reduce: bool = False,
) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array of shape (size, size, 3).

    Every mode becomes RGB the same way: transparency is composited onto ``background``
    (Fruits-360's white), 16-bit greyscale is scaled to 8 bits, CMYK and palettes convert.
    Raises :class:`ImageDecodeError` for anything that is not a whole, decodable image.
    """
    return ImageDecoder(size, tuple(background), max_pixels, reduce).decode(data)


def _open_rgb(
    data: bytes | None, background: tuple[int, int, int], max_pixels: int, reduce_to: int | None = None
) -> Image.Image:
    """The fully decoded image in RGB, at its own size (or reduced, no side below ``reduce_to``)."""
    if data is None:  # the reader's sign for a file that vanished or could not be opened
        raise ImageDecodeError("file could not be read")
    if not data:
        raise ImageDecodeError("empty file")
    bomb = f"image too large (decompression-bomb limit {max_pixels} pixels)"
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own process-wide limit; the explicit size check below
            # applies this run's limit instead, without changing Pillow's global settings.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(_without_end_marker(data))) as image:
                if image.width * image.height > max_pixels:
                    raise ImageTooLargeError(f"{bomb}: {image.width}x{image.height}")
                if reduce_to:
                    image.draft("RGB", (reduce_to, reduce_to))  # JPEG only: decode at 1/2, 1/4 or 1/8
                image.load()  # force the full decode: truncated files fail here, not later
                reduced = _reduced(image, reduce_to) if reduce_to else image
                # A phone photo tagged "rotate 90" must reach the network upright.
                return _to_rgb(ImageOps.exif_transpose(reduced), background)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{bomb}: {exc}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        if isinstance(exc, OSError) and str(exc).startswith("image file is truncated"):
            raise ImageDecodeError(TRUNCATED) from None
        raise ImageDecodeError(f"not a decodable image: {type(exc).__name__}: {_without_addresses(exc)}") from None


_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", b"\xff\xda"
_SEQUENTIAL_SOF = (0xC0, 0xC1)  # baseline and extended sequential, Huffman-coded
# The decoder's bit buffer reads up to 8 bytes ahead of the last bit it uses: twice that.
_LOOKAHEAD = b"\0" * 16


def _without_end_marker(data: bytes) -> bytes:
    """A single-scan sequential JPEG with its end marker replaced by a few zero bytes, so
    that data ending before the last row is an error; any other data unchanged.

    libjpeg that meets the end marker before the last row only warns ("premature end of data
    segment", which Pillow does not pass on) and fills the rest with grey: a 633-byte file that
    declares 9,000 x 9,000 pixels would become a grey photo. Without the marker it asks for
    more data, and Pillow raises "image file is truncated". A whole image never needs more than
    the bit buffer's look-ahead, which the zero bytes give. Progressive and multi-scan files
    are decoded as they are: libjpeg reads them to the end marker before the first row.
    """
    if not (data.startswith(_SOI) and data.endswith(_EOI)):
        return data
    position, sequential = 2, False
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            sequential = marker in _SEQUENTIAL_SOF
        if marker == _SOS[1]:
            # Entropy-coded data never holds FF DA (FF is stuffed): another one is a second scan.
            if sequential and data.find(_SOS, position + 2 + length) == -1:
                return data[: -len(_EOI)] + _LOOKAHEAD
            return data
        position += 2 + length
    return data


def _without_addresses(exc: BaseException) -> str:
    """The error's text without object reprs such as ``<_io.BytesIO object at 0x7f…>``, so
    that every run gives a photo the same reason."""
    return re.sub(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>", "", str(exc)).strip()


# Modes whose pixels can be averaged (not palette indices, not Pillow's 16-bit special modes).
_REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"})


def _reduced(image: Image.Image, size: int) -> Image.Image:
    """``image`` shrunk by a whole factor (box averaging), no side below ``size``."""
    factor = min(image.width, image.height) // size
    if factor < 2 or image.mode not in _REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


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
