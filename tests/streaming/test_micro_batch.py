"""The micro-batch's log line: the backlog read from Spark's offset log, never failing a batch."""

from __future__ import annotations

import json
import logging

from fruits_kedro.datasets.image_stream import ImageStream
from fruits_kedro.streaming.micro_batch import MicroBatches


def _batches(tmp_path) -> MicroBatches:
    photos = tmp_path / "photos"
    for name in ("0.jpg", "1.jpg"):
        (photos / "Training" / "Kiwi").mkdir(parents=True, exist_ok=True)
        (photos / "Training" / "Kiwi" / name).write_bytes(b"photo")
    batches = MicroBatches(ImageStream(str(photos)), store=None, settings=None)
    batches.checkpoint = str(tmp_path / "checkpoint")
    return batches


def test_the_backlog_is_what_the_batchs_end_offset_in_sparks_log_left(tmp_path):
    batches = _batches(tmp_path)
    offsets = tmp_path / "checkpoint" / "offsets"
    offsets.mkdir(parents=True)
    root = str((tmp_path / "photos").resolve())
    for batch_id, through_ms in ((0, 0), (1, 2**62)):
        offset = {"version": 1, "source": root, "through_ms": through_ms, "recent": []}
        (offsets / str(batch_id)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{json.dumps(offset)}')
    count, oldest = batches._backlog(0)
    assert count == 2 and oldest is not None
    assert batches._backlog(1) == (0, None)


def test_a_backlog_that_cannot_be_listed_is_unknown_in_a_warning_not_a_failed_batch(tmp_path, caplog):
    batches = _batches(tmp_path)  # no offset logged for the batch
    with caplog.at_level(logging.WARNING, logger="fruits_kedro.streaming.micro_batch"):
        assert batches._backlog(3) is None
    assert "Micro-batch 3: backlog unknown (FileNotFoundError" in caplog.text
