"""Classify photos with the classifier that ``kedro run --pipelines evaluation`` saved.

Usage, from the project root (after the evaluation pipeline has run)::

    fruits-kedro predict path/to/photo.jpg [more.jpg ...] [--top 3] [--env local]

Reads ``classifier_export`` (the centring, principal axes, logistic regression and the
backbone as ONNX) and ``classifier_settings`` through the project's catalog configuration,
and applies them with ONNX Runtime and NumPy: no JVM, no TensorFlow. A photo of any size and
mode is decoded as the training photos were (a large one at a reduced size first, never below the
network's input size, as in ``serve``). One line per photo on stdout; a photo that
cannot be read or decoded gets an error line on stderr, the others still get their answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fruits_kedro.ml.exported_classifier import ClassifierUnavailableError, ExportedClassifier, Prediction

__all__ = ["ClassifierUnavailableError", "Prediction", "classifier_datasets", "load_classifier", "main"]

CLASSIFIER_DATASETS = ("classifier_export", "classifier_settings")


def load_classifier(
    project_path: str | Path = ".", env: str | None = None, runtime_params: dict[str, Any] | None = None
) -> ExportedClassifier:
    """The exported classifier, found through ``conf/base`` + ``conf/<env>`` (no session, no Spark)."""
    datasets = classifier_datasets(project_path, env, runtime_params)
    if not datasets["classifier_settings"].exists():
        description = datasets["classifier_settings"]._describe()
        raise ClassifierUnavailableError(
            f"No classifier at {description.get('path') or description.get('filepath')}: "
            "run `kedro run --pipelines evaluation` first to train and export it."
        )
    # The datasets themselves, not catalog.load: no log line on stdout. The classifier says why
    # it cannot be used (e.g. every backbone was skipped).
    return ExportedClassifier(datasets["classifier_export"].load(), datasets["classifier_settings"].load())


def classifier_datasets(
    project_path: str | Path = ".", env: str | None = None, runtime_params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``classifier_export`` and ``classifier_settings`` as the catalog configures them, both
    as listed by one read of their set's ``current_outputs.json``."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from fruits_kedro.settings import CONFIG_LOADER_ARGS

    project_path = Path(project_path).resolve()
    if not (project_path / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{project_path} is not a Kedro project root (no pyproject.toml): use --project-path")
    loader = OmegaConfigLoader(
        str(project_path / "conf"), env=env, runtime_params=runtime_params or {}, **CONFIG_LOADER_ARGS
    )
    entries = {name: _absolute(dict(loader["catalog"][name]), project_path) for name in CLASSIFIER_DATASETS}
    catalog = DataCatalog.from_config(entries)
    return _from_one_commit({name: catalog.get(name) for name in CLASSIFIER_DATASETS})


def _absolute(entry: dict[str, Any], project_path: Path) -> dict[str, Any]:
    """A catalog entry whose relative paths (``filepath``, ``path``, a wrapped dataset's) are the project's."""
    for key in ("filepath", "path"):
        value = entry.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            entry[key] = str(project_path / value)
    if isinstance(entry.get("dataset"), dict):
        entry["dataset"] = _absolute(dict(entry["dataset"]), project_path)
    return entry


def _from_one_commit(datasets: dict[str, Any]) -> dict[str, Any]:
    """The datasets of one set of outputs, pinned to one read of its ``current_outputs.json``:
    an evaluation that commits meanwhile cannot pair its settings with the previous export."""
    from fruits_kedro.datasets.output_set import OutputSetDataset

    manifests: dict[Any, Any] = {}
    pinned = {}
    for name, dataset in datasets.items():
        if isinstance(dataset, OutputSetDataset):
            if dataset.output_set not in manifests:
                manifests[dataset.output_set] = dataset.output_set.read()
            dataset = dataset.pinned(manifests[dataset.output_set])
        pinned[name] = dataset
    return pinned


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
