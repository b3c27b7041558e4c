import numpy as np
import pytest

from fruits_kedro.inference.registry import (
    UnknownBackboneError,
    UnsupportedRuntimeError,
    get_backbone,
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
    assert get_backbone("efficientnet_lite0").feature_dim(224) == 1280
    assert resolve_input_size(get_backbone("vgg16"), None) == 100
    assert resolve_input_size(get_backbone("mobilenet_v2"), 96) == 96


def test_unknown_backbone_names_the_setting_and_the_choices():
    with pytest.raises(UnknownBackboneError, match=r"backbone\.name.*mobilenet_v2"):
        get_backbone("alexnet")


def test_a_pytorch_backbone_has_no_keras_model_and_runs_on_onnx_only():
    lite0 = get_backbone("efficientnet_lite0")
    assert lite0.runtimes == ("onnx", "onnx_int8")
    assert get_backbone("mobilenet_v2").runtimes == ("keras", "onnx", "onnx_int8")
    with pytest.raises(UnsupportedRuntimeError, match=r"feature_extraction\.runtime"):
        lite0.build(224, None)
