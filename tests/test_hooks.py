"""Settings are checked before Spark starts, and each error names what to fix."""

import pytest
from kedro.io.core import DatasetError

from fruits_kedro.params import ParameterError
from tests.conftest import make_project_copy, run_kedro


def test_a_folder_without_images_is_named(tmp_path, monkeypatch):
    photos = tmp_path / "photos" / "Training" / "Kiwi"
    photos.mkdir(parents=True)
    (photos / "readme.txt").write_text("no photos here")
    project = make_project_copy(tmp_path / "project")
    with pytest.raises(DatasetError, match=r"No images .* under .*photos.*images_root"):
        run_kedro(project, monkeypatch, images_root=str(tmp_path / "photos"))


def test_a_missing_folder_is_named(tmp_path, monkeypatch):
    project = make_project_copy(tmp_path / "project")
    with pytest.raises(DatasetError, match="nowhere"):
        run_kedro(project, monkeypatch, images_root=str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"backbone": {"name": "alexnet"}}, "backbone.name"),
        ({"dimensionality_reduction": {"variance_threshold": 1.2}}, "dimensionality_reduction.variance_threshold"),
        ({"ingestion": {"sample_per_class": -3}}, "ingestion.sample_per_class"),
    ],
)
def test_bad_parameters_stop_the_run_naming_the_setting(tmp_path, monkeypatch, generated_sample, override, setting):
    project = make_project_copy(tmp_path / "project")
    with pytest.raises(ParameterError, match=setting.replace(".", r"\.")):
        run_kedro(project, monkeypatch, images_root=str(generated_sample), **override)
