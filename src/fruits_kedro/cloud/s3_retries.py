"""How every S3 client of the project retries: bounded, with exponential backoff.

The settings go into fsspec's global defaults for the ``s3`` protocol, which every
``s3fs.S3FileSystem`` created afterwards starts from (ours and kedro-datasets' alike), on
the driver and in each executor's Python workers (the functions that run there call
:func:`use_s3_retry_settings` first). Settings given explicitly (a catalog entry's
``fs_args``, ``fsspec.config.conf`` set by the user) take precedence.

Two layers retry each request: botocore (``config_kwargs.retries``; "standard" mode retries
connection errors, timeouts, 500/502/503/504 and throttling such as SlowDown, with jittered
exponential backoff) and s3fs (its ``retries`` class attribute, for errors botocore hands back). The reads of
photos add a third, per batch, up to a deadline (:func:`fruits_kedro.datasets.files.read_files`).
A task that still fails is retried by Spark (``spark.task.maxFailures``, or ``local[*,4]``).
"""

from __future__ import annotations

from typing import Any

S3_RETRY_SETTINGS: dict[str, Any] = {
    "config_kwargs": {
        "retries": {"max_attempts": 4, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 30,
    },
}


_applied = False


def use_s3_retry_settings() -> dict[str, Any]:
    """Make :data:`S3_RETRY_SETTINGS` the defaults of new S3 filesystems in this process;
    returns the defaults now in force. Cheap and idempotent: called before each batch."""
    global _applied
    import fsspec.config

    current = fsspec.config.conf.setdefault("s3", {})
    if _applied:
        return current
    config_kwargs = {**S3_RETRY_SETTINGS["config_kwargs"], **current.get("config_kwargs", {})}
    current.update({**S3_RETRY_SETTINGS, **current, "config_kwargs": config_kwargs})
    _applied = True
    return current
