"""The efficientnet_lite0 backbone: PyTorch's network with its packaged ImageNet checkpoint,
exported once to ONNX on the driver and run by ONNX Runtime like the Keras backbones."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fruits_kedro.imaging.decode import ImageDecoder
from fruits_kedro.inference.registry import get_backbone
from fruits_kedro.inference.runtime import onnx_features
from tests.conftest import SHARED_PHOTOS
from tests.extras import skip_without_torch
from tests.inference.raw_images import FEATURE_EXTRACTION, PREPROCESSING, RAW_SCHEMA

BACKBONE = get_backbone("efficientnet_lite0")
SIZE = 224


@pytest.fixture(scope="module")
def exported() -> bytes:
    """The ImageNet export, once per session (the per-process cache serves the Spark test too)."""
    skip_without_torch()
    from fruits_kedro.inference.onnx_export import inference_payload

    return inference_payload(BACKBONE, SIZE, "imagenet", "onnx")


@pytest.fixture(scope="module")
def pytorch_network():
    skip_without_torch()
    from fruits_kedro.inference.torch_export import features_module

    return features_module(BACKBONE, SIZE, "imagenet")


@pytest.fixture(scope="module")
def photos_root(request) -> Path:
    """The real Fruits-360 photos where they are beside the checkout, else the generated sample's."""
    return SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else request.getfixturevalue("generated_sample")


def _pixels(paths: list[Path]) -> np.ndarray:
    return ImageDecoder(SIZE).decode_batch([str(p) for p in paths], [p.read_bytes() for p in paths])


def _pytorch_features(network, pixels: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return network(torch.from_numpy(pixels)).numpy()


def test_the_export_takes_uint8_rgb_pixels_and_gives_1280_features(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    [pixels] = session.get_inputs()
    assert (pixels.name, pixels.type, pixels.shape[1:]) == ("pixels", "tensor(uint8)", [SIZE, SIZE, 3])
    assert session.get_outputs()[0].shape[1:] == [BACKBONE.feature_dim(SIZE)] == [1280]


def test_onnx_features_match_pytorch_on_real_photos(exported, pytorch_network, photos_root):
    paths = sorted(photos_root.glob("*/*/*.jpg"))[::40][:16]
    pixels = _pixels(paths)
    expected = _pytorch_features(pytorch_network, pixels)
    got = onnx_features(exported, threads=2)(pixels)
    assert got.shape == expected.shape == (len(paths), 1280)
    assert np.abs(expected).max() > 0.1  # real activations, not a comparison of two zero matrices
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.real_photos
def test_imagenet_features_give_nearest_centroids_that_classify_real_photos(exported, shared_photos):
    """Centroids of the Training photos' features; each Test photo gets its nearest one's class."""
    features = onnx_features(exported, threads=2)
    by_split = {}
    for split in ("Training", "Test"):
        paths = sorted(shared_photos.glob(f"{split}/*/*.jpg"))
        vectors = np.concatenate([features(_pixels(paths[i : i + 64])) for i in range(0, len(paths), 64)])
        by_split[split] = (vectors, np.array([p.parent.name for p in paths]))
    train, train_labels = by_split["Training"]
    test, test_labels = by_split["Test"]
    classes = sorted(set(train_labels))
    centroids = np.stack([train[train_labels == c].mean(axis=0) for c in classes])
    distances = ((test[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    predicted = np.array(classes)[distances.argmin(axis=1)]
    accuracy = float((predicted == test_labels).mean())
    print(f"efficientnet_lite0 nearest-centroid accuracy on {len(test)} Test photos: {accuracy:.3f}")
    assert len(classes) == 103 and accuracy >= 0.80


def test_featurize_images_in_spark_gives_pytorchs_features(spark, exported, pytorch_network, photos_root):
    from fruits_kedro.inference.featurize import featurize_images

    paths = sorted(photos_root.glob("Test/*/*.jpg"))[::50][:6]
    rows = [(str(p), p.name, p.parent.name, "Test", p.stat().st_size, None) for p in paths]
    images = spark.createDataFrame(rows, RAW_SCHEMA)
    backbone = {"name": "efficientnet_lite0", "input_size": SIZE, "weights": "imagenet"}
    features, rejected = featurize_images(images, backbone, PREPROCESSING, {**FEATURE_EXTRACTION, "batch_size": 4})
    by_path = {r.path: np.array(r.features) for r in features.collect()}
    assert sorted(by_path) == [str(p) for p in paths] and rejected.reasons == {}
    expected = _pytorch_features(pytorch_network, _pixels(paths))
    got = np.stack([by_path[str(p)] for p in paths])
    assert np.abs(got - expected).max() <= 1e-4


def test_a_cached_export_is_found_without_importing_torch(exported):
    # The conftest's FRUITS_KEDRO_CACHE_DIR reaches the subprocess: it finds this session's export.
    script = (
        "import sys\n"
        "from fruits_kedro.inference.onnx_export import inference_payload\n"
        "from fruits_kedro.inference.registry import get_backbone\n"
        f"model = inference_payload(get_backbone('efficientnet_lite0'), {SIZE}, 'imagenet', 'onnx')\n"
        "print(len(model), 'torch' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert found.stdout.split() == [str(len(exported)), "False", "False"]


def test_without_the_torch_extra_the_error_names_the_setting_and_the_install(monkeypatch, tmp_path):
    from fruits_kedro.inference import onnx_export
    from fruits_kedro.inference.weights import WeightsUnavailableError

    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(onnx_export, "_onnx_models", {})
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as where it is not installed
    with pytest.raises(WeightsUnavailableError) as error:
        onnx_export.inference_payload(BACKBONE, SIZE, "imagenet", "onnx")
    message = str(error.value)
    assert "backbone.name" in message and "torch" in message and 'pip install -e ".[torch]"' in message
    assert "\n" not in message  # the CLI shows it as it is: one line


def test_the_keras_runtime_refuses_a_pytorch_backbone():
    from fruits_kedro.inference.onnx_export import inference_payload
    from fruits_kedro.inference.registry import UnsupportedRuntimeError

    with pytest.raises(
        UnsupportedRuntimeError, match=r"efficientnet_lite0.*onnx, onnx_int8 only.*feature_extraction\.runtime"
    ):
        inference_payload(BACKBONE, SIZE, "imagenet", "keras")
