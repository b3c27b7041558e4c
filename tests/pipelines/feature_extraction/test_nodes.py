import numpy as np
import pytest

from fruits_kedro.pipelines.feature_extraction.nodes import extract_features, merge_with_previous_features, pixels_to_batch

PREPROCESSED_SCHEMA = (
    "path string, relative_path string, label string, split string, size long, modified string, pixels binary"
)


def _preprocessed(spark, n: int, size: int):
    rng = np.random.default_rng(0)
    rows = [
        (f"/x/{i}.jpg", f"Training/C{i % 2}/{i}.jpg", f"C{i % 2}", "Training", 1000 + i, "1700000000.0",
         rng.integers(0, 255, (size, size, 3), dtype=np.uint8).tobytes())
        for i in range(n)
    ]
    return spark.createDataFrame(rows, PREPROCESSED_SCHEMA)


def test_pixels_to_batch_stacks_rows_in_order():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 7, np.uint8)
    batch = pixels_to_batch([a.tobytes(), b.tobytes()], 4)
    assert batch.shape == (2, 4, 4, 3)
    assert batch[1].min() == 7 and batch[0].max() == 0


@pytest.mark.parametrize(
    ("backbone", "size", "dim"),
    [("mobilenet_v2", 64, 1280), ("vgg16", 100, 4608)],  # VGG16 at 100x100: 3x3x512, as in the study
)
def test_extract_features_gives_one_vector_per_image(spark, backbone, size, dim):
    images = _preprocessed(spark, n=5, size=size)
    features = extract_features(images, {"name": backbone, "input_size": size, "weights": None}, {"batch_size": 2})
    rows = features.collect()
    assert len(rows) == 5
    assert {len(r.features) for r in rows} == {dim}
    matrix = np.array([r.features for r in rows])
    assert np.all(np.isfinite(matrix))
    # Different images give different features (the batches were not mixed up or repeated).
    # Random weights shrink activations by orders of magnitude: compare relative to the largest.
    scaled = matrix / np.abs(matrix).max()
    assert len({tuple(np.round(v, 4)) for v in scaled}) == 5


def test_extract_features_matches_the_keras_model_on_the_driver(spark):
    """The Spark path (broadcast weights, worker model, batching) equals plain Keras."""
    from fruits_kedro.backbones import get_backbone, load_weights

    size = 64
    images = _preprocessed(spark, n=3, size=size)
    params = {"name": "mobilenet_v2", "input_size": size, "weights": None}
    by_path = {r.path: np.array(r.features) for r in extract_features(images, params, {"batch_size": 2}).collect()}
    backbone = get_backbone("mobilenet_v2")
    model = backbone.build(size, None)
    model.set_weights(load_weights(backbone, size, None))
    pixels = pixels_to_batch([r.pixels for r in images.orderBy("path").collect()], size)
    expected = model.predict(backbone.preprocess(pixels), verbose=0)
    got = np.stack([by_path[p] for p in sorted(by_path)])
    scale = np.abs(expected).max()
    assert scale > 0  # a real comparison, not of two zero matrices
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


def _decoded_photos(spark, photos_root, n: int, size: int):
    from fruits_kedro.pipelines.preprocessing.nodes import decode_image

    paths = sorted(photos_root.glob("Test/*/*.jpg"))[::10][:n]
    rows = [(str(p), p.name, p.parent.name, "Test", p.stat().st_size, None, decode_image(p.read_bytes(), size).tobytes())
            for p in paths]
    return spark.createDataFrame(rows, PREPROCESSED_SCHEMA)


@pytest.mark.real_photos
def test_onnx_runtime_matches_keras_on_real_photos(spark, shared_photos, imagenet_keras_home):
    size = 100
    images = _decoded_photos(spark, shared_photos, n=24, size=size)
    backbone = {"name": "mobilenet_v2", "input_size": size, "weights": "imagenet"}
    by_runtime = {}
    for runtime in ("keras", "onnx"):
        rows = extract_features(images, backbone, {"batch_size": 8, "runtime": runtime}).orderBy("path").collect()
        by_runtime[runtime] = np.array([r.features for r in rows])
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
    merged, report = merge_with_previous_features(new, previous, current, {"incremental": True})
    assert {r.path: list(r.features) for r in merged.collect()} == {"/a.jpg": [1.0], "/b.jpg": [20.0]}
    assert report == {"incremental": True, "featurized": 1, "reused": 1}
    full, report = merge_with_previous_features(new, previous, current, {"incremental": False})
    assert full.count() == 1 and report["reused"] == 0
