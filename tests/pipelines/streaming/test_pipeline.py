"""The stream against the batch mode: the same features and PCA for the same photos, one state
shared by both (neither featurizes a photo the other did), and checkpoints that do not belong."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from fruits_kedro.datasets.image_stream import StreamCheckpointError
from tests.conftest import make_project_copy, run_kedro
from tests.outputs import current_output, current_outputs
from tests.pipelines.streaming.photos import STREAM_PARAMS, Landing, photo_pool

pytestmark = [pytest.mark.streaming, pytest.mark.slow]


def _stream(project, monkeypatch, photos, **streaming):
    run_kedro(project, monkeypatch, pipeline="streaming", images_root=str(photos), streaming=streaming, **STREAM_PARAMS)
    return json.loads((project / "data/04_feature/stream/state.json").read_text())


def _table(project, member: str) -> pd.DataFrame:
    path = current_output(project, member)
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return frame.set_index("path").sort_index()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, generated_sample):
    """A batch run on 16 photos, and a stream of the same photos in 3 micro-batches whose every
    batch refits the PCA (the last fit covers every row) and merges the features' parts. Then,
    in the batch run's project, with photos landing before each: a stream, an incremental batch
    run, a stream."""
    base = tmp_path_factory.mktemp("stream_and_batch")
    landing = Landing(photo_pool(generated_sample), base / "photos")
    batch, stream = make_project_copy(base / "batch"), make_project_copy(base / "stream")
    found = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        found["first"] = landing.land(16)
        run_kedro(batch, monkeypatch, images_root=str(landing.folder), **STREAM_PARAMS)
        every_batch_refits = {"max_files_per_trigger": 6, "refit_growth": 0.01, "refit_min_rows": 1}
        every_batch_refits["compact_parts"] = 2  # batch 2 merges the features' parts of 0 and 1
        found["fresh_stream"] = _stream(stream, monkeypatch, landing.folder, **every_batch_refits)
        found["fresh_log"] = (stream / "logs" / "info.log").read_text()
        found["reference"] = {
            member: _table(batch, member)
            for member in ("04_feature/image_features.parquet", "04_feature/image_features_pca.parquet")
        }
        found["reference_pca"] = json.loads(
            current_output(batch, "08_reporting/pca_explained_variance.json").read_text()
        )
        landing.land(4)
        found["stream"] = _stream(batch, monkeypatch, landing.folder)["totals"]
        found["stream_rows"] = _table(batch, "04_feature/image_features_pca.csv")
        found["stream_scores"] = _table(batch, "04_feature/image_features_pca.parquet")
        landing.land(3)
        incremental = {"feature_extraction": {"incremental": True}}
        run_kedro(batch, monkeypatch, images_root=str(landing.folder), **incremental, **STREAM_PARAMS)
        found["batch"] = json.loads(current_output(batch, "08_reporting/feature_extraction_report.json").read_text())
        landing.land(2)
        os.chmod(landing.landed[0], 0o600)  # arrives again (a later ctime) with the same path, size and mtime
        found["stream_again"] = _stream(batch, monkeypatch, landing.folder)["totals"]
    return batch, stream, landing, found


def test_the_streams_features_equal_the_batch_runs(runs):
    _, stream, _, found = runs
    assert found["fresh_stream"]["last_batch"] == 2  # 16 photos, 6 a micro-batch
    expected = found["reference"]["04_feature/image_features.parquet"]
    got = _table(stream, "04_feature/image_features.parquet")
    assert sorted(got.index) == sorted(expected.index) == sorted(found["first"])
    assert (got["label"] == expected["label"]).all() and (got["modified"] == expected["modified"]).all()
    a, b = np.stack(got["features"]), np.stack(expected["features"])
    assert np.isfinite(a).all() and np.abs(a - b).max() <= 1e-5


def test_small_parts_are_merged_into_one_and_their_files_removed(runs):
    _, stream, _, found = runs
    features = found["fresh_stream"]["tables"]["features"]
    assert features["part_rows"] == {"m00000002": 12, "b00000002": 4}  # b0 and b1 merged after batch 2
    assert {name.split("/")[0] for name in features["files"]} == {"m00000002", "b00000002"}
    folder = current_output(stream, "04_feature/image_features.parquet")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["b00000002", "m00000002"]
    merges = [line for line in found["fresh_log"].splitlines() if "merged into one part each" in line]
    assert len(merges) == 1 and "2 parts of features merged into one part each, after micro-batch 2" in merges[0]


def test_each_micro_batch_logs_one_line_with_the_files_still_waiting(runs):
    *_, found = runs
    lines = [line for line in found["fresh_log"].splitlines() if " Micro-batch " in line]
    assert [line.split(" Micro-batch ")[1].split(":")[0] for line in lines] == ["0", "1", "2"]
    assert ["6 photos" in lines[0], "6 photos" in lines[1], "4 photos" in lines[2]] == [True] * 3
    backlogs = [line.split("backlog ")[1].split(" files")[0] for line in lines]
    assert backlogs == ["10", "4", "0"]  # 16 photos, 6 per batch


def test_a_refit_equals_the_batch_pca_on_the_same_rows(runs):
    _, stream, _, found = runs
    expected = found["reference_pca"]
    got = json.loads(current_output(stream, "08_reporting/pca_explained_variance.json").read_text())
    assert got["n_images"] == expected["n_images"] == len(found["first"])
    assert got["k"] == expected["k"] == found["fresh_stream"]["k"]
    reference = found["reference"]["04_feature/image_features_pca.parquet"]
    for member in ("04_feature/image_features_pca.parquet", "04_feature/image_features_pca.csv"):
        scores = _table(stream, member)
        assert sorted(scores.index) == sorted(found["first"])
        assert set(scores["pca_basis"]) == {found["fresh_stream"]["basis"]}
        columns = [f"pc_{i + 1}" for i in range(got["k"])]
        a, b = scores.loc[reference.index, columns].to_numpy(), reference[columns].to_numpy()
        signs = np.sign((a * b).sum(axis=0))  # an axis's sign is arbitrary
        assert np.abs(a * signs - b).max() <= 1e-4


def test_the_stream_starts_from_a_batch_runs_features_and_a_batch_run_from_the_streams(runs):
    project, _, landing, runs = runs
    assert (runs["stream"]["featurized"], runs["stream"]["already_featurized"]) == (4, 16)
    assert sorted(runs["stream_rows"].index) == sorted(landing.landed[:20])  # the CSV: old and new rows
    csv, scores = runs["stream_rows"], runs["stream_scores"]
    pd.testing.assert_frame_equal(csv.drop(columns="run_id"), scores, check_dtype=False)
    assert sorted(csv.groupby("run_id").size()) == [4, 16]  # the 4 new rows merged into the CSV of the 16
    assert (runs["batch"]["featurized"], runs["batch"]["reused"]) == (3, 20)
    # The stream's source had seen 20 photos; of the 5 it had not, the batch run featurized 3;
    # the photo whose mode changed is listed again, and found featurized.
    assert runs["stream_again"]["featurized"] - runs["stream"]["featurized"] == 2
    assert runs["stream_again"]["already_featurized"] - runs["stream"]["already_featurized"] == 4
    for member in ("04_feature/image_features.parquet", "04_feature/image_features_pca.parquet"):
        rows = _table(project, member)
        assert sorted(rows.index) == sorted(landing.landed) and rows.index.is_unique
    assert current_outputs(project)["outputs"]["04_feature/image_features.parquet"].startswith("04_feature/stream/")


def test_a_deleted_or_foreign_checkpoint_is_a_one_line_error(runs, tmp_path, monkeypatch):
    project, _, landing, _ = runs
    checkpoint = project / "data/04_feature/stream/checkpoint"
    checkpoint.rename(tmp_path / "kept")
    try:
        with pytest.raises(Exception) as deleted:
            _stream(project, monkeypatch, landing.folder)
    finally:
        (tmp_path / "kept").rename(checkpoint)
    other = tmp_path / "other_photos"
    other.mkdir()
    with pytest.raises(Exception) as foreign:
        _stream(project, monkeypatch, other)
    for error, words in ((deleted, "is missing or new"), (foreign, "belongs to the stream of")):
        cause = error.value
        while cause is not None and not isinstance(cause, StreamCheckpointError):
            cause = cause.__cause__ or cause.__context__
        assert cause is not None and words in str(cause) and "\n" not in str(cause)
    rows = _table(project, "04_feature/image_features.parquet")
    assert sorted(rows.index) == sorted(landing.landed)  # nothing featurized again, nothing lost
