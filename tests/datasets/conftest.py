from __future__ import annotations

import pytest

from tests.s3_server import moto_server, set_aws_environment


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint) -> str:
    set_aws_environment(monkeypatch, s3_endpoint)
    return s3_endpoint
