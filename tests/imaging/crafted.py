"""JPEGs whose header promises more pixels than their data holds: libjpeg only warns about
them ("premature end of data segment") and fills the missing rows with grey."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def declaring(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header edited to declare another size (its data unchanged)."""
    position = 2
    while True:
        marker, length = data[position + 1], int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            edited = bytearray(data)
            edited[position + 5 : position + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
            return bytes(edited)
        position += 2 + length


def incomplete_jpegs(photo: Path) -> dict[str, bytes]:
    """A 16 x 16 JPEG declaring 9,000 x 9,000, and ``photo`` declaring twice its height."""
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(small, format="JPEG")
    data = photo.read_bytes()
    width, height = Image.open(io.BytesIO(data)).size
    return {
        "grey_9000.jpg": declaring(small.getvalue(), 9000, 9000),
        "half_grey.jpg": declaring(data, width, height * 2),
    }
