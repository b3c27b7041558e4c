"""Cloud tests: a moto server (S3 + EMR APIs over HTTP) and the AWS environment pointing at it."""

from __future__ import annotations

import pytest

from tests.s3_server import moto_server, new_bucket, set_aws_environment


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint) -> str:
    set_aws_environment(monkeypatch, s3_endpoint)
    return s3_endpoint


@pytest.fixture
def bucket(aws_env) -> str:
    return new_bucket()
