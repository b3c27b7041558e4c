"""Cloud tests: a fresh bucket on the loopback S3 server (see ``s3_endpoint`` in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.s3_server import new_bucket


@pytest.fixture
def bucket(aws_env) -> str:
    return new_bucket()
