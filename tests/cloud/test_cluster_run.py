"""The default pipeline on a real standalone Spark cluster, as on EMR: a master and two
workers on loopback, executors in JVMs of their own with their own Python workers, the
driver in the ``kedro run`` process, every photo and output on S3 (moto). One executor is
killed -9 while the network runs; every photo must still have exactly one row.

The cluster's daemons start without AWS or PySpark variables in their environment: the
interpreter and the S3 endpoint and credentials reach the executors through Spark's
configuration only. Run alone with ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.cloud.cluster_runs import (
    RUN_PARAMS,
    event_log,
    events,
    read_csv,
    read_parquet_folder,
    s3_filesystem,
    staged_parts,
    start_kedro_run,
    upload_photos,
    wait_for,
)
from tests.conftest import SHARED_PHOTOS, make_project_copy
from tests.outputs import current_s3_output
from tests.s3_server import forget_cached_s3_clients, free_port, new_bucket, set_aws_environment

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

MIN_PHOTOS = 2000
# 8 tasks of 250 photos: the first ends, and the kill comes, a quarter into the stage; with
# speculation, more tasks are more stragglers to copy.
PARTITION_PARAMS = "ingestion.images_per_partition=250"
SPECULATION = {
    "spark.speculation": True,
    "spark.speculation.interval": "100ms",
    "spark.speculation.quantile": 0.25,
    "spark.speculation.multiplier": 1.05,
    "spark.speculation.minTaskRuntime": "200ms",
    "spark.speculation.efficiency.enabled": False,
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from fruits_kedro.cloud.local_cluster import cluster_down, cluster_up

    state = tmp_path_factory.mktemp("spark-cluster")
    status = cluster_up(workers=2, port=free_port(), webui_port=free_port(), state_dir=state)
    try:
        yield status, state
    finally:
        cluster_down(state_dir=state)


@pytest.fixture(scope="module")
def photos(s3_endpoint, request):
    """At least 2,000 distinct S3 objects: the real sample (else the generated one), copied."""
    source = SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else request.getfixturevalue("generated_sample")
    with pytest.MonkeyPatch.context() as patch:
        set_aws_environment(patch, s3_endpoint)
        bucket = new_bucket()
        urls = upload_photos(source, bucket, MIN_PHOTOS)
        yield bucket, urls
    forget_cached_s3_clients()


def _executors(state) -> list[psutil.Process]:
    """The cluster's executor JVMs (they run in its workers' folders)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "CoarseGrainedExecutorBackend" in cmdline and str(state) in str(proc.info["cwd"] or ""):
            found.append(proc)
    return found


def _speculative_tasks(ui_port: int) -> list[dict]:
    """Speculative task attempts the driver has launched so far (its REST API)."""
    base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    try:
        with urllib.request.urlopen(base, timeout=5) as response:
            apps = json.load(response)
        with urllib.request.urlopen(f"{base}/{apps[0]['id']}/stages?details=true", timeout=5) as response:
            stages = json.load(response)
    except (OSError, ValueError, IndexError):
        return []  # the driver's UI is not up yet
    return [t for s in stages for t in (s.get("tasks") or {}).values() if t.get("speculative")]


