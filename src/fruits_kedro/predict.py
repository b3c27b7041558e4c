"""Classify photos with the classifier that ``kedro run --pipelines evaluation`` saved.

Usage, from the project root (after the evaluation pipeline has run)::

    fruits-kedro predict path/to/photo.jpg [more.jpg ...] [--top 3] [--env local]

Reads ``classifier_export`` (the centring, principal axes, logistic regression and the
backbone as ONNX) and ``classifier_settings`` through the project's catalog configuration,
and applies them with ONNX Runtime and NumPy: no JVM, no TensorFlow. A photo of any size and
mode is decoded as the training photos were. One line per photo on stdout; a photo that
cannot be read or decoded gets an error line on stderr, the others still get their answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fruits_kedro.ml.exported_classifier import ClassifierUnavailableError, ExportedClassifier, Prediction

__all__ = ["ClassifierUnavailableError", "Prediction", "load_classifier", "main"]

CLASSIFIER_DATASETS = ("classifier_export", "classifier_settings")


def load_classifier(
    project_path: str | Path = ".", env: str | None = None, runtime_params: dict[str, Any] | None = None
) -> ExportedClassifier:
    """The exported classifier, found through ``conf/base`` + ``conf/<env>`` (no session, no Spark)."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from fruits_kedro.settings import CONFIG_LOADER_ARGS

    project_path = Path(project_path).resolve()
    if not (project_path / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{project_path} is not a Kedro project root (no pyproject.toml): use --project-path")
    loader = OmegaConfigLoader(
        str(project_path / "conf"), env=env, runtime_params=runtime_params or {}, **CONFIG_LOADER_ARGS
    )
    entries = {}
    for name in CLASSIFIER_DATASETS:
        entry = dict(loader["catalog"][name])
        filepath = str(entry["filepath"])
        if "://" not in filepath and not Path(filepath).is_absolute():
            entry["filepath"] = str(project_path / filepath)  # catalog paths are the project's
        entries[name] = entry
    catalog = DataCatalog.from_config(entries)
    if not catalog.exists("classifier_settings"):
        raise ClassifierUnavailableError(
            f"No classifier at {entries['classifier_settings']['filepath']}: "
            "run `kedro run --pipelines evaluation` first to train and export it."
        )
    # The datasets themselves, not catalog.load: no log line on stdout. The classifier says why
    # it cannot be used (e.g. every backbone was skipped).
    return ExportedClassifier(catalog["classifier_export"].load(), catalog["classifier_settings"].load())


def _format(path: str, prediction: Prediction) -> str:
    return f"{path}\t" + "\t".join(f"{label} {probability:.1%}" for label, probability in prediction.top)


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

    from fruits_kedro.imaging.decode import ImageDecodeError

    try:
        classifier = load_classifier(args.project_path, env=args.env)
    except (ClassifierUnavailableError, DatasetError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for path in args.photos:
        try:
            prediction = classifier.predict([Path(path).read_bytes()], top=args.top)[0]
        except (OSError, ImageDecodeError, ValueError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"{path}\terror: {reason}", file=sys.stderr)
            continue
        print(_format(path, prediction), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
