"""The streaming source's column contract on a local folder, and the query's checkpoint checks."""

from __future__ import annotations

import json
import os

import pytest

from fruits_kedro.datasets.image_stream import (
    CHECKPOINT_MARKER,
    SOURCE_COLUMNS,
    ImageStreamDataset,
    MicroBatchJob,
    MicroBatchQueryDataset,
    StreamCheckpointError,
)


def test_a_local_folder_gives_the_contracts_columns_and_never_the_bytes(spark, tmp_path):
    root = tmp_path / "photos"
    photo = root / "Training" / "Apple Red" / "a b%20[1].jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"not even a JPEG")
    (root / "Training" / ".hidden.jpg").write_bytes(b"x")
    stream = ImageStreamDataset(path=str(root)).load()
    frame = stream.read(max_files_per_trigger=10)
    assert tuple(frame.columns) == SOURCE_COLUMNS
    rows = []
    query = (
        frame.writeStream.foreachBatch(lambda batch, _: rows.extend(batch.collect()))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    info = os.stat(photo)
    assert [(r.path, r.size, r.modified) for r in rows] == [(str(photo), 15, str(info.st_mtime))]
    # Arrival: the latest of the file's mtime and ctime and its folders' ctimes (milliseconds).
    landed = max(info.st_mtime_ns, info.st_ctime_ns, *(os.stat(p).st_ctime_ns for p in photo.parents[:2]))
    assert rows[0].arrival.timestamp() == pytest.approx(landed // 1_000_000 / 1000, abs=1e-6)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(Exception, match="Image folder not found"):
        ImageStreamDataset(path=str(tmp_path / "nowhere")).load()


def _job(source: str) -> MicroBatchJob:
    return MicroBatchJob(frame=None, process=lambda frame, batch_id: None, trigger={}, source=source)


def test_a_checkpoint_of_another_source_is_a_one_line_error(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    marker = {"format": "fruits_kedro.stream_checkpoint/1", "source": "/photos/a"}
    (checkpoint / CHECKPOINT_MARKER).write_text(json.dumps(marker))
    with pytest.raises(StreamCheckpointError) as error:
        MicroBatchQueryDataset(path=str(checkpoint)).save(_job("/photos/b"))
    assert "belongs to the stream of /photos/a, not of /photos/b" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_checkpoint_another_program_made_is_refused(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "offsets").mkdir(parents=True)
    with pytest.raises(StreamCheckpointError, match="not made by this project's stream"):
        MicroBatchQueryDataset(path=str(checkpoint)).save(_job("/photos/a"))
