"""Runtime ``onnx_int8``: the backbone's ONNX model quantized on the run's photos."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import onnx

from fruits_kedro.imaging.decode import ImageDecoder
from fruits_kedro.inference import quantize
from fruits_kedro.inference.featurize import featurize_images, run_feature_settings
from fruits_kedro.inference.onnx_export import inference_payload
from fruits_kedro.inference.registry import get_backbone
from fruits_kedro.inference.runtime import onnx_features
from tests.inference.raw_images import FEATURE_EXTRACTION, PREPROCESSING, random_images


def _decoded(paths, size):
    return ImageDecoder(size).decode_batch([str(p) for p in paths], [p.read_bytes() for p in paths])


def _nearest_centroid_accuracy(train, train_labels, test, test_labels) -> float:
    labels = sorted(set(train_labels))
    centroids = np.stack([train[train_labels == label].mean(axis=0) for label in labels])
    predicted = np.array(labels)[((test[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)]
    return float(np.mean(predicted == test_labels))


def test_int8_features_of_real_photos_keep_their_direction_and_their_accuracy(shared_photos, imagenet_keras_home):
    size = 112
    fp32 = inference_payload(get_backbone("mobilenet_v2"), size, "imagenet", "onnx")
    train_paths = sorted(shared_photos.glob("Training/*/*.jpg"))
    test_paths = sorted(shared_photos.glob("Test/*/*.jpg"))
    train_pixels, test_pixels = _decoded(train_paths, size), _decoded(test_paths, size)
    int8 = quantize.quantize_int8(fp32, train_pixels[::10])
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load_from_string(int8).graph.node}
    assert len(int8) < len(fp32) / 2  # 8-bit weights
    features = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        infer = onnx_features(model, threads=2)
        features[name] = [
            np.concatenate([infer(p[i : i + 64]) for i in range(0, len(p), 64)]) for p in (train_pixels, test_pixels)
        ]
    a, b = features["fp32"][1], features["int8"][1]
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.mean() > 0.9
    train_labels = np.array([p.parent.name for p in train_paths])
    test_labels = np.array([p.parent.name for p in test_paths])
    accuracy = {name: _nearest_centroid_accuracy(f[0], train_labels, f[1], test_labels) for name, f in features.items()}
    print(f"nearest-centroid accuracy on Test: {accuracy}, mean cosine {cosine.mean():.4f}")
    assert accuracy["fp32"] > 0.8 and accuracy["int8"] >= accuracy["fp32"] - 0.03


def test_the_int8_runtime_featurizes_in_spark_and_quantizes_once_per_calibration(spark, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path / "cache"))  # no INT8 model of other tests
    size = 64
    images = random_images(spark, tmp_path, n=6, size=size)
    backbone = {"name": "mobilenet_v2", "input_size": size, "weights": None}
    settings = {**FEATURE_EXTRACTION, "batch_size": 4, "int8_calibration_photos": 4}
    fp32 = {
        r.path: np.array(r.features) for r in featurize_images(images, backbone, PREPROCESSING, settings)[0].collect()
    }
    int8_settings = {**settings, "runtime": "onnx_int8"}
    # What an incremental run compares with before this machine has an INT8 model: no digest,
    # so nothing is reused from features of a model that is gone.
    assert '"int8_model":null' in run_feature_settings(backbone, PREPROCESSING, int8_settings)
    with caplog.at_level(logging.INFO, logger="fruits_kedro.inference.quantize"):
        for _ in range(2):
            frame, rejected = featurize_images(images, backbone, PREPROCESSING, {**settings, "runtime": "onnx_int8"})
            rows = frame.collect()
    int8 = {r.path: np.array(r.features) for r in rows}
    assert sorted(int8) == sorted(fp32) and rejected.reasons == {}
    assert all(np.all(np.isfinite(v)) for v in int8.values())
    assert any(np.abs(int8[p] - fp32[p]).max() > 1e-3 * np.abs(fp32[p]).max() for p in fp32)  # another model ran
    assert '"quantized":"int8"' in rows[0].feature_settings  # INT8 features are never reused as FP32 ones
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("Quantized mobilenet_v2_64") for m in messages) == 1
    assert sum(m.startswith("INT8 model for mobilenet_v2_64 from the cache") for m in messages) == 1
    # Other photos (an incremental run's new ones) reuse the first run's model: one model for all features.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fruits_kedro.inference.quantize"):
        others = random_images(spark, tmp_path / "others", n=3, size=size)
        frame, _ = featurize_images(others, backbone, PREPROCESSING, {**settings, "runtime": "onnx_int8"})
        assert frame.select("feature_settings").first()[0] == rows[0].feature_settings
    assert [m for m in (r.getMessage() for r in caplog.records) if m.startswith("Quantized")] == []
    assert '"int8_model":"' in rows[0].feature_settings  # the quantized model's digest, not null
    assert run_feature_settings(backbone, PREPROCESSING, int8_settings) == rows[0].feature_settings


_PEAK_MEMORY_OF_QUANTIZATION = """
import resource, sys
import numpy as np
from fruits_kedro.inference.quantize import quantize_int8
pixels = np.random.default_rng(0).integers(0, 255, (int(sys.argv[2]), 112, 112, 3), dtype=np.uint8)
quantize_int8(open(sys.argv[1], "rb").read(), pixels)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_calibration_memory_stays_flat_in_the_number_of_photos(tmp_path):
    model = tmp_path / "mobilenet_v2_112.onnx"
    model.write_bytes(inference_payload(get_backbone("mobilenet_v2"), 112, None, "onnx"))

    def peak_mb(photos: int) -> int:
        command = [sys.executable, "-c", _PEAK_MEMORY_OF_QUANTIZATION, str(model), str(photos)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
        return int(done.stdout.split()[-1])

    few, many = peak_mb(16), peak_mb(128)
    # Kept all at once, the activations of 112 more photos would weigh hundreds of MB.
    assert many - few < 250, f"peak {few} MB with 16 calibration photos, {many} MB with 128"
