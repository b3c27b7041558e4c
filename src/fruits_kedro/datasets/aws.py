"""What the driver and the executors need to reach S3 the same way.

Nothing here carries credentials in the code or the configuration: boto3 and s3fs find
them through the standard AWS chain (environment variables, ``AWS_PROFILE`` /
``AWS_SHARED_CREDENTIALS_FILE``, the instance role on EMR). ``AWS_ENDPOINT_URL`` points
both at any S3-compatible server (MinIO, moto, Ceph) instead of AWS.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# Settings that say *where* S3 is and *which* identity to use, never a secret themselves.
AWS_ROUTING_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_EC2_METADATA_DISABLED",
)
AWS_SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def is_local_path(url: str) -> bool:
    import fsspec

    return fsspec.utils.get_protocol(str(url)) in ("file", "local")


def executor_aws_environment(
    master: str | None, forward_credentials: bool, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The driver's AWS variables that the executors' Python workers need, by name.

    Routing settings (endpoint, region, profile) always; credentials only where the
    executors have no identity of their own: local workers (this machine's processes), or
    a cluster whose environment asks for it (``fruits.forward_aws_credentials``, e.g. a
    standalone cluster on a workstation). On EMR the executors use the instance role and no
    key travels with the job. Spark's default ``spark.redaction.regex`` hides the secret
    and the session token in its UI and event logs.
    """
    import os

    environ = os.environ if environ is None else environ
    names = list(AWS_ROUTING_VARIABLES)
    if forward_credentials or str(master or "").startswith("local"):
        names += AWS_SECRET_VARIABLES
    return {name: environ[name] for name in names if environ.get(name)}


def describe_s3_error(exc: BaseException, url: str, action: str) -> str | None:
    """A message naming the bucket/key and the fix, for the S3 failures users actually hit.

    Returns None for errors that are not about reaching S3 (the caller re-raises them).
    """
    bucket, key = split_s3_url(url)
    name = type(exc).__name__
    text = str(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (
            f"Cannot {action} s3://{bucket}/{key}: no AWS credentials were found ({text}). "
            "Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (optionally with "
            "AWS_SHARED_CREDENTIALS_FILE), or run where an instance role is attached."
        )
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return f"Cannot {action} s3://{bucket}/{key}: bucket {bucket!r} does not exist (check --params bucket=...)."
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return f"Cannot {action} s3://{bucket}/{key}: access denied to bucket {bucket!r} ({text})."
    if name in UNREACHABLE_ERRORS or isinstance(exc, (ConnectionRefusedError, TimeoutError)):
        import os

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "of AWS"
        return (
            f"Cannot {action} s3://{bucket}/{key}: the S3 endpoint {endpoint} cannot be reached "
            f"({name}: {text}). Check AWS_ENDPOINT_URL and the network."
        )
    return None


# What botocore and aiohttp raise when no S3 server answers at all.
UNREACHABLE_ERRORS = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ClientConnectorError",
    "ServerDisconnectedError",
)


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` (or ``bucket/a/b``) -> (``bucket``, ``a/b``)."""
    rest = str(url).split("://", 1)[-1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def storage_options(credentials: dict[str, Any] | None, fs_args: dict[str, Any] | None) -> dict[str, Any]:
    return {**(fs_args or {}), **(credentials or {})}


def require_bucket(fs, url: str, action: str) -> None:
    """Fail early, naming the bucket, when ``url``'s bucket is missing or unreachable.

    Needed before any write: s3fs *creates* a missing bucket when it opens a file for
    writing or makes a folder, which would turn a typo in ``--params bucket=`` into a new
    bucket instead of an error.
    """
    from kedro.io.core import DatasetError

    if is_local_path(url):
        return
    bucket, _ = split_s3_url(url)
    try:
        # info, not exists: s3fs's exists() answers False for a bucket it could not even
        # ask about (no credentials), which would blame the bucket name.
        fs.info(bucket)
        found = True
    except FileNotFoundError:
        found = False
    except Exception as exc:
        message = describe_s3_error(exc, url, action)
        if message:
            raise DatasetError(message) from exc
        raise
    if not found:
        raise DatasetError(
            f"Cannot {action} {url}: bucket {bucket!r} does not exist or is not visible with these "
            "credentials (check --params bucket=...)."
        )
