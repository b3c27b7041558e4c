"""Reading files' bytes inside the executors, by path (local, or any fsspec URL such as s3://).

A file that cannot be had is one of two things, and they are never confused:

- a property of the file: it is gone since it was listed, or (on a local disk) it may not be
  read. It comes back as :class:`Unreadable` with the reason, and the photo is reported;
- a failure of the storage: S3 resets connections, times out, throttles, or cannot be
  reached. Those are retried (s3fs and botocore retry each request, see
  :mod:`fruits_kedro.cloud.s3_retries`; this module retries the batch on top of them, with
  backoff, up to a deadline). What still fails raises :class:`StorageUnavailableError`,
  which fails the Spark task, so Spark retries it; no photo is reported for it.

Free of pandas on purpose: every inference task imports this module, and a worker that
imports pandas starts later.
"""

from __future__ import annotations

import os
import random
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec

from fruits_kedro.cloud.s3_retries import use_s3_retry_settings

# Time a batch keeps retrying the reads that failed for a reason of the storage.
DEFAULT_RETRY_SECONDS = 20.0
_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 8.0


class StorageUnavailableError(OSError):
    """Files could not be read for a reason of the storage (network, S3), not of the files."""


@dataclass(frozen=True)
class Unreadable:
    """A listed file that cannot be read for a reason of its own; ``reason`` says which."""

    reason: str


def read_files(paths: Sequence[str], retry_seconds: float = DEFAULT_RETRY_SECONDS) -> list[bytes | Unreadable]:
    """Each file's bytes, or :class:`Unreadable` for a file that is gone or (locally) may not
    be read, so that one bad file cannot fail a partition of good ones.

    One ``cat_ranges`` call per batch: on S3, s3fs fetches the objects concurrently, where one
    GET after another would leave the cores waiting on latency; on disk it reads them in turn.
    (``cat_ranges`` takes paths literally: a ``[`` in a file name is not a glob.)

    Raises:
        StorageUnavailableError: some files still failed for a reason of the storage after
            ``retry_seconds`` of retries; the message names the first one and the cause.
    """
    if not paths:
        return []
    use_s3_retry_settings(paths[0])
    fs, _ = fsspec.core.url_to_fs(paths[0])  # one listing, one filesystem
    remote = not _is_local(fs)
    results: list[bytes | Unreadable | None] = [None] * len(paths)
    pending = list(range(len(paths)))
    started = time.monotonic()
    backoff = _FIRST_BACKOFF_SECONDS
    attempts = 0
    while True:
        attempts += 1
        contents = fs.cat_ranges(
            [fs._strip_protocol(os_path(paths[i])) for i in pending], None, None, on_error="return"
        )
        failed: list[tuple[int, BaseException]] = []
        for index, data in zip(pending, contents):
            if not isinstance(data, BaseException):
                results[index] = data
            elif _is_property_of_the_file(data, remote):
                results[index] = Unreadable(_reason(data))
            elif isinstance(data, PermissionError):  # the job's credentials: no retry will help
                raise StorageUnavailableError(f"Cannot read {paths[index]}: access denied ({data})") from data
            else:
                failed.append((index, data))
        if not failed:
            return results  # type: ignore[return-value]
        elapsed = time.monotonic() - started
        if elapsed + backoff > retry_seconds:
            index, error = failed[0]
            tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
            raise StorageUnavailableError(
                f"Cannot read {paths[index]} (and {len(failed) - 1} more of this batch): the storage "
                f"still failed after {tries} over {elapsed:.0f} s: {type(error).__name__}: {error}"
            ) from error
        time.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
        fs.invalidate_cache()
        pending = [index for index, _ in failed]


def os_path(path: str) -> str:
    """A listing's ``path`` as the file system opens it: a ``file://`` URI, which is how
    :mod:`fruits_kedro.datasets.image_folder` lists a local name whose bytes are not UTF-8,
    back to those exact bytes; any other path unchanged."""
    if path.startswith("file://"):
        return os.fsdecode(urllib.parse.unquote_to_bytes(path[len("file://") :]))
    return path


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _is_property_of_the_file(error: BaseException, remote: bool) -> bool:
    """Gone is the file's own state anywhere; other refusals are only on a local disk
    (on S3, access denied is the job's credentials or policy, not the photo)."""
    if isinstance(error, FileNotFoundError):
        return True
    return not remote and isinstance(error, (PermissionError, IsADirectoryError, NotADirectoryError))


def _reason(error: BaseException) -> str:
    """Deterministic text: no addresses or object reprs, so reruns report the same reason."""
    if isinstance(error, FileNotFoundError):
        return "file is gone: listed, then removed before it was read"
    if isinstance(error, PermissionError):
        return "file may not be read (permission denied)"
    return f"file could not be read ({type(error).__name__})"


def storage_failure(error: BaseException) -> str | None:
    """The message of a :class:`StorageUnavailableError` raised in a Spark task, found in
    the driver-side exception that wraps it (Py4J or PySpark's, with the worker's traceback
    as text), or None if ``error`` is about something else."""
    import re

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StorageUnavailableError):
            return str(error)
        found = re.search(rf"{StorageUnavailableError.__name__}: (.+)", str(error))
        if found:
            return found.group(1).strip()
        error = error.__cause__ or error.__context__
    return None
