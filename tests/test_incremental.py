"""Images keep arriving: an incremental rerun featurizes only the new ones and ends where a
full run on all the images would."""

import json
import logging
import shutil
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_project_copy, run_kedro
from tests.outputs import current_output

PARAMS = {
    "backbone": {"weights": None, "input_size": 64},
    "ingestion": {"sample_per_class": 4},  # 80 images: enough to check, cheap to run thrice
}


def _features(project) -> pd.DataFrame:
    frame = pd.read_parquet(current_output(project, "04_feature/image_features.parquet"))
    return frame.set_index("relative_path").sort_index()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, generated_sample):
    base = tmp_path_factory.mktemp("incremental")
    photos = base / "photos"
    shutil.copytree(generated_sample, photos)
    incremental = make_project_copy(base / "incremental_project")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_kedro(incremental, monkeypatch, images_root=str(photos), feature_extraction={"incremental": True}, **PARAMS)
        first = _features(incremental)
        # Three photos arrive, in a class of their own (so that sampling keeps all three).
        for i, source in enumerate(sorted(photos.glob("Training/Kiwi/*.jpg"))[:3]):
            target = photos / "Training" / "Kiwi Gold" / f"new_{i}.jpg"
            target.parent.mkdir(exist_ok=True)
            shutil.copy(source, target)
        run_kedro(incremental, monkeypatch, images_root=str(photos), feature_extraction={"incremental": True}, **PARAMS)
        full = make_project_copy(base / "full_project")
        run_kedro(full, monkeypatch, images_root=str(photos), **PARAMS)
    report = json.loads(current_output(incremental, "08_reporting/feature_extraction_report.json").read_text())
    return first, incremental, full, report


def test_only_the_three_new_images_are_featurized(runs):
    first, _, _, report = runs
    assert (report["incremental"], report["featurized"], report["reused"], report["rejected"]) == (
        True,
        3,
        len(first),
        0,
    )
    assert report["listed"] == report["featurized"] + report["reused"] + report["skipped"]


def test_incremental_result_equals_a_full_run(runs):
    _, incremental, full, _ = runs
    got, expected = _features(incremental), _features(full)
    assert list(got.index) == list(expected.index)
    assert sum(i.startswith("Training/Kiwi Gold/") for i in got.index) == 3
    a, b = np.stack(got["features"]), np.stack(expected["features"])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    got_report = json.loads(current_output(incremental, "08_reporting/pca_explained_variance.json").read_text())
    full_report = json.loads(current_output(full, "08_reporting/pca_explained_variance.json").read_text())
    assert got_report["k"] == full_report["k"] and got_report["n_images"] == full_report["n_images"]
    np.testing.assert_allclose(
        got_report["explained_variance"], full_report["explained_variance"], rtol=1e-4, atol=1e-9
    )


@pytest.fixture(scope="module")
def settings_changed(tmp_path_factory, generated_sample):
    """An incremental run, then another at a different input size: nothing may be reused."""
    project = make_project_copy(tmp_path_factory.mktemp("settings_changed"))
    incremental = {"images_root": str(generated_sample), "feature_extraction": {"incremental": True}}
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_kedro(project, monkeypatch, **incremental, **PARAMS)
        logger = logging.getLogger("fruits_kedro.feature_settings")
        with _records(logger) as records:
            run_kedro(
                project, monkeypatch, **incremental, **{**PARAMS, "backbone": {"weights": None, "input_size": 32}}
            )
    report = json.loads(current_output(project, "08_reporting/feature_extraction_report.json").read_text())
    return _features(project), report, [r.getMessage() for r in records]


def test_other_feature_settings_mean_a_full_recompute_said_once(settings_changed):
    features, report, messages = settings_changed
    assert report["reused"] == 0 and report["featurized"] == len(features) == 80
    assert features["feature_settings"].nunique() == 1  # never a mix of two settings
    assert json.loads(features["feature_settings"].iloc[0])["input_size"] == 32
    assert sum("Feature settings changed" in m for m in messages) == 1


@contextmanager
def _records(logger: logging.Logger):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
