import subprocess
import sys

import numpy as np
import pytest

from fruits_kedro.inference.registry import BACKBONES
from fruits_kedro.inference.weights import load_weights


def test_onnx_export_takes_uint8_pixels_only_and_matches_keras():
    # EfficientNet normalises inside the network: constants that a non-frozen export turns
    # into extra inputs. (VGG16's in-graph mean subtraction runs in the feature tests.)
    import onnxruntime as ort

    from fruits_kedro.inference.onnx_export import inference_payload

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
    from fruits_kedro.inference import onnx_export

    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path / "cache"))
    backbone, size = BACKBONES["mobilenet_v2"], 32
    model = backbone.build(size, None)
    weights_file = tmp_path / "mobilenet_v2_32.weights.h5"
    model.save_weights(str(weights_file))
    first = onnx_export._cached_onnx_model(backbone, size, str(weights_file))
    [cached] = (tmp_path / "cache" / "onnx").glob("mobilenet_v2_32_*.onnx")
    assert cached.read_bytes() == first

    def no_conversion(*args):
        raise AssertionError("converted again although the cache holds the model")

    def no_keras(*args):
        raise AssertionError("loaded the weights with Keras although the cache holds the model")

    monkeypatch.setattr(onnx_export, "_export_onnx", no_conversion)
    monkeypatch.setattr(onnx_export, "load_weights", no_keras)
    assert onnx_export._cached_onnx_model(backbone, size, str(weights_file)) == first
    # Other weights in the same file (one array changed) are another model: never served from the cache.
    arrays = model.get_weights()
    model.set_weights([arrays[0] + 1.0, *arrays[1:]])
    model.save_weights(str(weights_file))
    with pytest.raises(AssertionError, match="loaded the weights with Keras"):
        onnx_export._cached_onnx_model(backbone, size, str(weights_file))


def test_finding_the_cached_onnx_model_does_not_import_tensorflow(tmp_path, monkeypatch):
    # What a kedro run with the onnx runtime does before Spark starts: ~8 s and ~0.6 GB of
    # driver memory when TensorFlow is imported to load the weights.
    from fruits_kedro.inference import onnx_export

    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path))
    converted = onnx_export._cached_onnx_model(BACKBONES["mobilenet_v2"], 32, None)
    script = (
        "import sys\n"
        "from fruits_kedro.inference.onnx_export import inference_payload\n"
        "from fruits_kedro.inference.registry import BACKBONES\n"
        "model = inference_payload(BACKBONES['mobilenet_v2'], 32, None, 'onnx')\n"
        "print(len(model), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert found.stdout.split() == [str(len(converted)), "False", "False"]
