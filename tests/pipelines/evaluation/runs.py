"""Whole evaluation runs shared by the evaluation and predict tests, each run once per session
(through the ``generated_evaluation`` and ``real_evaluation`` fixtures of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_project_copy, run_kedro

# Small and fast: random weights at 64 px structure-check the pipeline, not its accuracy.
# One backbone only, in FP32 and INT8 (one pass for both): a second backbone (VGG16) would
# double the slowest part, and adds nothing the real-photo run does not check (there VGG16 is
# listed and skipped for lack of weights).
GENERATED_PARAMS = {
    "evaluation": {
        "feature_sets": ["mobilenet_v2", "mobilenet_v2@onnx_int8", "orb"],
        "weights": None,
        "input_size": 64,
        "logistic_regression": {"max_iter": 30},
    },
    "orb_baseline": {"vocabulary_size": 24, "vocabulary_sample_size": 5000, "kmeans_max_iter": 10},
}
# Real ImageNet weights. MobileNetV2 at 112 px (not its default 224) quarters the CNN time.
# Not 96/128/160/192: for those Keras wants a weights file of that size, and only the 224 one
# is in the shared cache (other sizes reuse it). VGG16 has no weights here: it must be skipped.
# efficientnet_lite0 (a default feature set) runs at the same size, from its PyTorch checkpoint.
REAL_INPUT_SIZE = 112
# A smaller ORB vocabulary sample and fewer k-means and L-BFGS iterations: ~30 s less, and
# the same MobileNetV2 accuracy (0.942 either way on this sample; the defaults are for real use).
# The default backbones without the INT8 and 160 px variants: those need a calibration each,
# and MobileNetV2's 160 px ImageNet file (not in the shared cache).
REAL_PARAMS = {
    "evaluation": {
        "feature_sets": ["mobilenet_v2", "efficientnet_lite0", "vgg16", "orb"],
        "input_size": REAL_INPUT_SIZE,
        "logistic_regression": {"max_iter": 30},
    },
    "orb_baseline": {"vocabulary_sample_size": 5000, "kmeans_max_iter": 8},
}


def _run(key: str, tmp_path_factory, images_root: Path, params: dict) -> Path:
    project = make_project_copy(tmp_path_factory.mktemp(f"evaluation_{key}"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_kedro(project, monkeypatch, pipeline="evaluation", images_root=str(images_root), **params)
    return project


def generated_evaluation_run(tmp_path_factory, generated_sample: Path) -> Path:
    return _run("generated", tmp_path_factory, generated_sample, GENERATED_PARAMS)


def real_evaluation_run(tmp_path_factory, shared_photos: Path) -> Path:
    return _run("real", tmp_path_factory, shared_photos, REAL_PARAMS)
