import io

import numpy as np
import pytest
from PIL import Image

from fruits_kedro.pipelines.feature_extraction.nodes import (
    extract_features,
    merge_with_previous_features,
    report_feature_extraction,
)
from fruits_kedro.pipelines.preprocessing.nodes import ImageDecodeError, ImageDecoder

PREPROCESSED_SCHEMA = (
    "path string, relative_path string, label string, split string, size long, modified string, content binary"
)
PREPROCESSING = {"background": [255, 255, 255]}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # lossless: the driver decodes the same pixels
    return buffer.getvalue()


def _preprocessed(spark, n: int, size: int):
    rng = np.random.default_rng(0)
    rows = [
        (f"/x/{i}.png", f"Training/C{i % 2}/{i}.png", f"C{i % 2}", "Training", 1000 + i, "1700000000.0",
         _png(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)))
        for i in range(n)
    ]
    return spark.createDataFrame(rows, PREPROCESSED_SCHEMA)


@pytest.mark.parametrize(
    ("backbone", "size", "dim"),
    [("mobilenet_v2", 64, 1280), ("vgg16", 100, 4608)],  # VGG16 at 100x100: 3x3x512, as in the study
)
def test_extract_features_gives_one_vector_per_image(spark, backbone, size, dim):
    images = _preprocessed(spark, n=5, size=size)
    backbone_params = {"name": backbone, "input_size": size, "weights": None}
    features = extract_features(images, backbone_params, PREPROCESSING, {"batch_size": 2})
    rows = features.collect()
    assert len(rows) == 5
    assert {len(r.features) for r in rows} == {dim}
    assert "content" not in features.columns
    matrix = np.array([r.features for r in rows])
    assert np.all(np.isfinite(matrix))
    # Different images give different features (the batches were not mixed up or repeated).
    # Random weights shrink activations by orders of magnitude: compare relative to the largest.
    scaled = matrix / np.abs(matrix).max()
    assert len({tuple(np.round(v, 4)) for v in scaled}) == 5


@pytest.mark.parametrize("runtime", ["keras", "onnx"])
def test_extract_features_matches_the_keras_model_on_the_driver(spark, runtime):
    """The Spark path (decode in the task, broadcast model, batching) equals plain Keras."""
    from fruits_kedro.backbones import get_backbone, load_weights

    size = 64
    images = _preprocessed(spark, n=3, size=size)
    params = {"name": "mobilenet_v2", "input_size": size, "weights": None}
    features = extract_features(images, params, PREPROCESSING, {"batch_size": 2, "runtime": runtime})
    by_path = {r.path: np.array(r.features) for r in features.collect()}
    backbone = get_backbone("mobilenet_v2")
    model = backbone.build(size, None)
    model.set_weights(load_weights(backbone, size, None))
    rows = images.orderBy("path").collect()
    pixels = ImageDecoder(size).decode_batch([r.path for r in rows], [r.content for r in rows])
    expected = model.predict(backbone.preprocess(pixels), verbose=0)
    got = np.stack([by_path[p] for p in sorted(by_path)])
    scale = np.abs(expected).max()
    assert scale > 0  # a real comparison, not of two zero matrices
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


def test_a_file_that_stops_decoding_fails_the_run_naming_it(spark):
    # Preprocessing verified every image; one that no longer decodes at inference time
    # (replaced mid-run) must stop the run with its path, not vanish from the features.
    rows = [("/x/gone-bad.jpg", "T/C/gone-bad.jpg", "C", "T", 1, None, b"no longer a JPEG")]
    images = spark.createDataFrame(rows, PREPROCESSED_SCHEMA)
    features = extract_features(images, {"name": "mobilenet_v2", "input_size": 32, "weights": None}, PREPROCESSING, {})
    with pytest.raises(Exception, match=r"/x/gone-bad\.jpg: not a decodable image") as info:
        features.collect()
    assert ImageDecodeError.__name__ in str(info.value)


def _photo_content(spark, photos_root, n: int):
    paths = sorted(photos_root.glob("Test/*/*.jpg"))[::10][:n]
    rows = [(str(p), p.name, p.parent.name, "Test", p.stat().st_size, None, p.read_bytes()) for p in paths]
    return spark.createDataFrame(rows, PREPROCESSED_SCHEMA)


@pytest.mark.real_photos
def test_onnx_runtime_matches_keras_on_real_photos(spark, shared_photos, imagenet_keras_home):
    images = _photo_content(spark, shared_photos, n=24)
    backbone = {"name": "mobilenet_v2", "input_size": 100, "weights": "imagenet"}
    by_runtime = {}
    for runtime in ("keras", "onnx"):
        features = extract_features(images, backbone, PREPROCESSING, {"batch_size": 8, "runtime": runtime})
        by_runtime[runtime] = np.array([r.features for r in features.orderBy("path").collect()])
    keras_features, onnx_features = by_runtime["keras"], by_runtime["onnx"]
    assert keras_features.shape == (24, 1280) and np.abs(keras_features).max() > 0.1
    relative = np.abs(onnx_features - keras_features).max() / np.abs(keras_features).max()
    assert relative <= 1e-4


def test_merge_keeps_unchanged_previous_features_and_drops_stale_ones(spark):
    schema = "path string, relative_path string, label string, split string, size long, modified string, features array<float>"
    previous = spark.createDataFrame(
        [("/a.jpg", "T/A/a.jpg", "A", "T", 1, "m1", [1.0]),   # unchanged: reused
         ("/b.jpg", "T/A/b.jpg", "A", "T", 2, "m1", [2.0]),   # changed since (new size): recomputed
         ("/gone.jpg", "T/A/gone.jpg", "A", "T", 3, "m1", [3.0])],  # deleted: dropped
        schema,
    )
    new = spark.createDataFrame([("/b.jpg", "T/A/b.jpg", "A", "T", 5, "m2", [20.0])], schema)
    current = spark.createDataFrame([("/a.jpg", 1, "m1"), ("/b.jpg", 5, "m2")], "path string, size long, modified string")
    merged, reuse = merge_with_previous_features(new, previous, current, {"incremental": True})
    assert {r.path: list(r.features) for r in merged.collect()} == {"/a.jpg": [1.0], "/b.jpg": [20.0]}
    assert report_feature_extraction(merged, reuse) == {"incremental": True, "featurized": 1, "reused": 1}
    full, reuse = merge_with_previous_features(new, previous, current, {"incremental": False})
    assert full.count() == 1
    assert report_feature_extraction(full, reuse) == {"incremental": False, "featurized": 1, "reused": 0}