def _run_and_kill_an_executor(project, cluster, photos, s3_endpoint, tmp_path, params: str = "", ui_port=None):
    """Run on the cluster and kill -9 an executor while inference runs. With ``ui_port``
    (speculation on), the executor's Python workers are first stopped (SIGSTOP, a stalled
    node) until the driver has launched a speculative copy of its task on the other worker."""
    status, state = cluster
    bucket, _ = photos
    features = f"{bucket}/fruits/features/intermediate/image_features.parquet"
    fs = s3_filesystem()
    run = start_kedro_run(
        project,
        s3_endpoint,
        bucket,
        f"{RUN_PARAMS},spark_master={status.master_url}{params}",
        tmp_path / "run.log",
    )
    try:
        # Some inference tasks have finished (their parts are staged), others are running.
        wait_for(lambda: staged_parts(fs, features), 300, "the first inference task to finish", run)
        busy = [e for e in _executors(state) if e.children(recursive=True)]
        assert busy, "no executor with Python workers while inference runs"
        if ui_port is not None:
            workers = busy[0].children(recursive=True)
            for worker in workers:
                worker.suspend()
            wait_for(lambda: _speculative_tasks(ui_port), 300, "a speculative copy of the stalled task", run)
            for worker in workers:
                worker.kill()
        busy[0].kill()  # SIGKILL: no shutdown hook, no goodbye to the driver
        run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    output = (tmp_path / "run.log").read_text(errors="replace")
    if os.environ.get("FRUITS_KEDRO_KEEP_RUN_LOGS"):  # for a look at a run after the test
        shutil.copytree(
            project / "logs", Path(os.environ["FRUITS_KEDRO_KEEP_RUN_LOGS"]) / tmp_path.name, dirs_exist_ok=True
        )
        shutil.copy(tmp_path / "run.log", Path(os.environ["FRUITS_KEDRO_KEEP_RUN_LOGS"]) / tmp_path.name / "run.log")
    assert run.returncode == 0, output[-4000:]
    return fs, event_log(project)


def _assert_exactly_once(fs, bucket: str, urls: list[str]) -> None:
    root = f"{bucket}/fruits"
    csv = read_csv(fs, current_s3_output(fs, root, "features/image_features_pca.csv"))
    assert len(csv) == len(urls)
    assert sorted(csv["path"]) == urls  # every photo, once
    assert not csv.isna().any().any()
    tables = {}
    for folder in ("image_features_pca.parquet", "intermediate/image_features.parquet"):
        # A plain reader of the folder that current_outputs.json names: no _SUCCESS manifest.
        tables[folder] = read_parquet_folder(fs, current_s3_output(fs, root, f"features/{folder}"))
        assert len(tables[folder]) == len(urls), folder
        assert sorted(tables[folder]["path"]) == urls, folder
    scores = tables["image_features_pca.parquet"].filter(like="pc_")
    assert scores.shape[1] > 0 and np.isfinite(scores.to_numpy()).all()
    assert np.isfinite(np.stack(tables["intermediate/image_features.parquet"]["features"])).all()


def test_an_executor_killed_during_inference_loses_and_duplicates_no_photo(cluster, photos, s3_endpoint, tmp_path):
    project = make_project_copy(tmp_path / "project")
    fs, log = _run_and_kill_an_executor(project, cluster, photos, s3_endpoint, tmp_path, f",{PARTITION_PARAMS}")

    removed = events(log, "SparkListenerExecutorRemoved")
    lost = [e for e in events(log, "SparkListenerTaskEnd") if e["Task End Reason"]["Reason"] == "ExecutorLostFailure"]
    assert removed and lost, "the kill did not hit a running task"
    environment = events(log, "SparkListenerEnvironmentUpdate")[0]["Spark Properties"]
    assert dict(environment)["spark.master"].startswith("spark://")
    _assert_exactly_once(fs, photos[0], photos[1])


def test_speculative_copies_and_a_killed_executor_commit_each_partition_once(cluster, photos, s3_endpoint, tmp_path):
    project = make_project_copy(tmp_path / "project")
    ui_port = free_port()
    settings = {**SPECULATION, "spark.ui.port": ui_port}
    spark_yml = project / "conf" / "s3" / "spark.yml"
    spark_yml.write_text(
        spark_yml.read_text() + "".join(f"\n{k}: {str(v).lower()}" for k, v in settings.items()) + "\n"
    )
    fs, log = _run_and_kill_an_executor(
        project, cluster, photos, s3_endpoint, tmp_path, f",{PARTITION_PARAMS}", ui_port=ui_port
    )

    speculative = [e for e in events(log, "SparkListenerTaskStart") if e["Task Info"]["Speculative"]]
    assert speculative, "no speculative task copy was launched"
    assert events(log, "SparkListenerExecutorRemoved"), "the stalled executor was not lost"
    _assert_exactly_once(fs, photos[0], photos[1])
