"""The S3 stream source: its offsets alone (no Spark), then streaming queries over a real S3
API (the moto server), across runs that share a checkpoint and across drivers killed -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from kedro.io.core import DatasetError
from pyspark.errors import StreamingQueryException

from fruits_kedro.datasets import ImageFolderDataset, ImageStreamDataset
from fruits_kedro.datasets.image_folder import LISTING_COLUMNS
from fruits_kedro.datasets.s3_stream_source import (
    ListedObject,
    StreamSourceError,
    check_offset,
    initial_offset,
    next_offset,
    objects_between,
    register_s3_stream_source,
    waiting,
)
from tests.s3_server import new_bucket

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCE = "s3://bucket/fruits/raw"
LATENESS_MS = 60_000


def _object(key: str, modified_ms: int) -> ListedObject:
    return ListedObject(key, modified_ms, (f"{SOURCE}/{key}", key, 1, "etag", None))


def _drain(listing, start, *, max_files=None, now_ms, target_ms=None):
    """Every batch until the source has nothing new: [(start, end, keys)], checking that
    each batch listed again from its offsets is the batch that was planned."""
    batches = []
    while True:
        end, taken = next_offset(
            start, listing, max_files=max_files, now_ms=now_ms, lateness_ms=LATENESS_MS, target_ms=target_ms
        )
        if end is start:
            assert not taken
            return batches, start
        assert objects_between(listing, json.loads(json.dumps(start)), json.loads(json.dumps(end))) == taken
        batches.append((start, end, [obj.key for obj in taken]))
        start = end


def test_a_key_lower_than_every_key_seen_is_still_new():
    listing = [_object("Banana/1.jpg", 1_000), _object("Cherry/1.jpg", 1_000)]
    batches, offset = _drain(listing, initial_offset(SOURCE), now_ms=2_000)
    assert [keys for *_, keys in batches] == [["Banana/1.jpg", "Cherry/1.jpg"]]

    # Lands later under a lower key, and with a LastModified before the last listing's.
    listing.append(_object("Apple/1.jpg", 1_500))
    batches, offset = _drain(listing, offset, now_ms=3_000)
    assert [keys for *_, keys in batches] == [["Apple/1.jpg"]]
    assert _drain(listing, offset, now_ms=4_000)[0] == []


def test_max_files_per_batch_in_landing_order_then_state_forgets_old_keys():
    listing = [_object(f"Apple/{i}.jpg", 1_000) for i in range(5)] + [_object("Apple/late.jpg", 900)]
    batches, offset = _drain(listing, initial_offset(SOURCE), max_files=2, now_ms=5_000)
    assert [keys for *_, keys in batches] == [
        ["Apple/late.jpg", "Apple/0.jpg"],
        ["Apple/1.jpg", "Apple/2.jpg"],
        ["Apple/3.jpg", "Apple/4.jpg"],
    ]
    assert len(offset["recent"]) == 6  # all within the allowed lateness of the last listing
    # Once the lateness has passed, the next batch's offset holds its own objects only.
    listing.append(_object("Banana/1.jpg", 200_000))
    batches, offset = _drain(listing, offset, now_ms=200_500)
    assert [keys for *_, keys in batches] == [["Banana/1.jpg"]]
    assert offset["recent"] == [["Banana/1.jpg", 200_000]]
    assert offset["through_ms"] == 200_500 - LATENESS_MS


def test_state_stays_bounded_while_photos_keep_arriving():
    listing, offset, largest = [], initial_offset(SOURCE), 0
    for second in range(1, 1_001):  # two photos a second, a batch every second
        listing += [_object(f"Kiwi/{second}-{i}.jpg", second * 1_000) for i in range(2)]
        batches, offset = _drain(listing, offset, max_files=10, now_ms=second * 1_000 + 300)
        assert [len(keys) for *_, keys in batches] == [2]
        largest = max(largest, len(offset["recent"]))
    assert largest <= 2 * (LATENESS_MS // 1_000 + 1)


def test_rewritten_object_is_new_again():
    listing = [_object("Apple/1.jpg", 1_000)]
    _, offset = _drain(listing, initial_offset(SOURCE), now_ms=1_500)
    listing = [_object("Apple/1.jpg", 2_000)]  # the same key, uploaded again
    batches, _ = _drain(listing, offset, now_ms=2_500)
    assert [keys for *_, keys in batches] == [["Apple/1.jpg"]]


def test_available_now_stops_at_its_target():
    listing = [_object("Apple/1.jpg", 1_000), _object("Apple/2.jpg", 2_000), _object("Apple/3.jpg", 3_000)]
    batches, offset = _drain(listing, initial_offset(SOURCE), max_files=1, now_ms=3_500, target_ms=2_000)
    assert [keys for *_, keys in batches] == [["Apple/1.jpg"], ["Apple/2.jpg"]]
    assert [keys for *_, keys in _drain(listing, offset, now_ms=4_000)[0]] == [["Apple/3.jpg"]]


def test_the_files_waiting_after_a_batch_are_those_its_offset_left_even_within_one_millisecond():
    listing = [_object(f"Apple/{i}.jpg", 1_000) for i in range(5)] + [_object("Apple/late.jpg", 2_000)]
    end, taken = next_offset(initial_offset(SOURCE), listing, max_files=2, now_ms=1_500, lateness_ms=LATENESS_MS)
    assert len(taken) == 2
    assert waiting(listing, end) == (4, datetime.fromtimestamp(1, tz=UTC))  # 3 of the same ms, and the late one
    end, _ = next_offset(end, listing, max_files=None, now_ms=2_500, lateness_ms=LATENESS_MS)
    assert waiting(listing, end) == (0, None)


def test_an_offset_of_another_source_is_refused():
    check_offset(initial_offset(SOURCE), SOURCE)
    with pytest.raises(StreamSourceError, match=r"belongs to s3://other/raw, not to s3://bucket/fruits/raw"):
        check_offset(initial_offset("s3://other/raw"), SOURCE)
    with pytest.raises(StreamSourceError, match="use a new checkpoint folder"):
        check_offset({"logOffset": 3}, SOURCE)


# ---------------------------------------------------------------- streaming queries on moto S3


def _put(bucket: str, keys: dict[str, bytes]) -> None:
    client = boto3.session.Session().client("s3")
    for key, body in keys.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def _stream(spark, folder: str, checkpoint: Path, **options) -> list[tuple[int, list[tuple]]]:
    """One ``availableNow`` run: the batches it delivered, as (batch id, rows)."""
    batches = []

    def collect(frame, batch_id: int) -> None:
        batches.append((batch_id, [tuple(row) for row in frame.collect()]))

    reader = spark.readStream.format(register_s3_stream_source(spark)).option("path", folder)
    for name, value in options.items():
        reader = reader.option(name, value)
    query = (
        reader.load()
        .writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return batches


def test_runs_with_one_checkpoint_deliver_each_object_once_as_the_batch_listing_does(spark, aws_env, tmp_path):
    bucket = new_bucket()
    folder = f"s3://{bucket}/fruits/raw"
    _put(
        bucket,
        {
            "fruits/raw/": b"",  # folder markers, as the S3 console makes them
            "fruits/raw/Training/": b"",
            "fruits/raw/Training/Apple Red/0_100.jpg": b"apple",
            "fruits/raw/Training/Apple Red/notes.txt": b"not a photo",
            "fruits/raw/Training/Banana/big.jpg": b"b" * 64,
            "fruits/raw/Training/.hidden/x.jpg": b"x",
            "fruits/raw/Test/Banana/1_100.JPG": b"banana",
        },
    )
    checkpoint = tmp_path / "checkpoint"

    first = _stream(spark, folder, checkpoint, maxFilesPerTrigger=2, maxFileBytes=32)
    listed = ImageFolderDataset(path=folder, max_file_bytes=32).list_files()
    expected = {tuple(row) for row in listed[list(LISTING_COLUMNS)].itertuples(index=False)}
    # Rows with a reason for the marker, the hidden photo and the oversized one; extensions are the ingestion's.
    assert len(expected) == 6 and sum(reason is not None for *_, reason in expected) == 3
    assert {row[:5] for _, rows in first for row in rows} == expected
    stamps = {o["Key"]: o["LastModified"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    arrivals = {row[1]: row[5].timestamp() for _, rows in first for row in rows}  # naive local time, from Spark
    assert arrivals == {key: stamps[f"fruits/raw/{key}"].timestamp() for key in arrivals}
    assert all(len(rows) <= 2 for _, rows in first) and sum(len(rows) for _, rows in first) == 6
    assert {r[1]: r[4] for _, rows in first for r in rows}["Training/Banana/big.jpg"] == (
        "larger than max_file_bytes (32 bytes)"
    )

    # New photos, one under a key lower than all the others: the same checkpoint takes only them.
    _put(bucket, {"fruits/raw/Test/Apricot/0.jpg": b"apricot", "fruits/raw/Training/Apple Red/1_100.jpg": b"a2"})
    second = _stream(spark, folder, checkpoint, maxFilesPerTrigger=2, maxFileBytes=32)
    new = ["Test/Apricot/0.jpg", "Training/Apple Red/1_100.jpg"]
    assert [sorted(row[1] for row in rows) for _, rows in second] == [new]
    assert second[0][0] == first[-1][0] + 1
    assert _stream(spark, folder, checkpoint, maxFilesPerTrigger=2, maxFileBytes=32) == []


def test_a_running_query_takes_photos_as_they_land(spark, aws_env, tmp_path):
    bucket = new_bucket()
    folder = f"s3://{bucket}/fruits/raw"
    batches = []
    query = (
        spark.readStream.format(register_s3_stream_source(spark))
        .option("path", folder)
        .option("maxFilesPerTrigger", 3)
        .load()
        .writeStream.foreachBatch(lambda frame, _: batches.append([row.relative_path for row in frame.collect()]))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(processingTime="0.5 seconds")
        .start()
    )
    landed = []
    try:
        for wave in range(3):  # each wave lands within a second: LastModified ties with the one before
            keys = [f"Training/Kiwi/{wave}_{i}.jpg" for i in range(4)] + [f"Test/Apple/{wave}.jpg"]
            _put(bucket, {f"fruits/raw/{key}": b"photo" for key in keys})
            landed += keys
            deadline = time.monotonic() + 60
            while sorted(key for batch in batches for key in batch) != sorted(landed):
                assert query.isActive and time.monotonic() < deadline, query.exception()
                time.sleep(0.1)
    finally:
        query.stop()
    assert all(1 <= len(batch) <= 3 for batch in batches)


def test_a_checkpoint_of_another_prefix_is_refused(spark, aws_env, tmp_path):
    bucket = new_bucket()
    _put(bucket, {"one/raw/Apple/1.jpg": b"1", "two/raw/Apple/1.jpg": b"2"})
    checkpoint = tmp_path / "checkpoint"
    assert len(_stream(spark, f"s3://{bucket}/one/raw", checkpoint)) == 1
    with pytest.raises(
        StreamingQueryException, match=f"belongs to s3://{bucket}/one/raw, not to s3://{bucket}/two/raw"
    ):
        _stream(spark, f"s3://{bucket}/two/raw", checkpoint)


def test_a_missing_bucket_is_named_before_the_stream_starts(aws_env):
    with pytest.raises(DatasetError, match="bucket 'no-such-bucket-stream' does not exist"):
        ImageStreamDataset(path="s3://no-such-bucket-stream/fruits/raw").load()


def test_bad_options_are_named(spark, aws_env, tmp_path):
    with pytest.raises(Exception, match="option maxFilesPerTrigger must be a positive integer, got '0'"):
        _stream(spark, "s3://bucket/raw", tmp_path / "a", maxFilesPerTrigger=0)
    with pytest.raises(Exception, match=r"needs an S3 folder as its path \(s3://bucket/prefix\), got '/tmp/x'"):
        _stream(spark, "/tmp/x", tmp_path / "b")


# ---------------------------------------------------------------- drivers killed -9


def _attempts(out: Path) -> list[dict]:
    log = out / "attempts.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.endswith("}")]


def _run_driver(folder: str, checkpoint: Path, out: Path, kill_when=None) -> None:
    """Start the driver; kill it -9 (with its JVM and workers) once ``kill_when(new attempts)``
    holds, or let it finish when ``kill_when`` is None."""
    before = len(_attempts(out))
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.datasets.s3_stream_query", folder, str(checkpoint), str(out), "2", "0.7"],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=(out / "driver.log").open("ab"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            new = _attempts(out)[before:]
            if kill_when is not None and kill_when(new):
                return
            if kill_when is None and driver.poll() is not None:
                assert driver.returncode == 0, (out / "driver.log").read_text()[-3000:]
                assert new and new[-1]["state"] == "finished"
                return
            assert driver.poll() is None or kill_when is None, (out / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the driver made no progress"
            time.sleep(0.02)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
        driver.wait()


@pytest.mark.slow
def test_drivers_killed_mid_stream_lose_and_repeat_nothing(aws_env, tmp_path):
    bucket = new_bucket()
    folder = f"s3://{bucket}/fruits/raw"
    landed = [f"Training/Kiwi/{i}.jpg" for i in range(7)]
    _put(bucket, {f"fruits/raw/{key}": b"kiwi" for key in landed})
    checkpoint, out = tmp_path / "checkpoint", tmp_path / "out"
    out.mkdir()

    # Inside the second batch, before its output exists.
    _run_driver(folder, checkpoint, out, lambda new: any(a["state"] == "started" and a["batch"] >= 1 for a in new))
    late = ["Test/Apple/0.jpg", "Test/Apple/1.jpg", "Training/Apple/0.jpg"]  # keys lower than the first ones
    _put(bucket, {f"fruits/raw/{key}": b"apple" for key in late})
    landed += late
    # After a batch's output is written, before Spark commits the batch.
    _run_driver(folder, checkpoint, out, lambda new: any(a["state"] == "written" for a in new))
    _run_driver(folder, checkpoint, out)

    delivered = {int(f.stem): json.loads(f.read_text()) for f in (out / "batches").glob("*.json")}
    keys = [key for batch in delivered.values() for key in batch]
    assert sorted(keys) == sorted(landed)  # none lost, none twice
    assert all(1 <= len(batch) <= 2 for batch in delivered.values())
    assert sorted(delivered) == list(range(len(delivered)))
    attempts = [a for a in _attempts(out) if "batch" in a]
    started = Counter(a["batch"] for a in attempts if a["state"] == "started")
    assert set(started) == set(delivered) and max(started.values()) >= 2  # the kills hit batches
    for attempt in attempts:  # a replayed batch holds the same objects as its first attempt
        assert attempt["keys"] == delivered[attempt["batch"]]
