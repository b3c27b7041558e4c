"""Upload a local image folder to ``s3://BUCKET/PREFIX/raw/``, keeping its folder layout.

    python -m fruits_kedro.cloud.upload data/01_raw/fruits --bucket NAME --prefix fruits

Class folder names (spaces included) become key segments unchanged, so the S3 listing gives
the same labels as the local one. Transfers run in parallel threads, each through boto3's
managed transfer (multipart for large files). A rerun lists what is already there and skips
every object with the same size, so an interrupted upload resumes where it stopped.
Hidden files (``.DS_Store``, ``.sample_complete``) are skipped, as the pipeline skips them.

The folder is walked as the pipeline walks it (:func:`fruits_kedro.datasets.image_folder.walk_local`):
symbolic links to folders are followed, each folder once; FIFOs, devices, sockets and broken
links are left out and reported, never opened. S3 keys are UTF-8: a name whose bytes are not
is uploaded under its key with those bytes written ``%XX``, the ``relative_path`` the local
listing gives it, and reported.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from fruits_kedro.datasets.image_folder import HIDDEN, display_name, walk_local

logger = logging.getLogger(__name__)

RAW_FOLDER = "raw"


class UploadError(RuntimeError):
    """The upload cannot start or finish; the message names the bucket or key."""


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str
    size: int
    renamed: bool = False  # the local name is not UTF-8: the key writes those bytes %XX


@dataclass
class UploadReport:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already present
    bytes_uploaded: int = 0
    renamed: list[str] = field(default_factory=list)  # keys of local names that are not UTF-8
    left_out: dict[str, str] = field(default_factory=dict)  # relative path -> why it was not uploaded

    def summary(self, bucket: str, raw_prefix: str) -> str:
        notes = f", {len(self.renamed)} with non-UTF-8 names" if self.renamed else ""
        notes += f", {len(self.left_out)} left out" if self.left_out else ""
        return (
            f"s3://{bucket}/{raw_prefix}: {len(self.uploaded)} uploaded ({self.bytes_uploaded / 1e6:.1f} MB), "
            f"{len(self.skipped)} already present{notes}"
        )


def raw_prefix(prefix: str) -> str:
    """``fruits`` -> ``fruits/raw/`` (the folder the ``s3`` and ``emr`` catalogs read)."""
    parts = [p for p in prefix.strip("/").split("/") if p]
    return "/".join([*parts, RAW_FOLDER]) + "/"


def local_files(root: Path, key_prefix: str) -> tuple[list[LocalFile], dict[str, str]]:
    """Every non-hidden regular file under ``root`` with the key it gets, sorted by key, and
    the names left out (relative path, as text -> why)."""
    if not root.is_dir():
        raise UploadError(f"Local image folder not found: {display_name(str(root))}")
    files: dict[str, LocalFile] = {}
    left_out: dict[str, str] = {}
    # UTF-8 names first, so a literal "%FF" in a name keeps its key over an undecodable byte.
    entries = sorted(walk_local(str(root)), key=lambda entry: display_name(entry.relative) != entry.relative)
    for entry in entries:
        relative = display_name(entry.relative)
        key = key_prefix + relative
        if entry.skipped == HIDDEN:
            continue  # the pipeline skips them wherever they are
        if entry.skipped:
            left_out[relative] = entry.skipped
        elif key in files:
            left_out[relative] = "name not UTF-8, and its key is another file's"
        else:
            files[key] = LocalFile(Path(entry.path), key, entry.size, renamed=relative != entry.relative)
    if not files:
        raise UploadError(f"No files to upload under {display_name(str(root))}")
    return [files[key] for key in sorted(files)], dict(sorted(left_out.items()))


def s3_client(endpoint_url: str | None = None):
    """A fresh client from the standard AWS chain; boto3 itself honours AWS_ENDPOINT_URL."""
    import boto3
    from botocore.config import Config

    # Enough connections for the worker threads, and retries for a flaky network.
    config = Config(max_pool_connections=64, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def check_bucket(client, bucket: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError as exc:
        raise UploadError(
            f"No AWS credentials found to write to s3://{bucket}/: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE (optionally with AWS_SHARED_CREDENTIALS_FILE), or use an instance role."
        ) from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise UploadError(f"Bucket {bucket!r} does not exist: create it first (aws s3 mb s3://{bucket}).") from exc
        if code in ("403", "AccessDenied", "Forbidden"):
            raise UploadError(f"Access denied to bucket {bucket!r} with the current AWS credentials.") from exc
        raise UploadError(f"Cannot reach bucket {bucket!r}: {exc}") from exc
    except BotoCoreError as exc:
        raise UploadError(f"Cannot reach bucket {bucket!r}: {exc} (check AWS_ENDPOINT_URL / network)") from exc


def existing_sizes(client, bucket: str, key_prefix: str) -> dict[str, int]:
    """Key -> size of every object already under ``key_prefix``: one paginated listing."""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = int(item["Size"])
    return sizes


def files_to_upload(files: Iterable[LocalFile], present: dict[str, int]) -> tuple[list[LocalFile], list[LocalFile]]:
    """(to upload, to skip): an object of the same size at the same key counts as uploaded."""
    todo, skip = [], []
    for item in files:
        (skip if present.get(item.key) == item.size else todo).append(item)
    return todo, skip


class ProgressPrinter:
    """Thread-safe ``[done/total]`` lines, at most ``every`` files apart, plus the last one."""

    def __init__(self, total: int, every: int, write: Callable[[str], None]) -> None:
        self._total, self._every, self._write = total, max(1, every), write
        self._done = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def file_done(self, item: LocalFile) -> None:
        with self._lock:
            self._done += 1
            self._bytes += item.size
            if self._done % self._every == 0 or self._done == self._total:
                self._write(f"[{self._done}/{self._total}] {self._bytes / 1e6:.1f} MB  {item.key}")


def upload_folder(
    local_dir: str | Path,
    bucket: str,
    prefix: str,
    workers: int = 16,
    client=None,
    write: Callable[[str], None] = print,
    progress_every: int = 100,
) -> UploadReport:
    """Upload ``local_dir`` to ``s3://bucket/prefix/raw/``; return what was sent and skipped."""
    from boto3.s3.transfer import TransferConfig

    client = client or s3_client()
    key_prefix = raw_prefix(prefix)
    files, left_out = local_files(Path(local_dir), key_prefix)
    check_bucket(client, bucket)
    todo, skip = files_to_upload(files, existing_sizes(client, bucket, key_prefix))
    report = UploadReport(skipped=[f.key for f in skip], renamed=[f.key for f in files if f.renamed], left_out=left_out)
    for relative, reason in left_out.items():
        write(f"left out {relative}: {reason}")
    for key in report.renamed:
        write(f"name not UTF-8, uploaded as {key}")
    write(f"{len(files)} files: {len(todo)} to upload, {len(skip)} already in s3://{bucket}/{key_prefix}")
    # Parallelism comes from the thread pool; each file's own transfer stays single-threaded
    # unless it is large enough for multipart.
    transfer = TransferConfig(multipart_threshold=64 * 1024 * 1024, max_concurrency=4, use_threads=True)
    progress = ProgressPrinter(len(todo), progress_every, write)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_upload_one, client, bucket, item, transfer): item for item in todo}
        for future in as_completed(futures):
            item = futures[future]
            future.result()
            report.uploaded.append(item.key)
            report.bytes_uploaded += item.size
            progress.file_done(item)
    report.uploaded.sort()
    write(report.summary(bucket, key_prefix))
    return report


def _upload_one(client, bucket: str, item: LocalFile, transfer) -> None:
    try:
        client.upload_file(str(item.path), bucket, item.key, Config=transfer)
    except Exception as exc:  # boto3 wraps failures in S3UploadFailedError and others
        raise UploadError(
            f"Failed to upload {display_name(str(item.path))} to s3://{bucket}/{item.key}: {exc}"
        ) from exc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fruits_kedro.cloud.upload",
        description="Upload an image folder (<root>/<Split>/<Class>/*.jpg) to s3://BUCKET/PREFIX/raw/.",
    )
    parser.add_argument("local_dir", help="local image folder, e.g. data/01_raw/fruits")
    parser.add_argument("--bucket", required=True, help="target bucket (must exist)")
    parser.add_argument("--prefix", default="fruits", help="key prefix; images go under PREFIX/raw/ (default: fruits)")
    parser.add_argument("--workers", type=int, default=16, help="parallel transfers (default: 16)")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument("--progress-every", type=int, default=100, help="print a progress line every N files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        upload_folder(
            args.local_dir,
            args.bucket,
            args.prefix,
            workers=args.workers,
            client=s3_client(args.endpoint_url),
            progress_every=args.progress_every,
        )
    except UploadError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
