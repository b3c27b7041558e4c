"""One run at a time per set of outputs: a lock beside ``current_outputs.json``.

Two runs writing one set would break each other: the second one's start-up clean-up removes
the first one's run folder, and the first then fails while saving. So a run holds the lock of
every set it writes, from its start to its end, and a second run is refused at once, with one
line naming the run that holds it.

- On a local disk, ``current_outputs.lock`` is locked with ``flock``: the operating system
  releases it when the process ends, however it ends, so a lock is never stale.
- On S3, the lock is the object ``current_outputs.lock``, created by a conditional PUT
  (``If-None-Match: *``: only one of two runs can create it), holding the run id, host, pid
  and start time, and rewritten every :data:`HEARTBEAT_SECONDS` while the run lives. A lock
  whose heartbeat is older than :data:`STALE_AFTER_SECONDS`, or whose run was on this host
  and its process is gone, is stale: the next run takes it over, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

import fsspec
from kedro.io.core import DatasetError

from fruits_kedro.datasets.aws import describe_s3_error, require_bucket, split_s3_url

logger = logging.getLogger(__name__)

LOCK_NAME = "current_outputs.lock"
HEARTBEAT_SECONDS = 60.0
STALE_AFTER_SECONDS = 600.0

# The locks this process holds, by URL: a run interrupted outside Kedro's hooks releases them.
_HELD: dict[str, RunLock] = {}
_HELD_LOCK = threading.Lock()


class RunLockedError(RuntimeError):
    """Another run holds the lock of the set of outputs this run writes."""


def _now() -> datetime:
    return datetime.now(tz=UTC)


def holder_record(run_id: str) -> dict[str, Any]:
    """What a lock says about its run."""
    now = _now().isoformat(timespec="seconds")
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "started": now, "heartbeat": now}


def acquire(root: str, run_id: str, options: dict[str, Any] | None = None) -> RunLock:
    """Hold the lock of the set of outputs under ``root`` for ``run_id``, or raise :class:`RunLockedError`."""
    url = f"{root.rstrip('/')}/{LOCK_NAME}"
    fs, path = fsspec.core.url_to_fs(url, **(options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        lock: RunLock = LocalRunLock(path, url, run_id)
    elif protocol in ("s3", "s3a"):
        lock = S3RunLock(fs, url, run_id)
    else:
        raise DatasetError(f"Cannot lock {url}: run locks are made on a local disk or S3 only")
    with _HELD_LOCK:
        _HELD[url] = lock
    return lock


def held_runs() -> list[str]:
    """The ids of the runs whose locks this process holds."""
    with _HELD_LOCK:
        return sorted({lock.run_id for lock in _HELD.values()})


def release_all() -> None:
    """Release every lock this process holds (an interrupted run)."""
    with _HELD_LOCK:
        locks = list(_HELD.values())
    for lock in locks:
        lock.release()


def _refusal(url: str, holder: dict[str, Any] | None, clearing: str) -> RunLockedError:
    if holder and holder.get("run_id"):
        who = (
            f"run {holder['run_id']} (pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')})"
        )
    else:
        who = "another run"
    return RunLockedError(f"Another run is writing these outputs: {who} holds {url}; wait for it to end, {clearing}")


class RunLock:
    """A held lock; :meth:`release` it when the run ends (twice is harmless)."""

    url: str
    run_id: str

    def release(self) -> None:
        with _HELD_LOCK:
            if _HELD.get(self.url) is self:
                del _HELD[self.url]
        self._release()

    def _release(self) -> None:
        raise NotImplementedError


class LocalRunLock(RunLock):
    """``flock`` on ``current_outputs.lock``; the file stays, with the last holder's record."""

    def __init__(self, path: str, url: str, run_id: str) -> None:
        import fcntl

        self.url, self.run_id = url, run_id
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.pread(self._fd, 4096, 0))
            os.close(self._fd)
            self._fd = None
            raise _refusal(url, holder, "or stop it: the lock ends with its process.") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(holder_record(run_id)).encode(), 0)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class S3RunLock(RunLock):
    """A conditional-put lock object, rewritten by a heartbeat thread while held."""

    def __init__(self, fs, url: str, run_id: str) -> None:
        self.url, self.run_id = url, run_id
        self._fs = fs
        self._bucket, self._key = split_s3_url(url)
        self._record = holder_record(run_id)
        require_bucket(fs, url, "lock the outputs with")  # s3fs would not say which bucket is missing
        try:
            self._etag = self._create()
        except OSError as exc:
            message = describe_s3_error(exc, url, "lock the outputs with")
            if message:
                raise DatasetError(message) from exc
            raise
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"run-lock-{run_id}", daemon=True)
        self._heartbeat.start()

    def _create(self) -> str:
        for _ in range(3):
            try:
                return self._put(IfNoneMatch="*")
            except FileExistsError:
                pass
            holder, etag, modified = self._read()
            if holder is None:  # released meanwhile
                continue
            reason = _staleness(holder, modified)
            if reason is None:
                raise _refusal(
                    self.url,
                    holder,
                    f"or, if it is gone, let the lock go stale ({STALE_AFTER_SECONDS / 60:.0f} min after its last "
                    f"heartbeat, {holder.get('heartbeat')}) or remove it: aws s3 rm {self.url}",
                )
            logger.warning("Taking over the lock of run %s at %s: %s", holder.get("run_id"), self.url, reason)
            try:
                self._fs.call_s3("delete_object", Bucket=self._bucket, Key=self._key, IfMatch=etag)
            except OSError:  # another run took it over first: the next try says which
                pass
        holder, _, _ = self._read()
        raise _refusal(self.url, holder, f"or, if it is gone, remove the lock: aws s3 rm {self.url}")

    def _put(self, **condition: str) -> str:
        body = json.dumps(self._record).encode()
        answer = self._fs.call_s3("put_object", Bucket=self._bucket, Key=self._key, Body=body, **condition)
        return answer["ETag"]

    def _read(self) -> tuple[dict[str, Any] | None, str | None, datetime | None]:
        try:
            data, etag, modified = fsspec.asyn.sync(self._fs.loop, self._get)
        except FileNotFoundError:
            return None, None, None
        return _parse(data) or {}, etag, modified

    async def _get(self) -> tuple[bytes, str, datetime | None]:
        answer = await self._fs._call_s3("get_object", Bucket=self._bucket, Key=self._key)
        body = answer["Body"]
        try:
            return await body.read(), answer["ETag"], answer.get("LastModified")
        finally:
            body.close()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._record["heartbeat"] = _now().isoformat(timespec="seconds")
            try:
                self._etag = self._put(IfMatch=self._etag)
            except _s3_errors() as exc:  # S3 down a while, or the lock was taken over: said, not fatal
                logger.warning("Could not renew the run lock %s (%s: %s)", self.url, type(exc).__name__, exc)

    def _release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._heartbeat.join(timeout=5)
        try:
            self._fs.call_s3("delete_object", Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
        except _s3_errors() as exc:  # taken over as stale, or S3 unreachable: the lock ages out
            logger.warning("Could not remove the run lock %s (%s: %s)", self.url, type(exc).__name__, exc)


def _s3_errors() -> tuple[type[Exception], ...]:
    """What a failed S3 call raises: s3fs translates answers into OSError; botocore raises its
    own errors when no answer came (endpoint unreachable, connection closed)."""
    from botocore.exceptions import BotoCoreError

    return (OSError, BotoCoreError)


def _staleness(holder: dict[str, Any], modified: datetime | None) -> str | None:
    """Why a lock's run is gone, or None while it may still be running."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _alive(holder["pid"]):
            return f"its process {holder['pid']} on this host has ended"
    try:
        beat = datetime.fromisoformat(str(holder.get("heartbeat")))
    except ValueError:
        beat = modified
    if beat is not None and (_now() - beat).total_seconds() > STALE_AFTER_SECONDS:
        return f"no heartbeat since {beat.isoformat(timespec='seconds')}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(data: bytes | None) -> dict[str, Any] | None:
    try:
        record = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None
