"""A real S3 API for the tests: moto in server mode, over HTTP, on a free local port.

Nothing is patched: boto3 and s3fs (on the driver and in Spark's Python workers) talk to
the server through ``AWS_ENDPOINT_URL`` exactly as they would talk to AWS or MinIO.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DUMMY_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # Never fall back to a developer's real profile or to the EC2 metadata service.
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/aws/config",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3/EMR server; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def set_aws_environment(monkeypatch, endpoint_url: str) -> None:
    """Point every AWS client of this process (and of Spark's local workers) at the server."""
    for name, value in DUMMY_AWS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    forget_cached_s3_clients()


def forget_cached_s3_clients() -> None:
    """s3fs and boto3 cache clients with the credentials they first found: drop them after
    the environment changes."""
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    boto3.DEFAULT_SESSION = None


def new_bucket(prefix: str = "fruits-test") -> str:
    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=name)
    return name
