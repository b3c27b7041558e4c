"""Streaming latency on S3: photos uploaded at a steady rate to a moto S3 server on loopback while
``kedro run --env s3 --pipelines streaming`` runs with the ``processing_time`` trigger.

A reader polls what any reader of the bucket opens (``current_outputs.json``, then the PCA
table's ``_SUCCESS`` manifest and the parts it names) and notes when each photo's row appears;
latency = that time - the end of the photo's upload (S3's LastModified has whole seconds only,
so the client's clock, the reader's, stands for it). Real distinct photos
(:mod:`tools.bench_photos`); the moto server is the tests' (:mod:`tests.s3_server`).

    python -m tools.bench_streaming_s3                       # 20 photos/s for 60 s
    python -m tools.bench_streaming_s3 --rate 5 --seconds 20 --params backbone.weights=null
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from tools.bench_project import make_project, subprocess_env
from tools.bench_streaming import CACHE, ReadableRows, _wait, latency_figures, stop_stream

PREFIX = "fruits"
PCA_MEMBER = "features/image_features_pca.parquet"


def measure_latency(rate: float, seconds: float, interval: float, params: str, work: Path) -> dict:
    import boto3
    import s3fs

    from tests.s3_server import moto_server
    from tools.bench_photos import photo_set

    n, warm_up = int(rate * seconds), 10
    source = photo_set(n + warm_up, CACHE / "bench_photos").root
    sources = sorted(source.rglob("*.jpg"))
    project = make_project(work / "latency_s3")
    log = work / "latency_s3.log"
    with moto_server() as endpoint, _moto_environment(endpoint):
        client = boto3.session.Session().client("s3")
        bucket = "bench-streaming"
        client.create_bucket(Bucket=bucket)
        trigger = f"streaming.trigger=processing_time,streaming.interval_seconds={interval:g}"
        given = f"bucket={bucket},prefix={PREFIX},{trigger}"
        command = [sys.executable, "-m", "kedro", "run", "--env", "s3", "--pipelines", "streaming"]
        with log.open("ab") as out:
            run = subprocess.Popen(
                [*command, "--params", ",".join(filter(None, [given, params]))],
                cwd=project,
                env=subprocess_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        reader = ReadableRows(f"{bucket}/{PREFIX}", member=PCA_MEMBER, fs=s3fs.S3FileSystem(skip_instance_cache=True))
        reader.start()

        def upload(photo: Path) -> tuple[str, float]:
            key = f"{PREFIX}/raw/{photo.relative_to(source).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=photo.read_bytes())
            return f"s3://{bucket}/{key}", time.time()

        try:
            for photo in sources[:warm_up]:  # the model's loading is not a photo's latency
                upload(photo)
            _wait(lambda: len(reader.seen) >= warm_up, run, log, 600)
            arrivals: dict[str, float] = {}
            start = time.monotonic()
            for i, photo in enumerate(sources[warm_up:]):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                path, landed = upload(photo)
                arrivals[path] = landed
            _wait(lambda: all(path in reader.seen for path in arrivals), run, log, 600)
        finally:
            reader.stop()
            stop_stream(run)
    return latency_figures(reader.seen, arrivals, rate, interval)


@contextlib.contextmanager
def _moto_environment(endpoint: str):
    """The AWS settings of the moto server, for this process and the run, restored afterwards."""
    from tests.s3_server import DUMMY_AWS_ENVIRONMENT

    with mock.patch.dict(os.environ, {**DUMMY_AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": endpoint}):
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        yield


def measure(rate: float, seconds: float, interval: float, params: str) -> dict:
    """The latency figures, in a throw-away folder."""
    work = Path(tempfile.mkdtemp(prefix="fruits_bench_streaming_s3_"))
    try:
        return measure_latency(rate, seconds, interval, params, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def format_latency(latency: dict) -> str:
    return (
        f"Streaming latency on S3 (moto, {latency['photos']} photos at {latency['rate_per_s']:g}/s, processing_time "
        f"every {latency['interval_s']:g} s): p50 {latency['p50_s']:.1f} s, p95 {latency['p95_s']:.1f} s, "
        f"max {latency['max_s']:.1f} s from upload to readable row"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="photos uploaded per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they are uploaded")
    parser.add_argument("--interval", type=float, default=2.0, help="streaming.interval_seconds")
    parser.add_argument("--params", default="", help="more --params for the stream's run")
    args = parser.parse_args(argv)
    latency = measure(args.rate, args.seconds, args.interval, args.params.strip(","))
    print(format_latency(latency))
    return latency


if __name__ == "__main__":
    main()
