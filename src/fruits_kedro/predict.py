"""Classify photos with the classifier that ``kedro run --pipeline evaluation`` saved.

Usage, from the project root (after the evaluation pipeline has run)::

    python -m fruits_kedro.predict path/to/photo.jpg [more.jpg ...] [--top 3] [--env local]

The catalog gives everything: ``classifier_settings`` (backbone, input size, weights) and
``classifier_model`` (the fitted centring + PCA + logistic regression, a Spark ML
PipelineModel). A photo of any size and mode is decoded exactly as preprocessing decodes
the training photos (resized to the backbone's input size), run through the same backbone
weights, then through the saved PipelineModel. Prints the top labels with probabilities.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class ClassifierUnavailableError(RuntimeError):
    """No usable classifier was saved (never trained, or every backbone was skipped)."""


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (label, probability), most probable first

    @property
    def label(self) -> str:
        return self.top[0][0]


class PhotoClassifier:
    """The saved backbone + PipelineModel, loaded once, applied to batches of photos."""

    def __init__(self, model, settings: dict[str, Any], batch_size: int = 64) -> None:
        if not settings.get("backbone"):
            raise ClassifierUnavailableError(
                "The saved classifier has no backbone (classifier_settings in the catalog): "
                f"{settings.get('reason', 'unknown reason')}. Provide the weights "
                "(setting evaluation.weights / KERAS_HOME) and rerun `kedro run --pipeline evaluation`."
            )
        from fruits_kedro.inference.registry import get_backbone
        from fruits_kedro.inference.weights import load_weights

        self.model = model
        self.settings = settings
        self.batch_size = int(batch_size)
        self.backbone = get_backbone(settings["backbone"])
        self.input_size = int(settings["input_size"])
        self._weights = load_weights(self.backbone, self.input_size, settings.get("weights"))
        self._network = None

    @classmethod
    def from_catalog(cls, catalog, batch_size: int = 64) -> PhotoClassifier:
        return cls(catalog.load("classifier_model"), catalog.load("classifier_settings"), batch_size=batch_size)

    def _features(self, pixels: np.ndarray) -> np.ndarray:
        """(N, s, s, 3) uint8 -> (N, features), with the weights the pipeline broadcast."""
        if self._network is None:
            self._network = self.backbone.inference_model(self.input_size, self._weights)
        outputs = [
            np.asarray(self._network(pixels[i : i + self.batch_size], training=False))
            for i in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def predict(self, paths: list[str | Path], top: int = 3) -> list[Prediction]:
        """Top-``top`` (label, probability) for each photo, in the order given."""
        from pyspark.ml.linalg import Vectors

        from fruits_kedro.imaging.decode import decode_image
        from fruits_kedro.spark import get_spark

        if not paths:
            return []
        pixels = []
        for path in paths:
            data = Path(path).read_bytes()  # a missing file fails here, naming it
            try:
                pixels.append(decode_image(data, self.input_size))
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        features = self._features(np.stack(pixels))
        input_column = self.settings.get("input_column", "vector")
        spark = get_spark()
        rows = [(i, Vectors.dense(vector.astype(float))) for i, vector in enumerate(features)]
        frame = spark.createDataFrame(rows, ["row", input_column])
        scored = self.model.transform(frame).select("row", "probability").orderBy("row").collect()
        labels = self.settings["labels"]
        predictions = []
        for path, row in zip(paths, scored):
            probabilities = row["probability"].toArray()
            best = np.argsort(-probabilities)[:top]
            predictions.append(Prediction(str(path), [(labels[i], float(probabilities[i])) for i in best]))
        return predictions


def load_classifier(project_path: str | Path = ".", env: str | None = None, batch_size: int = 64) -> PhotoClassifier:
    """A :class:`PhotoClassifier` from the project's catalog (``conf/<env>``)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project_path = Path(project_path).resolve()
    if not (project_path / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{project_path} is not a Kedro project root (no pyproject.toml): use --project-path")
    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        context = session.load_context()  # runs the hooks: the project's Spark configuration
        return PhotoClassifier.from_catalog(context.catalog, batch_size=batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fruits-kedro predict",
        description="Print the most probable fruit classes of photos, with the classifier of the evaluation pipeline.",
    )
    parser.add_argument("photos", nargs="+", help="image files (any size; JPEG, PNG...)")
    parser.add_argument("--top", type=int, default=3, help="labels printed per photo (default 3)")
    parser.add_argument("--env", default=None, help="Kedro configuration environment (default: local)")
    parser.add_argument("--project-path", default=".", help="Kedro project root (default: current folder)")
    args = parser.parse_args(argv)
    from kedro.io.core import DatasetError

    from fruits_kedro.inference.weights import WeightsUnavailableError

    try:
        classifier = load_classifier(args.project_path, env=args.env)
        predictions = classifier.predict(args.photos, top=args.top)
    except (ClassifierUnavailableError, WeightsUnavailableError, DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for prediction in predictions:
        print(prediction.path)
        for rank, (label, probability) in enumerate(prediction.top, start=1):
            print(f"  {rank}. {label:<30s} {probability:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
