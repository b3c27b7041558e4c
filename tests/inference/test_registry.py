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


def test_a_variant_names_backbone_runtime_and_size_in_either_order():
    from fruits_kedro.inference.registry import parse_variant

    plain = parse_variant("mobilenet_v2")
    assert (plain.backbone.name, plain.runtime, plain.input_size) == ("mobilenet_v2", "onnx", 224)
    int8 = parse_variant("efficientnet_lite0@onnx_int8")
    assert (int8.backbone.name, int8.runtime, int8.input_size) == ("efficientnet_lite0", "onnx_int8", 224)
    for spec in ("mobilenet_v2@160@onnx_int8", "mobilenet_v2@onnx_int8@160"):
        variant = parse_variant(spec)
        assert (variant.runtime, variant.input_size, variant.spec) == ("onnx_int8", 160, spec)
        assert variant.pass_key == ("mobilenet_v2", 160)
    assert parse_variant("vgg16", default_runtime="keras").runtime == "keras"
    assert parse_variant("mobilenet_v2", default_input_size=112).input_size == 112
    assert parse_variant("mobilenet_v2@96", default_input_size=112).input_size == 96


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alexnet@onnx", r"'alexnet@onnx': unknown backbone 'alexnet'; known: .*mobilenet_v2"),
        ("mobilenet_v2@fast", r"'fast' is neither a runtime \(keras, onnx, onnx_int8\) nor an input size"),
        ("mobilenet_v2@onnx@onnx_int8", r"two runtimes \(onnx and onnx_int8\)"),
        ("mobilenet_v2@160@96", r"two input sizes \(160 and 96\)"),
        ("mobilenet_v2@16", r"input size 16 outside 32\.\.1024"),
        ("efficientnet_lite0@keras", r"torch network and runs on onnx, onnx_int8 only"),
        ("mobilenet_v2@", r"'' is neither a runtime"),
    ],
)
def test_a_bad_variant_is_refused_with_what_is_wrong(spec, message):
    from fruits_kedro.inference.registry import VariantError, parse_variant

    with pytest.raises(VariantError, match=message):
        parse_variant(spec)


def test_two_names_of_one_variant_are_refused():
    from fruits_kedro.inference.registry import VariantError, parse_variants

    assert [v.spec for v in parse_variants(["mobilenet_v2", "mobilenet_v2@onnx_int8", "mobilenet_v2@160"])] == [
        "mobilenet_v2",
        "mobilenet_v2@onnx_int8",
        "mobilenet_v2@160",
    ]
    with pytest.raises(VariantError, match=r"'mobilenet_v2' and 'mobilenet_v2@224@onnx' are the same variant"):
        parse_variants(["mobilenet_v2", "mobilenet_v2@224@onnx"])
    with pytest.raises(VariantError, match=r"same variant \(mobilenet_v2, onnx, 112 px\)"):
        parse_variants(["mobilenet_v2", "mobilenet_v2@112"], default_input_size=112)
