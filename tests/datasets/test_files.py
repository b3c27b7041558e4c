"""Reading photos' bytes: a file's own trouble is reported for that file; the storage's
trouble is retried, then fails loudly, and is never reported as a property of a photo.

S3 runs as a real API (moto) behind a TCP proxy on loopback that resets connections."""

from __future__ import annotations

import os

import boto3
import pytest

from fruits_kedro.datasets.files import StorageUnavailableError, Unreadable, read_files, storage_failure
from tests.fault_proxy import FaultProxy
from tests.s3_server import forget_cached_s3_clients, new_bucket, set_aws_environment

KEYS = [f"photos/{i:02d}.jpg" for i in range(12)]


def test_local_files_are_read_and_a_vanished_one_is_named(tmp_path):
    present = tmp_path / "a.jpg"
    present.write_bytes(b"jpeg bytes")
    out = read_files([str(present), str(tmp_path / "gone.jpg")])
    assert out[0] == b"jpeg bytes"
    assert out[1] == Unreadable("file is gone: listed, then removed before it was read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_local_file_without_read_permission_is_named(tmp_path):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(b"x")
    locked.chmod(0)
    assert read_files([str(locked)]) == [Unreadable("file may not be read (permission denied)")]


@pytest.fixture
def proxied_bucket(s3_endpoint, monkeypatch):
    """A bucket of 12 small objects, reached through a fault-injecting proxy."""
    set_aws_environment(monkeypatch, s3_endpoint)
    bucket = new_bucket()
    client = boto3.session.Session().client("s3")
    for key in KEYS:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    with FaultProxy.for_url(s3_endpoint) as proxy:
        set_aws_environment(monkeypatch, proxy.url)
        yield bucket, proxy
    forget_cached_s3_clients()


def test_s3_objects_are_read_and_a_missing_key_is_named(proxied_bucket):
    bucket, _ = proxied_bucket
    paths = [f"s3://{bucket}/{key}" for key in KEYS] + [f"s3://{bucket}/photos/missing.jpg"]
    out = read_files(paths)
    assert out[:-1] == [key.encode() for key in KEYS]
    assert out[-1] == Unreadable("file is gone: listed, then removed before it was read")


def test_a_few_seconds_of_connection_resets_lose_nothing(proxied_bucket):
    bucket, proxy = proxied_bucket
    paths = [f"s3://{bucket}/{key}" for key in KEYS]
    window = proxy.faults("reset", 3.0)
    out = read_files(paths, retry_seconds=30)
    window.wait(10)
    assert proxy.stats.reset > 0  # the fault hit the reads
    assert out == [key.encode() for key in KEYS]


def test_a_lasting_outage_fails_loudly_naming_the_object(proxied_bucket):
    bucket, proxy = proxied_bucket
    paths = [f"s3://{bucket}/{key}" for key in KEYS]
    proxy.mode = "reset"
    with pytest.raises(
        StorageUnavailableError, match=rf"Cannot read s3://{bucket}/photos/\d\d\.jpg .*the storage still failed"
    ) as caught:
        read_files(paths, retry_seconds=2)
    proxy.mode = "pass"
    assert storage_failure(RuntimeError(f"Py4JJavaError ... {caught.type.__name__}: {caught.value}")) == str(
        caught.value
    )
