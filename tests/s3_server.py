"""A real S3 API for the tests: moto in server mode, over HTTP, on a free local port.

No client is patched: boto3 and s3fs (on the driver and in Spark's Python workers) talk to
the server through ``AWS_ENDPOINT_URL`` exactly as they would talk to AWS or MinIO.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    """Start moto's S3/EMR server in a process of its own; yield its endpoint URL.

    Its own process: the server's CPU per request does not queue behind the test process's
    interpreter lock, nor the test's uploads behind the server's.
    """
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.s3_server"],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,  # closed when this process ends, however it ends: the server then exits
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = server.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the moto server did not start (exit code {server.wait(timeout=30)})")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _serve() -> None:
    """The server process: moto's application on a free loopback port, printed once it listens."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Dispatcher(DomainDispatcherApplication):
        """Routes remembered: moto lists its package folder and tries every service's URLs per request."""

        routes: dict = {}

        def get_backend_for_host(self, host):
            if host not in self.routes:
                self.routes[host] = super().get_backend_for_host(host)
            return self.routes[host]

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    app = Dispatcher(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)  # what moto writes into the URLs it returns
    print(server.port, flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads the pipe after the port: it must not fill
    server.serve_forever()


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


if __name__ == "__main__":
    _serve()
