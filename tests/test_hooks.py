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


def test_a_node_is_timed_until_its_last_output_is_saved(caplog):
    # Spark nodes return lazy plans: their work runs while the outputs are saved.
    import logging
    import time

    from kedro.pipeline import Node

    from fruits_kedro.hooks import NodeTimingHooks

    hooks = NodeTimingHooks()
    node = Node(lambda x: (x, x), "a", ["b", "c"], name="lazy_node")
    caplog.set_level(logging.INFO, logger="fruits_kedro.hooks.timing")
    hooks.before_node_run(node)
    hooks.after_node_run(node)
    hooks.after_dataset_saved("b", node)
    assert not [r for r in caplog.records if r.name == "fruits_kedro.hooks.timing"]
    time.sleep(0.2)
    hooks.after_dataset_saved("c", node)
    [record] = [r for r in caplog.records if r.name == "fruits_kedro.hooks.timing"]
    assert record.args[0] == "lazy_node" and record.args[1] >= 0.2


def test_a_missing_java_is_named_before_spark_starts(tmp_path):
    from fruits_kedro.hooks import JavaNotFoundError, require_java

    with pytest.raises(JavaNotFoundError, match="no java on PATH.*openjdk-17"):
        require_java({"PATH": str(tmp_path)})
    with pytest.raises(JavaNotFoundError, match=f"JAVA_HOME={tmp_path} has no bin/java"):
        require_java({"JAVA_HOME": str(tmp_path), "PATH": ""})
    assert require_java()  # this machine's
