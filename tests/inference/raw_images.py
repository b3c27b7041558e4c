"""Ingestion's ``raw_images`` for image files written by a test, for the featurization tests."""

import io

import numpy as np
from PIL import Image

from tests.params import params

RAW_SCHEMA = "path string, relative_path string, label string, split string, size long, modified string"
PREPROCESSING = params("preprocessing")
# FP32 explicitly: these tests compare numerics (with Keras, across batch sizes); `auto` has its own tests.
FEATURE_EXTRACTION = params("feature_extraction", runtime="onnx")


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # lossless: the driver decodes the same pixels
    return buffer.getvalue()


def raw_images(spark, folder, files: dict[str, bytes]):
    """Ingestion's raw_images for these files, written under ``folder`` (the tasks read them)."""
    rows = []
    for i, (relative, data) in enumerate(sorted(files.items())):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append((str(path), relative, path.parent.name, "Training", len(data), str(1700000000 + i)))
    return spark.createDataFrame(rows, RAW_SCHEMA)


def random_images(spark, folder, n: int, size: int):
    rng = np.random.default_rng(0)
    return raw_images(
        spark,
        folder,
        {f"C{i % 2}/{i}.png": png(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for i in range(n)},
    )
