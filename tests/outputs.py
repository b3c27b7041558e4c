"""The current outputs of a project, found as any reader finds them: through the commit
file ``current_outputs.json`` (:mod:`fruits_kedro.datasets.output_set`)."""

from __future__ import annotations

import json
from pathlib import Path

from fruits_kedro.datasets.output_set import MANIFEST_NAME


def current_outputs(project: Path) -> dict:
    return json.loads((project / "data" / MANIFEST_NAME).read_text())


def current_output(project: Path, member: str) -> Path:
    """The file or folder of ``member`` (e.g. ``04_feature/image_features_pca.csv``) in the current set."""
    return project / "data" / current_outputs(project)["outputs"][member]


def current_s3_outputs(fs, root: str) -> dict:
    fs.invalidate_cache()
    return json.loads(fs.cat_file(f"{root}/{MANIFEST_NAME}"))


def current_s3_output(fs, root: str, member: str) -> str:
    """``bucket/prefix/...`` of ``member`` (e.g. ``features/image_features_pca.csv``) in the current set."""
    return f"{root}/{current_s3_outputs(fs, root)['outputs'][member]}"


def current_model(project: Path, member: str) -> Path:
    """The current file or folder of the classifier's ``member`` (e.g. ``classifier_settings.json``),
    listed in ``data/06_models/current_outputs.json``."""
    models = project / "data" / "06_models"
    return models / json.loads((models / MANIFEST_NAME).read_text())["outputs"][member]
