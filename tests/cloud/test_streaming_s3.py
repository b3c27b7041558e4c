"""``kedro run --env s3 --pipelines streaming`` against a real S3 API (the moto server): photos
land in the bucket between drivers killed -9 at different moments of a micro-batch, and in
the end the current outputs hold one row per landed photo, none missing, none twice, no NaN."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import s3fs

from fruits_kedro.streaming.micro_batch import PAUSE_MARKER_VARIABLE, PAUSE_VARIABLE
from tests.conftest import make_project_copy
from tests.outputs import current_s3_output
from tests.s3_server import new_bucket

pytestmark = [pytest.mark.streaming, pytest.mark.slow]

PREFIX = "fruits"
# Every second micro-batch merges the tables' small parts.
PARAMS = "backbone.weights=null,backbone.input_size=32,streaming.max_files_per_trigger=4,streaming.compact_parts=2"


class Landing:
    """Uploads photos of the generated sample to ``raw/`` as if they arrived, in turn."""

    def __init__(self, sample: Path, bucket: str) -> None:
        self.pool = sorted(p for p in sample.rglob("*.jpg") if not p.name.startswith("."))
        self.sample, self.bucket, self.landed = sample, bucket, []
        self.client = boto3.session.Session().client("s3")

    def land(self, n: int) -> None:
        for photo in self.pool[len(self.landed) : len(self.landed) + n]:
            key = f"{PREFIX}/raw/{photo.relative_to(self.sample).as_posix()}"
            self.client.put_object(Bucket=self.bucket, Key=key, Body=photo.read_bytes())
            self.landed.append(f"s3://{self.bucket}/{key}")


def _run(project: Path, bucket: str, kill_when: Callable[[], bool] | None = None, pause: str = "") -> None:
    """``kedro run --env s3 --pipelines streaming``; killed -9 (with its JVM and workers) once
    ``kill_when()`` holds or the driver waits at the fault point ``pause``, else it must finish."""
    marker = project / "paused"
    marker.unlink(missing_ok=True)
    if pause:
        kill_when = marker.exists
    env = {**os.environ, PAUSE_VARIABLE: pause, PAUSE_MARKER_VARIABLE: str(marker)}
    log = project / "run.log"
    with log.open("ab") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "kedro", "run", "--env", "s3", "--pipeline", "streaming"]
            + ["--params", f"bucket={bucket},prefix={PREFIX},{PARAMS}"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240
            while kill_when is None or not kill_when():
                if run.poll() is not None:
                    assert kill_when is None and run.returncode == 0, log.read_text()[-3000:]
                    return
                assert time.monotonic() < deadline, "the stream made no progress: " + log.read_text()[-2000:]
                time.sleep(0.05)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
            run.wait()


def _writing_batch(fs: s3fs.S3FileSystem, bucket: str, batch: int) -> Callable[[], bool]:
    """Whether the features of micro-batch ``batch`` are being written (parts under its _temporary)."""

    def check() -> bool:
        fs.invalidate_cache()
        return bool(fs.glob(f"{bucket}/{PREFIX}/features/stream/features/*/*/b{batch:08d}/_temporary/**"))

    return check


def test_drivers_killed_while_photos_land_on_s3_leave_one_row_per_photo(aws_env, tmp_path, generated_sample):
    bucket = new_bucket()
    project = make_project_copy(tmp_path / "project")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    landing = Landing(generated_sample, bucket)

    landing.land(8)
    _run(project, bucket, pause="written@0")  # the batch's files written, its state not committed
    landing.land(4)
    _run(project, bucket, pause="committed@1")  # the state committed, Spark's commit not
    landing.land(4)
    _run(project, bucket, kill_when=_writing_batch(fs, bucket, 2))  # during inference and writing
    landing.land(3)
    _run(project, bucket)

    root = f"{bucket}/{PREFIX}"
    state = json.loads(fs.cat_file(f"{root}/features/stream/state.json"))
    assert state["totals"]["featurized"] == len(landing.landed) == 19
    assert any(part.startswith("m") for part in state["tables"]["features"]["part_rows"])
    features = pq.read_table(current_s3_output(fs, root, "features/intermediate/image_features.parquet"), filesystem=fs)
    paths = features.column("path").to_pylist()
    assert sorted(paths) == sorted(landing.landed)  # none missing, none twice
    assert np.isfinite(np.stack(features.column("features").to_numpy(zero_copy_only=False))).all()
    csv = pd.read_csv(io.BytesIO(fs.cat_file(current_s3_output(fs, root, "features/image_features_pca.csv"))))
    assert sorted(csv["path"]) == sorted(landing.landed)
    pcs = [c for c in csv.columns if c.startswith("pc_")]
    assert pcs and not csv[pcs].isna().any().any()
