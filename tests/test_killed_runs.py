"""A run killed -9 at any stage leaves the previous outputs current, complete and
consistent (one run id, one k), and the next run recovers and removes what it left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_kedro
from tests.outputs import current_output, current_outputs

pytestmark = pytest.mark.slow

RUN_PARAMS = {"backbone": {"weights": None, "input_size": 64}, "ingestion": {"images_per_partition": 16}}


def _new_run_files(data: Path, before: set[str], pattern: str) -> list[Path]:
    """Files matching ``pattern`` inside run folders that did not exist before the run."""
    return [p for p in data.glob(pattern) if p.relative_to(data).parts[2] not in before]


# Each stage: what shows that the run is in it, and what must not exist yet in the new run's folders.
STAGES = {
    "features": ("04_feature/runs/*/image_features.parquet/_temporary/*/*.parquet", "04_feature/runs/*/*.csv"),
    "pca_save": ("04_feature/runs/*/image_features_pca.parquet/_temporary/*/*.parquet", "04_feature/runs/*/*.csv"),
    "between_saves": ("04_feature/runs/*/image_features_pca.parquet/_SUCCESS", "04_feature/runs/*/*.csv"),
    # The CSV's parts folder lives through its whole save; its merged .tmp file, a few ms at most.
    "csv_write": ("04_feature/runs/*/.image_features_pca.csv.*.parts", "04_feature/runs/*/*.csv"),
}


def _kill_during(project: Path, photos: Path, stage: str) -> None:
    data = project / "data"
    before = {p.name for p in data.glob("*/runs/*")}
    shows, absent = STAGES[stage]
    params = f"images_root={photos},backbone.weights=null,backbone.input_size=64,ingestion.images_per_partition=16"
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    log = (project / "run.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", "--params", params],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _new_run_files(data, before, shows):
            assert run.poll() is None, f"the run ended before {stage}: " + (project / "run.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"the run never reached {stage}"
            time.sleep(0.01)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
        run.wait()
        log.close()
    assert not _new_run_files(data, before, absent), f"the kill came after {absent} was written"


def _snapshot(project: Path) -> dict[str, bytes]:
    """The commit file and every file of the outputs it names."""
    data = project / "data"
    files = {"current_outputs.json": (data / "current_outputs.json").read_bytes()}
    for path in current_outputs(project)["outputs"].values():
        target = data / path
        for f in [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file()):
            files[str(f.relative_to(data))] = f.read_bytes()
    return files


def _assert_consistent(project: Path, photos: int | None = None) -> str:
    """One run id throughout, the same k and rows in every table; returns the run id."""
    run_id = current_outputs(project)["run_id"]
    csv = pd.read_csv(current_output(project, "04_feature/image_features_pca.csv"))
    pca = pd.read_parquet(current_output(project, "04_feature/image_features_pca.parquet"))
    features = pd.read_parquet(current_output(project, "04_feature/image_features.parquet"))
    variance = json.loads(current_output(project, "08_reporting/pca_explained_variance.json").read_text())
    report = json.loads(current_output(project, "08_reporting/feature_extraction_report.json").read_text())
    assert set(csv["run_id"]) == {run_id} and variance["run_id"] == run_id and report["run_id"] == run_id
    k = variance["k"]
    assert csv.filter(like="pc_").shape[1] == pca.filter(like="pc_").shape[1] == k
    assert len(csv) == len(pca) == len(features) == report["featurized"] + report["reused"]
    assert sorted(csv["path"]) == sorted(pca["path"]) == sorted(features["path"])
    if photos is not None:
        assert len(csv) == photos
    return run_id


@pytest.fixture
def finished_project(default_run, tmp_path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(default_run, project, symlinks=True)
    return project


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_run_killed_at_any_stage_leaves_the_previous_outputs_current(finished_project, generated_sample, stage):
    before = _snapshot(finished_project)
    run_id = _assert_consistent(finished_project)
    _kill_during(finished_project, generated_sample, stage)
    assert _snapshot(finished_project) == before
    assert _assert_consistent(finished_project) == run_id


def test_the_run_after_a_killed_one_recovers_and_removes_its_leftovers(finished_project, generated_sample, monkeypatch):
    previous = current_outputs(finished_project)["run_id"]
    _kill_during(finished_project, generated_sample, "features")
    killed = {p.name for p in (finished_project / "data").glob("*/runs/*")} - {previous}
    assert len(killed) == 1

    run_kedro(finished_project, monkeypatch, images_root=str(generated_sample), **RUN_PARAMS)
    photos = sum(1 for p in generated_sample.rglob("*.jpg"))
    run_id = _assert_consistent(finished_project, photos=photos)
    assert run_id not in {previous, *killed}
    manifest = current_outputs(finished_project)
    assert all(f"/runs/{run_id}/" in path for path in manifest["outputs"].values())
    assert {p.name for p in (finished_project / "data").glob("*/runs/*")} == {previous, run_id}
    assert not list((finished_project / "data").rglob("_temporary")) and not list(
        (finished_project / "data").rglob(".*.tmp")
    )
