"""The stream against the batch mode: the same features and PCA for the same photos, one state
shared by both (neither featurizes a photo the other did), and checkpoints that do not belong."""

from __future__ import annotations

import json

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
def batch_and_stream(tmp_path_factory, generated_sample):
    """The same 24 photos, featurized by a batch run and by a stream of 4 micro-batches whose
    every batch refits the PCA (so the last fit covers every row)."""
    base = tmp_path_factory.mktemp("batch_equals_stream")
    landing = Landing(photo_pool(generated_sample), base / "photos")
    landing.land(24)
    batch, stream = make_project_copy(base / "batch"), make_project_copy(base / "stream")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_kedro(batch, monkeypatch, images_root=str(landing.folder), **STREAM_PARAMS)
        state = _stream(stream, monkeypatch, landing.folder, max_files_per_trigger=7, refit_growth=0.01)
    return batch, stream, state, landing.landed


def test_the_streams_features_equal_the_batch_runs(batch_and_stream):
    batch, stream, state, landed = batch_and_stream
    assert state["last_batch"] == 3  # 24 photos, 7 a micro-batch
    expected, got = (
        _table(batch, "04_feature/image_features.parquet"),
        _table(stream, "04_feature/image_features.parquet"),
    )
    assert sorted(got.index) == sorted(expected.index) == sorted(landed)
    assert (got["label"] == expected["label"]).all() and (got["modified"] == expected["modified"]).all()
    a, b = np.stack(got["features"]), np.stack(expected["features"])
    assert np.isfinite(a).all() and np.abs(a - b).max() <= 1e-5


def test_a_refit_equals_the_batch_pca_on_the_same_rows(batch_and_stream):
    batch, stream, state, landed = batch_and_stream
    expected = json.loads(current_output(batch, "08_reporting/pca_explained_variance.json").read_text())
    got = json.loads(current_output(stream, "08_reporting/pca_explained_variance.json").read_text())
    assert got["n_images"] == expected["n_images"] == len(landed)
    assert got["k"] == expected["k"] == state["k"]
    for member in ("04_feature/image_features_pca.parquet", "04_feature/image_features_pca.csv"):
        scores, reference = _table(stream, member), _table(batch, "04_feature/image_features_pca.parquet")
        assert sorted(scores.index) == sorted(landed)
        assert set(scores["pca_basis"]) == {state["basis"]}
        columns = [f"pc_{i + 1}" for i in range(got["k"])]
        a, b = scores.loc[reference.index, columns].to_numpy(), reference[columns].to_numpy()
        signs = np.sign((a * b).sum(axis=0))  # an axis's sign is arbitrary
        assert np.abs(a * signs - b).max() <= 1e-4


@pytest.fixture(scope="module")
def alternating(tmp_path_factory, generated_sample):
    """Batch run, stream, incremental batch run, stream: photos land before each."""
    base = tmp_path_factory.mktemp("alternating")
    landing = Landing(photo_pool(generated_sample), base / "photos")
    project = make_project_copy(base / "project")
    runs = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        landing.land(16)
        run_kedro(project, monkeypatch, images_root=str(landing.folder), **STREAM_PARAMS)
        landing.land(4)
        runs["stream"] = _stream(project, monkeypatch, landing.folder)["totals"]
        runs["stream_rows"] = _table(project, "04_feature/image_features_pca.csv")
        landing.land(3)
        incremental = {"feature_extraction": {"incremental": True}}
        run_kedro(project, monkeypatch, images_root=str(landing.folder), **incremental, **STREAM_PARAMS)
        runs["batch"] = json.loads(current_output(project, "08_reporting/feature_extraction_report.json").read_text())
        landing.land(2)
        runs["stream_again"] = _stream(project, monkeypatch, landing.folder)["totals"]
    return project, landing, runs


def test_the_stream_starts_from_a_batch_runs_features_and_a_batch_run_from_the_streams(alternating):
    project, landing, runs = alternating
    assert (runs["stream"]["featurized"], runs["stream"]["already_featurized"]) == (4, 16)
    assert sorted(runs["stream_rows"].index) == sorted(landing.landed[:20])  # the CSV: old and new rows
    assert (runs["batch"]["featurized"], runs["batch"]["reused"]) == (3, 20)
    # The stream's source had seen 20 photos; of the 5 it had not, the batch run featurized 3.
    assert runs["stream_again"]["featurized"] - runs["stream"]["featurized"] == 2
    assert runs["stream_again"]["already_featurized"] - runs["stream"]["already_featurized"] == 3
    for member in ("04_feature/image_features.parquet", "04_feature/image_features_pca.parquet"):
        rows = _table(project, member)
        assert sorted(rows.index) == sorted(landing.landed) and rows.index.is_unique
    assert current_outputs(project)["outputs"]["04_feature/image_features.parquet"].startswith("04_feature/stream/")


def test_a_deleted_or_foreign_checkpoint_is_a_one_line_error(alternating, tmp_path, monkeypatch):
    project, landing, _ = alternating
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
