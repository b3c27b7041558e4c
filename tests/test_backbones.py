import subprocess
import sys

import numpy as np
import pytest

from fruits_kedro.backbones import (
    BACKBONES,
    UnknownBackboneError,
    WeightsUnavailableError,
    get_backbone,
    load_weights,
    resolve_input_size,
)


def test_vgg16_preprocessing_converts_rgb_to_bgr_and_subtracts_the_imagenet_mean():
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    out = get_backbone("vgg16").preprocess(red)
    np.testing.assert_allclose(out[0, 0, 0], [0 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-5)


def test_mobilenet_preprocessing_scales_to_minus_one_one():
    pixels = np.array([[[[0, 127.5, 255]]]], np.float32).astype(np.uint8)
    out = get_backbone("mobilenet_v2").preprocess(pixels)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)


def test_feature_dims_follow_the_study():
    assert get_backbone("vgg16").feature_dim(100) == 4608
    assert get_backbone("mobilenet_v2").feature_dim(224) == 1280
    assert resolve_input_size(get_backbone("vgg16"), None) == 100
    assert resolve_input_size(get_backbone("mobilenet_v2"), 96) == 96


def test_unknown_backbone_names_the_setting_and_the_choices():
    with pytest.raises(UnknownBackboneError, match=r"backbone\.name.*mobilenet_v2"):
        get_backbone("alexnet")


def test_missing_weights_file_names_the_file_and_the_remedies(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(WeightsUnavailableError) as info:
        load_weights(BACKBONES["mobilenet_v2"], 32, str(missing))
    message = str(info.value)
    assert str(missing) in message and "KERAS_HOME" in message and "weights=null" in message


def test_random_weights_are_reproducible():
    first = load_weights(BACKBONES["mobilenet_v2"], 48, None)
    from fruits_kedro import backbones

    backbones._driver_weights.clear()
    second = load_weights(BACKBONES["mobilenet_v2"], 48, None)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_a_weights_file_is_loaded(tmp_path):
    backbone = BACKBONES["mobilenet_v2"]
    model = backbone.build(32, None)
    path = tmp_path / "mobilenet.weights.h5"
    model.save_weights(path)
    loaded = load_weights(backbone, 32, str(path))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded))


def test_onnx_export_takes_uint8_pixels_only_and_matches_keras():
    # EfficientNet normalises inside the network: constants that a non-frozen export turns
    # into extra inputs. (VGG16's in-graph mean subtraction runs in the feature tests.)
    import onnxruntime as ort

    from fruits_kedro.backbones import inference_payload

    backbone, size = BACKBONES["efficientnet_b0"], 32
    arrays = load_weights(backbone, size, None)
    session = ort.InferenceSession(inference_payload(backbone, size, None, "onnx"))
    assert [(i.name, i.type) for i in session.get_inputs()] == [("pixels:0", "tensor(uint8)")]
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    network = backbone.build(size, None)
    network.set_weights(arrays)
    expected = np.asarray(network(backbone.preprocess(pixels)))
    got = session.run(None, {"pixels:0": pixels})[0]
    assert np.abs(expected).max() > 0
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_cached_onnx_model_is_found_without_loading_the_weights(tmp_path, monkeypatch):
    from fruits_kedro import backbones

    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path / "cache"))
    backbone, size = BACKBONES["mobilenet_v2"], 32
    model = backbone.build(size, None)
    weights_file = tmp_path / "mobilenet_v2_32.weights.h5"
    model.save_weights(str(weights_file))
    first = backbones._cached_onnx_model(backbone, size, str(weights_file))
    [cached] = (tmp_path / "cache" / "onnx").glob("mobilenet_v2_32_*.onnx")
    assert cached.read_bytes() == first

    def no_conversion(*args):
        raise AssertionError("converted again although the cache holds the model")

    def no_keras(*args):
        raise AssertionError("loaded the weights with Keras although the cache holds the model")

    monkeypatch.setattr(backbones, "_export_onnx", no_conversion)
    monkeypatch.setattr(backbones, "load_weights", no_keras)
    assert backbones._cached_onnx_model(backbone, size, str(weights_file)) == first
    # Other weights in the same file (one array changed) are another model: never served from the cache.
    arrays = model.get_weights()
    model.set_weights([arrays[0] + 1.0, *arrays[1:]])
    model.save_weights(str(weights_file))
    with pytest.raises(AssertionError, match="loaded the weights with Keras"):
        backbones._cached_onnx_model(backbone, size, str(weights_file))


def test_imagenet_weights_are_identified_by_the_files_in_the_keras_cache(tmp_path, monkeypatch):
    from fruits_kedro.backbones import weights_source_digest

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    backbone = BACKBONES["mobilenet_v2"]
    assert weights_source_digest(backbone, "imagenet") is None  # not downloaded yet: only Keras knows
    (tmp_path / "models").mkdir()
    weights_file = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    weights_file.write_bytes(b"first weights")
    (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"another network")
    first = weights_source_digest(backbone, "imagenet")
    assert first is not None and weights_source_digest(BACKBONES["vgg16"], "imagenet") != first
    weights_file.write_bytes(b"other weights")
    assert weights_source_digest(backbone, "imagenet") not in (None, first)
    assert weights_source_digest(backbone, str(tmp_path / "missing.h5")) is None
    assert weights_source_digest(backbone, "s3://bucket/weights.h5") is None


def test_finding_the_cached_onnx_model_does_not_import_tensorflow(tmp_path, monkeypatch):
    # What a kedro run with the onnx runtime does before Spark starts: ~8 s and ~0.6 GB of
    # driver memory when TensorFlow is imported to load the weights.
    from fruits_kedro import backbones

    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path))
    converted = backbones._cached_onnx_model(BACKBONES["mobilenet_v2"], 32, None)
    script = (
        "import sys\n"
        "from fruits_kedro.backbones import BACKBONES, inference_payload\n"
        "model = inference_payload(BACKBONES['mobilenet_v2'], 32, None, 'onnx')\n"
        "print(len(model), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert found.stdout.split() == [str(len(converted)), "False", "False"]
