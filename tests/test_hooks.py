"""Settings are checked before Spark starts, and each error names what to fix; a run's outputs
become current together, when it succeeds."""

import re
import shutil
import threading

import pytest
from kedro.io.core import DatasetError

from fruits_kedro.labels import LabelError
from fruits_kedro.params import ParameterError
from tests.conftest import make_project_copy, run_kedro
from tests.outputs import current_outputs


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


RANDOM_WEIGHTS = {"backbone": {"weights": None, "input_size": 64}}


def _run_session(project, monkeypatch, before_run=None, **run_args):
    """``kedro run`` in-process; ``before_run(run_id)`` is called once the run's id is known."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=run_args.pop("runtime_params")) as session:
        if before_run:
            before_run(session.store["session_id"])
        return session.run(**run_args)


def test_a_partial_run_replaces_what_it_made_and_keeps_what_it_read(default_run, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(default_run, project, symlinks=True)
    before = current_outputs(project)
    _run_session(project, monkeypatch, pipeline_names=["dimensionality_reduction"], runtime_params=RANDOM_WEIGHTS)
    after = current_outputs(project)
    made = {"04_feature/image_features_pca.parquet", "04_feature/image_features_pca.csv"}
    made |= {"08_reporting/pca_explained_variance.json", "08_reporting/pca_scree_plot.png"}
    assert set(after["outputs"]) == set(before["outputs"])
    assert {m for m, path in after["outputs"].items() if f"/runs/{after['run_id']}/" in path} == made
    assert {m: p for m, p in after["outputs"].items() if m not in made} == {
        m: p for m, p in before["outputs"].items() if m not in made
    }


def test_outputs_derived_from_replaced_ones_leave_the_set(default_run, generated_sample, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(default_run, project, symlinks=True)
    _run_session(
        project,
        monkeypatch,
        to_nodes=["report_feature_extraction"],  # new features: the PCA outputs of the old ones are stale
        runtime_params={"images_root": str(generated_sample), **RANDOM_WEIGHTS},
    )
    after = current_outputs(project)
    assert set(after["outputs"]) == {
        "02_intermediate/rejected_images.parquet",
        "02_intermediate/skipped_images.csv",
        "04_feature/image_features.parquet",
        "08_reporting/feature_extraction_report.json",
    }
    assert all(f"/runs/{after['run_id']}/" in path for path in after["outputs"].values())


def test_a_failed_run_commits_nothing_and_removes_what_it_saved(default_run, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(default_run, project, symlinks=True)
    before = current_outputs(project)

    def block_the_reports(run_id):
        (project / "data" / "08_reporting" / "runs" / run_id).write_text("not a folder")

    with pytest.raises(Exception, match="08_reporting"):
        _run_session(
            project,
            monkeypatch,
            before_run=block_the_reports,
            pipeline_names=["dimensionality_reduction"],
            runtime_params=RANDOM_WEIGHTS,
        )
    assert current_outputs(project) == before
    # No progress reporter outlives the failed run (a failed save skips on_node_error).
    assert not [t for t in threading.enumerate() if t.name.startswith("progress-") and t.is_alive()]
    named = {p.split("/runs/")[1].split("/")[0] for p in before["outputs"].values()}
    assert {p.name for p in (project / "data").glob("*/runs/*")} == named


def test_the_output_sets_are_found_without_creating_the_other_datasets(tmp_path):
    """As a run starts, the hooks find the output sets from the catalog's configuration: no
    other dataset is created, so none imports its libraries first (or fails for want of them)."""
    from kedro.io import DataCatalog

    from fruits_kedro.datasets import OutputSetDataset
    from fruits_kedro.hooks import _output_set_members

    catalog = DataCatalog.from_config(
        {
            "report": {
                "type": "fruits_kedro.datasets.OutputSetDataset",
                "path": str(tmp_path),
                "dataset": {"type": "json.JSONDataset", "filepath": str(tmp_path / "report.json")},
            },
            "plugin_output": {"type": "a_plugin_not_installed.SomeDataset", "filepath": str(tmp_path / "x")},
        }
    )
    with pytest.raises(DatasetError, match="a_plugin_not_installed"):
        catalog.get("plugin_output")  # what creating it would do
    members = _output_set_members(catalog, catalog.keys())
    assert [name for name, _ in members] == ["report"]
    assert isinstance(members[0][1], OutputSetDataset)


def test_a_second_kedro_run_is_refused_in_one_line_and_the_first_runs_folder_survives(tmp_path, generated_sample):
    """The first run is this test holding the set's lock, as a run does from its start to its end."""
    import subprocess
    import sys
    from pathlib import Path

    from fruits_kedro.datasets import run_lock

    project = make_project_copy(tmp_path / "project")
    first = project / "data" / "04_feature" / "runs" / "first-run" / "image_features.parquet"
    first.mkdir(parents=True)
    lock = run_lock.acquire(str(project / "data"), "first-run")
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "kedro"), "run", "--params", f"images_root={generated_sample}"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        lock.release()
    assert done.returncode == 1
    refusal, where = done.stderr.splitlines()
    assert refusal.startswith("Error: Another run is writing these outputs: run first-run (pid ")
    assert f"holds {project / 'data' / 'current_outputs.lock'}; wait for it to end" in refusal
    assert where == "(traceback: logs/errors.log)"
    assert first.is_dir() and not (project / "data" / "current_outputs.json").exists()


def test_a_second_run_on_s3_is_refused_and_the_first_runs_folder_survives(tmp_path, monkeypatch, aws_env):
    import s3fs

    from fruits_kedro.datasets import run_lock
    from fruits_kedro.datasets.run_lock import RunLockedError
    from tests.s3_server import new_bucket

    bucket = new_bucket()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    first = f"{bucket}/fruits/features/runs/first-run/image_features_pca.csv"
    fs.pipe_file(first, b"path,label\n")
    project = make_project_copy(tmp_path / "project")
    lock = run_lock.acquire(f"s3://{bucket}/fruits", "first-run")
    try:
        with pytest.raises(
            RunLockedError, match=rf"run first-run \(pid .* holds s3://{bucket}/fruits/current_outputs\.lock"
        ):
            run_kedro(project, monkeypatch, env="s3", bucket=bucket, **RANDOM_WEIGHTS)
    finally:
        lock.release()
    fs.invalidate_cache()
    assert fs.cat_file(first) == b"path,label\n"


@pytest.mark.parametrize(
    ("folders", "named"),
    [
        (["Training/ Apple ", "Training/Apple"], "'Training/ Apple ' and 'Training/Apple'"),
        (["Training/Apple Red", "Test/Apple_Red"], "'Test/Apple_Red' and 'Training/Apple Red'"),
        (["Training/  ", "Training/Kiwi"], "'Training/  ' gives an empty label"),
    ],
)
def test_class_folders_whose_labels_collide_stop_the_run_before_spark(tmp_path, monkeypatch, folders, named):
    for folder in folders:
        (tmp_path / "photos" / folder).mkdir(parents=True)
        (tmp_path / "photos" / folder / "a.jpg").write_bytes(b"jpeg")
    project = make_project_copy(tmp_path / "project")
    with pytest.raises(LabelError, match=re.escape(named)):
        run_kedro(project, monkeypatch, images_root=str(tmp_path / "photos"))
