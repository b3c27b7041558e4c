"""The evaluation pipeline's classifier as plain arrays, applied without Spark or TensorFlow.

The saved Spark ML ``PipelineModel`` (centring + projection onto k principal axes + logistic
regression) needs a JVM; the mobile app's service must answer a photo in milliseconds. So the
pipeline also saves the same model as arrays (:func:`export_arrays`), with the backbone as an
ONNX model, and :class:`ExportedClassifier` applies them with ONNX Runtime and NumPy: decode
(:mod:`fruits_kedro.imaging.decode`, as in training), CNN, ``(x - mean) @ axes``, softmax.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

ARRAY_NAMES = ("mean", "axes", "coefficients", "intercepts", "labels", "onnx_model")


class ClassifierUnavailableError(RuntimeError):
    """No usable classifier was saved (never trained, or every backbone was skipped)."""


def export_arrays(model: Any, onnx_model: bytes) -> dict[str, np.ndarray]:
    """The arrays of a fitted ``PipelineModel`` ([CentredProjection,] LogisticRegressionModel,
    IndexToString) and the backbone's ONNX model, ready for ``numpy.savez``."""
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import IndexToString

    from fruits_kedro.ml.pca import CentredProjection

    stages = {type(stage): stage for stage in model.stages}
    regression, to_label = stages.get(LogisticRegressionModel), stages.get(IndexToString)
    if regression is None or to_label is None:
        raise ClassifierUnavailableError("the saved classifier has no logistic regression stage to export")
    projection = stages.get(CentredProjection)
    mean, axes = projection.matrices() if projection is not None else (np.zeros(0), np.zeros((0, 0)))
    return {
        "mean": mean,
        "axes": axes,
        "coefficients": regression.coefficientMatrix.toArray(),
        "intercepts": regression.interceptVector.toArray(),
        "labels": np.asarray(to_label.getLabels(), dtype=str),
        "onnx_model": np.frombuffer(onnx_model, dtype=np.uint8),
    }


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[str, float]]  # (label, probability), most probable first

    @property
    def label(self) -> str:
        return self.top[0][0]


class ExportedClassifier:
    """Photos (bytes) -> class probabilities, from the exported arrays and settings.

    Args:
        arrays: What :func:`export_arrays` made (``classifier_export`` in the catalog).
        settings: ``classifier_settings``: the backbone's ``input_size`` and the ``labels``.
        threads: ONNX Runtime's threads (default: its own choice).
    """

    def __init__(self, arrays: dict[str, np.ndarray], settings: dict[str, Any], threads: int = 0) -> None:
        if not settings.get("backbone"):
            raise ClassifierUnavailableError(
                f"The saved classifier has no backbone: {settings.get('reason', 'unknown reason')}. Provide the "
                "weights (evaluation.weights / KERAS_HOME) and rerun `kedro run --pipelines evaluation`."
            )
        missing = [name for name in ARRAY_NAMES if name not in arrays]
        if missing:
            raise ClassifierUnavailableError(f"classifier_export lacks {', '.join(missing)}: rerun the evaluation")
        from fruits_kedro.inference.runtime import onnx_features

        self.settings = settings
        self.input_size = int(settings["input_size"])
        self.labels = [str(label) for label in arrays["labels"]]
        self._mean, self._axes = np.asarray(arrays["mean"]), np.asarray(arrays["axes"])
        self._coefficients, self._intercepts = np.asarray(arrays["coefficients"]), np.asarray(arrays["intercepts"])
        self._features = onnx_features(np.asarray(arrays["onnx_model"], dtype=np.uint8).tobytes(), threads)
        self._lock = threading.Lock()  # one ONNX session, shared by a server's request threads

    def decode(self, data: bytes, max_pixels: int | None = None) -> np.ndarray:
        """One photo's pixels at the backbone's size; :class:`ImageDecodeError` if it is not one
        (:class:`ImageTooLargeError` if it has more than ``max_pixels``, default Pillow's limit).

        A large photo is decoded at a reduced size (JPEG's DCT scaling): memory and time follow
        the backbone's input size, not the photo's.
        """
        from fruits_kedro.imaging.decode import PILLOW_MAX_PIXELS, decode_image

        return decode_image(data, self.input_size, max_pixels=max_pixels or PILLOW_MAX_PIXELS, reduce=True)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, s, s, 3) uint8 -> (N, classes)."""
        with self._lock:
            features = self._features(pixels).astype(np.float64)
        scores = (features - self._mean) @ self._axes if self._axes.size else features
        logits = scores @ self._coefficients.T + self._intercepts
        if logits.shape[1] == 1:  # binomial: Spark keeps one row of coefficients, for class 1
            p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, images: list[bytes], top: int = 3) -> list[Prediction]:
        """The ``top`` most probable labels of each photo, in the order given."""
        if not images:
            return []
        probabilities = self.probabilities(np.stack([self.decode(data) for data in images]))
        return [Prediction([(self.labels[i], float(row[i])) for i in np.argsort(-row)[:top]]) for row in probabilities]
