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

from typing import Any

S3_RETRY_SETTINGS: dict[str, Any] = {
    "config_kwargs": {
        "retries": {"total_max_attempts": 5, "mode": "standard"},
        "connect_timeout": 3,
        "read_timeout": 10,
    },
}
S3FS_RETRIES = 1


_applied = False


def use_s3_retry_settings() -> dict[str, Any]:
    """Make :data:`S3_RETRY_SETTINGS` the defaults of new S3 filesystems in this process;
    returns the defaults now in force. Cheap and idempotent: called before each batch."""
    global _applied
    import fsspec.config

    current = fsspec.config.conf.setdefault("s3", {})
    if _applied:
        return current
    try:
        import s3fs

        s3fs.S3FileSystem.retries = S3FS_RETRIES  # a class attribute: no keyword sets it
    except ImportError:  # no S3 support installed: nothing to configure
        pass
    config_kwargs = {**S3_RETRY_SETTINGS["config_kwargs"], **current.get("config_kwargs", {})}
    current.update({**S3_RETRY_SETTINGS, **current, "config_kwargs": config_kwargs})
    _applied = True
    return current
