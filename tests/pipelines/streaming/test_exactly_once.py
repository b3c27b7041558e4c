"""Exactly once: photos land while a processing-time stream runs, its driver is killed -9 at five
moments of a micro-batch and during a merge of small parts, and every restart goes on from the
checkpoint; at the end there is one row per landed photo in every table, none missing, none
twice, no NaN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fruits_kedro.streaming.micro_batch import PAUSE_MARKER_VARIABLE, PAUSE_VARIABLE
from tests.conftest import make_project_copy
from tests.outputs import current_output
from tests.pipelines.streaming.photos import Landing, photo_pool

pytestmark = [pytest.mark.streaming, pytest.mark.slow]

STREAM = "data/04_feature/stream"
# Elsewhere the basis is refitted only when the rows double: most batches use the current one.
GROWTH = ",streaming.refit_growth=1.0"
FEATURE_PARTS = f"{STREAM}/features/*/image_features.parquet/b*"
# (name, pause point or None, extra parameters): each kills one driver, at a moment of a micro-batch.
KILLS = {
    # The featurization's staging folder lives while the photos are read and inferred.
    "inference": (None, ""),
    "between_files": ("features_saved", ""),  # the features saved, the PCA part and moments not yet
    "written": ("written", ""),  # every file of the batch written, the stream's commit not yet
    "committed": ("committed", ""),  # the stream's commit done, Spark's commit log not yet
    "refit": ("refit", ",streaming.refit_growth=0.01,streaming.refit_min_rows=1"),  # a new basis, not committed
    "merge": ("merged", f"{GROWTH},streaming.compact_parts=2"),  # small parts merged, the merge not committed
}


def _params(photos: Path, trigger: str, extra: str) -> str:
    return (
        f"images_root={photos},backbone.weights=null,backbone.input_size=32,streaming.trigger={trigger},"
        f"streaming.interval_seconds=1,streaming.max_files_per_trigger=3{extra or GROWTH}"
    )


def _start(project: Path, photos: Path, name: str, pause: str | None, extra: str, trigger: str = "processing_time"):
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    env.pop(PAUSE_VARIABLE, None)
    if pause:
        env[PAUSE_VARIABLE] = f"{pause}@0"
        env[PAUSE_MARKER_VARIABLE] = str(project / f"paused-{name}")
    log = (project / f"run-{name}.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", "--pipelines", "streaming", "--params", _params(photos, trigger, extra)],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the driver, its JVM and Python workers: one group to kill
    )
    return run, log


def _kill_when(project: Path, name: str, run, log, ready) -> None:
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert run.poll() is None, f"the stream ended before {name}: " + _tail(project, name)
            assert time.monotonic() < deadline, f"the stream never reached {name}: " + _tail(project, name)
            time.sleep(0.01)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        log.close()


def _tail(project: Path, name: str) -> str:
    return (project / f"run-{name}.log").read_text(errors="replace")[-3000:]


def _staging(project: Path) -> list[Path]:
    return list(project.glob(f"{FEATURE_PARTS}/_temporary/*"))


def _state(project: Path) -> dict:
    return json.loads((project / STREAM / "state.json").read_text())


class _Arrivals(threading.Thread):
    """Lands a photo every ``every`` seconds until stopped (the pool is bounded)."""

    def __init__(self, landing: Landing, every: float, most: int) -> None:
        super().__init__(daemon=True)
        self.landing, self.every, self.most, self.done = landing, every, most, threading.Event()

    def run(self) -> None:
        for _ in range(self.most):
            if self.done.wait(self.every):
                return
            self.landing.land(1)

    def stop(self) -> None:
        self.done.set()
        self.join()


@pytest.fixture(scope="module")
def killed_and_restarted(tmp_path_factory, generated_sample):
    base = tmp_path_factory.mktemp("exactly_once")
    landing = Landing(photo_pool(generated_sample, classes=6, per_class=8), base / "photos")
    project = make_project_copy(base / "project")
    landing.land(6)
    seen = []
    for name, (pause, extra) in KILLS.items():
        run, log = _start(project, landing.folder, name, pause, extra)
        arrivals = _Arrivals(landing, every=1.5, most=3)
        arrivals.start()
        try:
            if pause:
                _kill_when(project, name, run, log, (project / f"paused-{name}").exists)
            else:
                _kill_when(project, name, run, log, lambda: bool(_staging(project)))
        finally:
            arrivals.stop()
        if name == "inference":
            assert _staging(project), "the kill came after the featurization's files were committed"
        seen.append((name, _state(project) if (project / STREAM / "state.json").exists() else None))
    landing.land(2)
    run, log = _start(project, landing.folder, "last", None, "", trigger="available_now")
    assert run.wait(timeout=300) == 0, _tail(project, "last")
    log.close()
    return project, landing, seen


def test_every_landed_photo_has_one_row_in_every_table(killed_and_restarted):
    project, landing, _ = killed_and_restarted
    landed = sorted(landing.landed)
    assert len(landed) >= 6 + 2 + len(KILLS)
    features = pd.read_parquet(current_output(project, "04_feature/image_features.parquet"))
    assert sorted(features["path"]) == landed  # none missing, none twice
    assert np.isfinite(np.stack(features["features"])).all()
    for member in ("04_feature/image_features_pca.parquet", "04_feature/image_features_pca.csv"):
        path = current_output(project, member)
        scores = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        assert sorted(scores["path"]) == landed
        pcs = scores.filter(like="pc_")
        assert pcs.shape[1] >= 1 and np.isfinite(pcs.to_numpy()).all()
        assert scores["pca_basis"].nunique() == 1
    totals = _state(project)["totals"]
    assert totals["featurized"] == len(landed) and totals["rejected"] == totals["skipped"] == 0


def test_each_restart_goes_on_from_the_checkpoint(killed_and_restarted):
    project, _, seen = killed_and_restarted
    states = [state for _, state in seen if state is not None]
    assert len({state["query_id"] for state in states} - {None}) == 1  # one query, restarted
    batches = [state["last_batch"] for state in states]
    assert batches == sorted(batches) and batches[-1] < _state(project)["last_batch"]
    # The batch whose stream commit was done when the driver died is not run again.
    log = (project / "logs" / "info.log").read_text(errors="replace")
    committed = log.index("Paused at committed of micro-batch ")
    batch = int(log[committed:].split("micro-batch ", 1)[1].split(" ", 1)[0])
    assert f"Micro-batch {batch}: already committed (replayed after a restart)" in log[committed:]


def test_the_query_progress_is_in_spark_event_log(killed_and_restarted):
    project, _, _ = killed_and_restarted
    events = [line for path in (project / "logs" / "spark-events").rglob("*") if path.is_file() for line in path.open()]
    progress = [json.loads(line) for line in events if "QueryProgressEvent" in line]
    assert progress and all(event["progress"]["name"] == "fruits_kedro_stream" for event in progress)
