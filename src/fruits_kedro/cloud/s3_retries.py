"""How every S3 client of the project retries: bounded, with exponential backoff.

The settings go into fsspec's global defaults for the ``s3`` protocol, which every
``s3fs.S3FileSystem`` created afterwards starts from (ours and kedro-datasets' alike), on
the driver and in each executor's Python workers (the functions that run there call
:func:`use_s3_retry_settings` first). Settings given explicitly (a catalog entry's
``fs_args``, ``fsspec.config.conf`` set by the user) take precedence.

botocore retries each request ("standard" mode: connection resets and refusals, timeouts,
500/502/503/504 and throttling such as SlowDown, with jittered exponential backoff), five
attempts in all, so a lasting outage fails a call within seconds and an endpoint that is not
there within about 30 s. s3fs's own retry loop is turned down to one attempt: it would
multiply botocore's attempts for timeouts and throttling (nested, for ranged reads). The
reads of photos retry the failed part of each batch on top, with backoff, up to a deadline
(:func:`fruits_kedro.datasets.files.read_files`); a task that still fails is retried by Spark
(``spark.task.maxFailures``, or ``local[*,4]``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

S3_RETRY_SETTINGS: dict[str, Any] = {
    "config_kwargs": {
        "retries": {"total_max_attempts": 5, "mode": "standard"},
        "connect_timeout": 3,
        "read_timeout": 10,
    },
}
S3FS_RETRIES = 1


_S3_PROTOCOLS = frozenset({"s3", "s3a", "s3n"})
_config_applied = False
_s3fs_configured = False


def use_s3_retry_settings(*urls: str) -> dict[str, Any]:
    """Make :data:`S3_RETRY_SETTINGS` the defaults of new S3 filesystems in this process;
    returns the defaults now in force. Cheap and idempotent: called before each batch, with
    the URLs it is about to open. s3fs itself is imported (to turn its own retries down) only
    for an S3 URL, when no URL is given, or where it is already imported: a local run's Python
    workers never pay for its import."""
    global _config_applied, _s3fs_configured
    import fsspec.config

    current = fsspec.config.conf.setdefault("s3", {})
    if not _config_applied:
        config_kwargs = {**S3_RETRY_SETTINGS["config_kwargs"], **current.get("config_kwargs", {})}
        current.update({**S3_RETRY_SETTINGS, **current, "config_kwargs": config_kwargs})
        _config_applied = True
    if not _s3fs_configured and (not urls or "s3fs" in sys.modules or any(map(is_s3_url, urls))):
        try:
            import s3fs

            s3fs.S3FileSystem.retries = S3FS_RETRIES  # a class attribute: no keyword sets it
            import fsspec.asyn

            fsspec.asyn.get_loop().set_exception_handler(_quiet_orphaned_connection_errors)
        except ImportError:  # no S3 support installed: nothing to configure
            pass
        _s3fs_configured = True
    return current


def is_s3_url(url: str) -> bool:
    """Whether ``url`` names an object on S3 (``s3://``, ``s3a://``, ``s3n://``)."""
    protocol, separator, _ = str(url).partition("://")
    return bool(separator) and protocol.lower() in _S3_PROTOCOLS


def _quiet_orphaned_connection_errors(loop, context: dict[str, Any]) -> None:
    """The handler of s3fs's event loop for errors no task awaited.

    aiohttp leaves the task that writes a request's body unawaited when the connection drops
    while it waits for "100 Continue" (as S3 uploads do); the request itself fails and botocore
    retries or raises it, so the orphaned copy of that error is logged at DEBUG, not as an
    ERROR with a traceback that would bury the run's own message."""
    error = context.get("exception")
    if isinstance(error, ConnectionError) and "never retrieved" in str(context.get("message", "")):
        logger.debug("A dropped S3 connection's unawaited task: %r", error)
        return
    loop.default_exception_handler(context)
