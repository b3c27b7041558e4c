"""The local stream source: what the walk gives and when a file counts as arrived, then
queries that share a checkpoint, against the batch listing of the same folder."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from fruits_kedro.datasets import ImageFolderDataset
from fruits_kedro.datasets.image_folder import LISTING_COLUMNS
from fruits_kedro.datasets.local_stream_source import (
    LocalImageStreamReader,
    StreamSourceError,
    register_local_stream_source,
)
from fruits_kedro.datasets.s3_stream_source import initial_offset, next_offset

OLD = 1_577_836_800  # 2020-01-01: a photo's mtime kept by cp -p, rsync -a or an archive


def _stream(spark, folder, checkpoint, **options) -> list[tuple]:
    """One available-now run: the rows of every micro-batch."""
    register_local_stream_source(spark)
    rows: list[tuple] = []
    reader = spark.readStream.format("fruits_local_images").option("path", str(folder))
    for name, value in {"allowedLatenessSeconds": 1, **options}.items():
        reader = reader.option(name, str(value))
    query = (
        reader.load()
        .writeStream.foreachBatch(lambda batch, _: rows.extend(tuple(r) for r in batch.collect()))
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return rows


def _write(path, data: bytes = b"photo", mtime: float | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_runs_with_one_checkpoint_give_each_file_once_as_the_batch_listing_lists_it(spark, tmp_path):
    root = tmp_path / "photos"
    _write(root / "Training" / "Apple Red" / "0_100.jpg")
    _write(root / "Training" / "Apple Red" / "notes.txt")
    _write(root / "Training" / "Banana" / "big.jpg", b"b" * 64)
    _write(root / "Training" / ".cache" / "x.jpg")
    _write(root / "Test" / "Banana" / "caf\udce9.jpg")  # a name whose bytes are not UTF-8
    os.mkfifo(root / "Test" / "Banana" / "pipe.jpg")
    checkpoint = tmp_path / "checkpoint"
    first = _stream(spark, root, checkpoint, maxFilesPerTrigger=2, maxFileBytes=32)
    listed = ImageFolderDataset(path=str(root), max_file_bytes=32).list_files()
    expected = {tuple(row) for row in listed[list(LISTING_COLUMNS)].itertuples(index=False) if "hidden" not in str(row)}
    assert {row[:5] for row in first} == expected and len(first) == 5  # the hidden file left out
    reasons = {row[1]: row[4] for row in first}
    assert reasons["Training/Banana/big.jpg"] == "larger than max_file_bytes (32 bytes)"
    assert reasons["Test/Banana/pipe.jpg"].startswith("not a regular file")
    assert any(row[0].startswith("file://") for row in first)  # Spark's file source does not list it at all

    time.sleep(1.2)  # past the allowed lateness: the next run's offsets no longer hold the first files
    copied = _write(root / "Test" / "Apricot" / "0.jpg", mtime=OLD)  # landed now, mtime of 2020
    outside = _write(tmp_path / "elsewhere" / "Kiwi" / "1.jpg", mtime=OLD)
    shutil.move(outside.parent, root / "Training" / "Kiwi")  # a folder of photos moved in
    second = _stream(spark, root, checkpoint, maxFileBytes=32)
    assert sorted(row[1] for row in second) == ["Test/Apricot/0.jpg", "Training/Kiwi/1.jpg"]
    assert all(row[5].timestamp() > OLD + 1e8 for row in second)  # arrival: when they landed
    assert _stream(spark, root, checkpoint, maxFileBytes=32) == []
    assert copied.exists()


def test_a_metadata_change_makes_a_file_arrive_again_with_the_same_key(spark, tmp_path):
    root = tmp_path / "photos"
    photo = _write(root / "Training" / "Kiwi" / "0.jpg")
    checkpoint = tmp_path / "checkpoint"
    first = _stream(spark, root, checkpoint)
    time.sleep(1.2)
    os.chmod(photo, 0o600)
    again = _stream(spark, root, checkpoint)
    # Path, size and mtime unchanged: the micro-batch counts it as featurized (tests/pipelines/streaming).
    assert [row[:4] for row in again] == [row[:4] for row in first] and again[0][5] > first[0][5]


def test_offsets_stay_bounded_while_files_keep_arriving(tmp_path):
    root = tmp_path / "photos"
    reader = LocalImageStreamReader({"path": str(root.resolve()), "allowedLatenessSeconds": "1"})
    root.mkdir()
    offset = initial_offset(str(root.resolve()))
    taken_keys = []
    for round_ in range(3):
        for i in range(20):
            _write(root / "Training" / "Kiwi" / f"{round_}_{i}.jpg")
        time.sleep(1.1)
        end, taken = next_offset(
            offset, reader.list_objects(), max_files=None, now_ms=int(time.time() * 1000), lateness_ms=1000
        )
        taken_keys += [obj.key for obj in taken]
        assert len(taken) == 20 and len(end["recent"]) <= 20  # only the lateness window's files
        offset = end
    assert len(set(taken_keys)) == 60


def test_available_now_plans_every_batch_from_the_one_walk_that_set_its_target(tmp_path, monkeypatch):
    """Photos landing meanwhile wait for the next run, and no batch (nor the check that the
    query is done) walks the folder again."""
    from pyspark.sql.streaming.datasource import ReadMaxFiles

    root = tmp_path / "photos"
    for i in range(5):
        _write(root / "Training" / "Kiwi" / f"{i}.jpg")
    reader = LocalImageStreamReader({"path": str(root.resolve())})
    walks = []
    walk = reader.list_objects
    monkeypatch.setattr(reader, "list_objects", lambda: walks.append(1) or walk())
    reader.prepareForTriggerAvailableNow()
    _write(root / "Training" / "Kiwi" / "late.jpg")
    start, batches = initial_offset(str(root.resolve())), []
    while (end := reader.latestOffset(start, ReadMaxFiles(2))) != start:
        batches.append(sorted(row[1] for part in reader.partitions(start, end) for row in reader.read(part)))
        start = end
    assert batches == [[f"Training/Kiwi/{i}.jpg" for i in pair] for pair in ((0, 1), (2, 3), (4,))]
    assert len(walks) == 1
    later = LocalImageStreamReader({"path": str(root.resolve())})
    later.prepareForTriggerAvailableNow()  # the next run
    assert [
        row[1]
        for part in later.partitions(start, later.latestOffset(start, ReadMaxFiles(2)))
        for row in later.read(part)
    ] == ["Training/Kiwi/late.jpg"]


def test_the_path_must_be_an_absolute_folder(tmp_path):
    with pytest.raises(StreamSourceError, match="needs an absolute folder"):
        LocalImageStreamReader({"path": "relative/photos"})
    reader = LocalImageStreamReader({"path": str(tmp_path / "nowhere")})
    with pytest.raises(StreamSourceError, match="Image folder not found"):
        reader.list_objects()
