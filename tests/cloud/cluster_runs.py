"""What the cluster and fault tests share: photos uploaded to the loopback S3 server, a
``kedro run`` in its own process (the driver is a process of its own, as on EMR), and
readers of what the run left in S3 and in its Spark event log."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pandas as pd
import s3fs

from fruits_kedro.datasets.output_set import MANIFEST_NAME
from tests.s3_server import DUMMY_AWS_ENVIRONMENT

PREFIX = "fruits"
# Random weights at 64 px: the run's structure and guarantees, not feature quality.
RUN_PARAMS = "backbone.weights=null,backbone.input_size=64"


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jpg") if not any(part.startswith(".") for part in p.relative_to(root).parts))


def upload_photos(source: Path, bucket: str, count: int) -> list[str]:
    """``count`` photos: those under ``source``, copied as often as needed, each copy beside its
    original under ``s3://bucket/fruits/raw/`` with a name of its own; returns every photo's URL."""
    client = boto3.session.Session().client("s3")
    files = image_files(source)
    copies = -(-count // len(files))
    jobs = [
        (f"{PREFIX}/raw/{f.parent.relative_to(source).as_posix()}/copy-{i}-{f.name}", f)
        for i in range(copies)
        for f in files
    ]
    jobs = jobs[:count]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda job: client.put_object(Bucket=bucket, Key=job[0], Body=job[1].read_bytes()), jobs))
    return sorted(f"s3://{bucket}/{key}" for key, _ in jobs)


def run_environment(endpoint_url: str) -> dict[str, str]:
    """The driver's environment: the AWS settings of the test server, and nothing that would
    hand the executors their interpreter or S3 settings outside Spark's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYSPARK_", "FSSPEC_"))}
    env.update(DUMMY_AWS_ENVIRONMENT)
    env["AWS_ENDPOINT_URL"] = endpoint_url
    env["KEDRO_DISABLE_TELEMETRY"] = "1"
    return env


def start_kedro_run(project: Path, endpoint_url: str, bucket: str, params: str, log: Path) -> subprocess.Popen:
    """``kedro run --env s3`` in its own process; its output goes to ``log``."""
    command = [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--env",
        "s3",
        "--params",
        f"bucket={bucket},prefix={PREFIX},{params}",
    ]
    handle = log.open("wb")
    return subprocess.Popen(
        command, cwd=project, env=run_environment(endpoint_url), stdout=handle, stderr=subprocess.STDOUT
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended (rc={process.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def staged_parts(fs: s3fs.S3FileSystem, dataset: str) -> list[str]:
    """Part files written by finished tasks of a run, not yet committed (in the staging folder
    of the dataset's run folder ``<folder>/runs/<run id>/<name>``)."""
    folder, name = dataset.rsplit("/", 1)
    fs.invalidate_cache()
    try:
        found = fs.find(f"{folder}/runs")
    except FileNotFoundError:
        return []
    return [p for p in found if f"/{name}/_temporary/" in p and p.endswith(".parquet")]


def s3_filesystem() -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True)


def read_csv(fs: s3fs.S3FileSystem, path: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(fs.cat_file(path)))


def read_parquet_folder(fs: s3fs.S3FileSystem, path: str) -> pd.DataFrame:
    """The folder as any Parquet reader sees it: no manifest, every visible file."""
    return pd.read_parquet(path, filesystem=fs)


def snapshot(fs: s3fs.S3FileSystem, root: str) -> dict[str, bytes]:
    """The current outputs under ``root``: the commit file and every object it names, with their bytes."""
    fs.invalidate_cache()
    manifest = fs.cat_file(f"{root}/{MANIFEST_NAME}")
    objects = {f"{root}/{MANIFEST_NAME}": manifest}
    for path in json.loads(manifest)["outputs"].values():
        objects.update({p: fs.cat_file(p) for p in fs.find(f"{root}/{path}")})
    return objects


def event_log(project: Path) -> list[dict]:
    """The events of the run's Spark application (its event log in the project's logs/)."""
    logs = sorted((project / "logs" / "spark-events").glob("*"), key=lambda p: p.stat().st_mtime)
    assert logs, f"no Spark event log under {project / 'logs/spark-events'}"
    # A rolling log is a folder of event files (Spark 4's default), a plain one a single file.
    files = sorted(logs[-1].glob("events_*")) if logs[-1].is_dir() else [logs[-1]]
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def events(log: Iterable[dict], name: str) -> list[dict]:
    return [e for e in log if e.get("Event") == name]
