"""Reading photos' bytes: a file's own trouble is reported for that file; the storage's
trouble is retried, then fails loudly, and is never reported as a property of a photo.

S3 runs as a real API (moto) behind a TCP proxy on loopback that resets connections."""

from __future__ import annotations

import os

import boto3
import pytest

from fruits_kedro.datasets.files import StorageUnavailableError, Unreadable, read_files, storage_failure
from tests.datasets.test_image_folder_special_files import deadline
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


SIXTY_MB = 60 * 2**20
LIMIT = 50 * 2**20


def test_what_replaced_a_listed_file_is_checked_where_it_is_read(tmp_path):
    """A FIFO would block the open, /dev/zero would never end, 60 MB would pass the limit."""
    photo, fifo, zero, grown, folder = (tmp_path / name for name in ("a.jpg", "f.jpg", "z.jpg", "g.jpg", "d.jpg"))
    photo.write_bytes(b"jpeg bytes")
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    grown.write_bytes(b"jpeg")
    os.truncate(grown, SIXTY_MB)  # sparse: no 60 MB written
    folder.mkdir()
    with deadline(10):
        out = read_files([str(p) for p in (photo, fifo, zero, grown, folder)], max_bytes=LIMIT)
    assert out == [
        b"jpeg bytes",
        Unreadable("not a regular file (FIFO), found when read"),
        Unreadable("not a regular file (character device), found when read"),
        Unreadable(f"larger than max_file_bytes ({LIMIT} bytes), found when read"),
        Unreadable("not a regular file (folder), found when read"),
    ]


def test_a_file_that_grows_while_it_is_read_is_read_no_further_than_the_limit(tmp_path, monkeypatch):
    grown = tmp_path / "g.jpg"
    grown.write_bytes(b"x" * 1000)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    assert read_files([str(grown)], max_bytes=100) == [
        Unreadable("larger than max_file_bytes (100 bytes), found when read")
    ]
    assert read_files([str(grown)]) == [b"x" * 1000]  # no limit: the whole file


def test_s3_reads_stop_at_the_limit_and_an_empty_object_is_empty(s3_endpoint, monkeypatch):
    set_aws_environment(monkeypatch, s3_endpoint)
    bucket = new_bucket()
    client = boto3.session.Session().client("s3")
    for key, body in (("a.jpg", b"x" * 100), ("big.jpg", b"x" * 101), ("empty.jpg", b"")):
        client.put_object(Bucket=bucket, Key=key, Body=body)
    out = read_files([f"s3://{bucket}/{key}" for key in ("a.jpg", "big.jpg", "empty.jpg")], max_bytes=100)
    forget_cached_s3_clients()
    assert out == [b"x" * 100, Unreadable("larger than max_file_bytes (100 bytes), found when read"), b""]


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
