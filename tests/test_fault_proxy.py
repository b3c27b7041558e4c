"""The fault-injecting proxy of tests/fault_proxy.py, in front of a real moto server."""

from __future__ import annotations

import socket
import time

import pytest

from tests.fault_proxy import FaultProxy
from tests.s3_server import moto_server, new_bucket, set_aws_environment

pytest.importorskip("moto")


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def proxy(endpoint):
    with FaultProxy.for_url(endpoint) as running:
        yield running


def _s3(url: str):
    import boto3
    from botocore.config import Config

    # No retries, short timeouts: what the proxy does shows as it is.
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)
    return boto3.session.Session().client("s3", endpoint_url=url, config=config)


def _talk(proxy: FaultProxy) -> bytes:
    """One raw HTTP request through the proxy; the reply's first bytes."""
    with socket.create_connection(proxy.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return sock.recv(64)


def test_requests_pass_through(monkeypatch, endpoint, proxy):
    set_aws_environment(monkeypatch, endpoint)
    bucket = new_bucket()
    s3 = _s3(proxy.url)
    s3.put_object(Bucket=bucket, Key="a/b.bin", Body=b"x" * 300_000)
    assert s3.get_object(Bucket=bucket, Key="a/b.bin")["Body"].read() == b"x" * 300_000
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/b.bin"]
    assert proxy.stats.accepted >= 1 and proxy.stats.reset == 0
    assert _talk(proxy).startswith(b"HTTP/1.1 ")


def test_reset_mode_resets_new_and_open_connections(proxy):
    open_connection = socket.create_connection(proxy.address, timeout=5)
    for _ in range(100):  # until the proxy has it
        if proxy.stats.open:
            break
        time.sleep(0.01)

    proxy.mode = "reset"
    with open_connection, pytest.raises(ConnectionResetError):
        open_connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        open_connection.recv(64)

    # On loopback the RST can come before connect() returns: connect() raises it then.
    try:
        with socket.create_connection(proxy.address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = sock.recv(64)
    except ConnectionResetError:
        reply = None
    assert not reply  # reset, or at least nothing but an empty read
    assert proxy.stats.reset == 2

    proxy.mode = "pass"
    assert _talk(proxy).startswith(b"HTTP/1.1 ")


def test_refuse_mode_refuses_then_listens_again_on_the_same_port(proxy):
    port = proxy.port
    proxy.mode = "refuse"
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=5)
    refused = proxy.stats.refused
    assert refused is None or refused >= 3

    proxy.mode = "pass"
    assert proxy.port == port
    assert _talk(proxy).startswith(b"HTTP/1.1 ")


def test_botocore_sees_the_faults(monkeypatch, endpoint, proxy):
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    set_aws_environment(monkeypatch, endpoint)
    s3 = _s3(proxy.url)
    s3.list_buckets()  # a pooled keep-alive connection, reset at the switch
    proxy.mode = "reset"
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        s3.list_buckets()
    proxy.mode = "refuse"
    with pytest.raises(EndpointConnectionError):
        s3.list_buckets()
    proxy.mode = "pass"
    s3.list_buckets()
    assert proxy.stats.reset >= 1


def test_a_timed_fault_ends_by_itself(proxy):
    started = time.monotonic()
    window = proxy.faults("refuse", 0.5)
    assert proxy.mode == "refuse"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=5)
    assert window.wait(timeout=5)
    assert proxy.mode == "pass"
    assert 0.4 < time.monotonic() - started < 3
    assert _talk(proxy).startswith(b"HTTP/1.1 ")

    later = proxy.faults("reset", 5.0, start_in=0.2)
    assert proxy.mode == "pass"
    assert later.started.wait(timeout=5) and proxy.mode == "reset"
    later.cancel()
    assert later.ended.is_set() and proxy.mode == "pass"


def test_close_stops_everything(endpoint):
    proxy = FaultProxy.for_url(endpoint).start()
    idle = socket.create_connection(proxy.address, timeout=5)
    proxy.mode = "refuse"
    proxy.faults("reset", 30)
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 5
    assert proxy.stats.open == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=5)
    with idle:
        try:
            assert idle.recv(1) == b""
        except ConnectionResetError:
            pass


def test_reset_on_data_resets_once_the_request_is_sent(proxy):
    proxy.mode = "reset_on_data"
    with socket.create_connection(proxy.address, timeout=5) as sock:  # connect() succeeds
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(64)
    assert proxy.stats.reset == 1
    proxy.mode = "pass"
    assert _talk(proxy).startswith(b"HTTP/1.1 ")
