"""A driver that the kill tests start and kill -9: one ``availableNow`` query over the S3
stream source, whose ``foreachBatch`` writes each batch's keys to ``<out>/batches/<id>.json``
(replacing a replayed batch's file) and notes each attempt in ``<out>/attempts.jsonl``.

    python -m tests.datasets.s3_stream_query S3_FOLDER CHECKPOINT OUT MAX_FILES PAUSE_SECONDS

Each attempt logs ``started`` before its pause and ``written`` after its file, then pauses
again, so a test can kill the driver inside a batch or between its output and Spark's commit.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _note(out: Path, **entry) -> None:
    with (out / "attempts.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
        log.flush()
        os.fsync(log.fileno())


def main(folder: str, checkpoint: str, out_dir: str, max_files: str, pause: str) -> None:
    from fruits_kedro import spark as spark_module
    from fruits_kedro.datasets.s3_stream_source import register_s3_stream_source
    from tests.conftest import project_spark_conf

    out = Path(out_dir)
    (out / "batches").mkdir(parents=True, exist_ok=True)
    spark_module.configure(project_spark_conf())
    spark = spark_module.get_spark()
    name = register_s3_stream_source(spark)

    def write_batch(frame, batch_id: int) -> None:
        keys = [row.relative_path for row in frame.collect()]
        _note(out, batch=batch_id, keys=keys, state="started")
        time.sleep(float(pause))
        target = out / "batches" / f"{batch_id}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(keys), encoding="utf-8")
        temporary.replace(target)  # a replayed batch replaces its own file
        _note(out, batch=batch_id, keys=keys, state="written")
        time.sleep(float(pause))

    photos = spark.readStream.format(name).option("path", folder).option("maxFilesPerTrigger", max_files).load()
    query = (
        photos.writeStream.foreachBatch(write_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    _note(out, state="finished")


if __name__ == "__main__":
    main(*sys.argv[1:])
