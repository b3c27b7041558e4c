import numpy as np
import pytest

from fruits_kedro.inference.registry import BACKBONES
from fruits_kedro.inference.weights import WeightsUnavailableError, load_weights


def test_missing_weights_file_names_the_file_and_the_remedies(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(WeightsUnavailableError) as info:
        load_weights(BACKBONES["mobilenet_v2"], 32, str(missing))
    message = str(info.value)
    assert str(missing) in message and "KERAS_HOME" in message and "weights=null" in message


def test_random_weights_are_reproducible():
    first = load_weights(BACKBONES["mobilenet_v2"], 48, None)
    from fruits_kedro.inference import weights

    weights._driver_weights.clear()
    second = load_weights(BACKBONES["mobilenet_v2"], 48, None)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_a_weights_file_is_loaded(tmp_path):
    backbone = BACKBONES["mobilenet_v2"]
    model = backbone.build(32, None)
    path = tmp_path / "mobilenet.weights.h5"
    model.save_weights(path)
    loaded = load_weights(backbone, 32, str(path))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded))


def test_imagenet_weights_are_identified_by_the_files_in_the_keras_cache(tmp_path, monkeypatch):
    from fruits_kedro.inference.weights import weights_source_digest

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
