"""Reading files' bytes inside the executors, by path (local, or any fsspec URL such as s3://).

A file that cannot be had is one of two things, and they are never confused:

- a property of the file: it is gone since it was listed, it is larger than the limit, or (on
  a local disk) it may not be read or is no longer a regular file (a FIFO, a device, a
  folder). It comes back as :class:`Unreadable` with the reason, and the photo is reported;
- a failure of the storage: S3 resets connections, times out, throttles, or cannot be
  reached. Those are retried (s3fs and botocore retry each request, see
  :mod:`fruits_kedro.cloud.s3_retries`; this module retries the batch on top of them, with
  backoff, up to a deadline). What still fails raises :class:`StorageUnavailableError`,
  which fails the Spark task, so Spark retries it; no photo is reported for it.

What the listing checked is checked again where the bytes are read, since the file may have
been replaced in between: a local file is opened without blocking (``O_NONBLOCK``: opening a
FIFO would wait for a writer), examined on the open descriptor (``fstat``) and read up to the
limit and one byte more; an object is fetched with a range that stops there too.

Free of pandas on purpose: every inference task imports this module, and a worker that
imports pandas starts later.
"""

from __future__ import annotations

import errno
import os
import random
import stat
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


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "folder"),
)


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this ``st_mode`` must not be read (None: a regular file may be)."""
    if stat.S_ISREG(mode):
        return None
    for is_kind, kind in _SPECIAL_FILES:
        if is_kind(mode):
            return f"not a regular file ({kind})"
    return "not a regular file"


def size_reason(size: int, max_bytes: int | None) -> str | None:
    """Why a file of ``size`` bytes must not be read (None: it may be)."""
    if max_bytes is not None and size > max_bytes:
        return f"larger than max_file_bytes ({max_bytes} bytes)"
    return None


def read_files(
    paths: Sequence[str], retry_seconds: float = DEFAULT_RETRY_SECONDS, *, max_bytes: int | None = None
) -> list[bytes | Unreadable]:
    """Each file's bytes, or :class:`Unreadable` for a file that is gone, larger than
    ``max_bytes``, or (locally) may not be read or is not a regular file, so that one bad file
    cannot fail a partition of good ones. No more than ``max_bytes`` + 1 bytes of a file are
    read (``None``: no limit), and nothing that could block is opened.

    On S3, one ``cat_ranges`` call per batch: s3fs fetches the objects concurrently, where one
    GET after another would leave the cores waiting on latency. (``cat_ranges`` takes paths
    literally: a ``[`` in a file name is not a glob.) On disk the files are read in turn.

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
        if remote:
            contents = _read_objects(fs, [paths[i] for i in pending], max_bytes)
        else:
            contents = [_read_local(os_path(paths[i]), max_bytes) for i in pending]
        failed: list[tuple[int, BaseException]] = []
        for index, data in zip(pending, contents):
            if isinstance(data, bytes) and size_reason(len(data), max_bytes):
                results[index] = Unreadable(f"{size_reason(len(data), max_bytes)}, found when read")
            elif not isinstance(data, BaseException):
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


def _read_objects(fs, paths: list[str], max_bytes: int | None) -> list[bytes | Unreadable | BaseException]:
    """The objects' bytes, each fetched up to ``max_bytes`` + 1 when there is a limit."""
    keys = [fs._strip_protocol(path) for path in paths]
    if max_bytes is None:
        return fs.cat_ranges(keys, None, None, on_error="return")
    contents = fs.cat_ranges(keys, 0, max_bytes + 1, on_error="return")
    # S3 refuses any range of an empty object (416, which s3fs raises as EINVAL).
    return [b"" if _is_unsatisfiable_range(data) else data for data in contents]


def _is_unsatisfiable_range(data: object) -> bool:
    return isinstance(data, OSError) and data.errno == errno.EINVAL and "range" in str(data).lower()


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _read_local(path: str, max_bytes: int | None) -> bytes | Unreadable | BaseException:
    """One local file's bytes, examined on the open descriptor before anything is read: opening
    never blocks (a FIFO without a writer opens at once), and a FIFO, device or folder is
    reported, never read. At most ``max_bytes`` + 1 bytes are read."""
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        return _open_failure(path, error)
    try:
        info = os.fstat(descriptor)
        reason = not_regular_reason(info.st_mode) or size_reason(info.st_size, max_bytes)
        if reason:
            return Unreadable(f"{reason}, found when read")
        return _read_up_to(descriptor, None if max_bytes is None else max_bytes + 1)
    except OSError as error:
        return error
    finally:
        os.close(descriptor)


def _read_up_to(descriptor: int, limit: int | None) -> bytes:
    chunks, left = [], limit
    while left is None or left > 0:
        chunk = os.read(descriptor, 1 << 20 if left is None else min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        if left is not None:
            left -= len(chunk)
    return b"".join(chunks)


def _open_failure(path: str, error: OSError) -> Unreadable | BaseException:
    """A file that cannot even be opened: say why if it is the file's own kind."""
    if error.errno == errno.ELOOP:
        return Unreadable("symbolic link loop")
    if error.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):  # a socket, a device without a driver
        try:
            reason = not_regular_reason(os.stat(path).st_mode)
        except OSError:
            reason = None
        if reason:
            return Unreadable(f"{reason}, found when read")
    return error


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
