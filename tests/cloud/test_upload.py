"""The upload command against a real S3 API (moto server)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from fruits_kedro.cloud.upload import UploadError, main, raw_prefix, upload_folder


def _objects(bucket: str, prefix: str) -> dict[str, int]:
    client = boto3.session.Session().client("s3")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "fruits"
    for split, label, name, body in [
        ("Training", "Apple Red", "0_100.jpg", b"a" * 10),
        ("Training", "Banana", "1_100.jpg", b"b" * 20),
        ("Test", "Apple Red", "2_100.jpg", b"c" * 30),
    ]:
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (root / split / label / name).write_bytes(body)
    (root / ".sample_complete").write_text("marker")
    return root


def test_raw_prefix():
    assert raw_prefix("fruits") == "fruits/raw/"
    assert raw_prefix("/a/b/") == "a/b/raw/"


def test_second_upload_transfers_nothing(bucket, generated_sample):
    lines: list[str] = []
    first = upload_folder(generated_sample, bucket, "fruits", workers=8, write=lines.append, progress_every=50)
    local = sorted(p for p in generated_sample.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(first.uploaded) == len(local) and not first.skipped
    stored = _objects(bucket, "fruits/raw/")
    assert stored == {"fruits/raw/" + p.relative_to(generated_sample).as_posix(): p.stat().st_size for p in local}
    assert any(line.startswith(f"[{len(local)}/{len(local)}]") for line in lines)  # progress reached the end

    second = upload_folder(generated_sample, bucket, "fruits", workers=8, write=lines.append)

    assert second.uploaded == [] and second.bytes_uploaded == 0
    assert len(second.skipped) == len(local)
    assert lines[-1].endswith(f"0 uploaded (0.0 MB), {len(local)} already present")


def test_changed_file_is_uploaded_again_and_class_names_are_kept(bucket, tmp_path):
    root = _tree(tmp_path)
    upload_folder(root, bucket, "p", write=lambda _: None)
    assert set(_objects(bucket, "p/raw/")) == {
        "p/raw/Training/Apple Red/0_100.jpg", "p/raw/Training/Banana/1_100.jpg", "p/raw/Test/Apple Red/2_100.jpg"
    }
    (root / "Training" / "Banana" / "1_100.jpg").write_bytes(b"longer now" * 5)

    again = upload_folder(root, bucket, "p", write=lambda _: None)

    assert again.uploaded == ["p/raw/Training/Banana/1_100.jpg"]


def test_missing_bucket_is_named(aws_env, tmp_path, capsys):
    assert main([str(_tree(tmp_path)), "--bucket", "no-such-bucket-upload", "--prefix", "p"]) == 1
    assert "Bucket 'no-such-bucket-upload' does not exist" in capsys.readouterr().err


def test_missing_credentials_are_reported_with_the_bucket(aws_env, monkeypatch, tmp_path):
    from tests.s3_server import forget_cached_s3_clients

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    forget_cached_s3_clients()
    with pytest.raises(UploadError, match=r"No AWS credentials.*s3://some-bucket/"):
        upload_folder(_tree(tmp_path), "some-bucket", "p", write=lambda _: None)


def test_empty_local_folder(aws_env, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UploadError, match="No files to upload"):
        upload_folder(tmp_path / "empty", "b", "p", write=lambda _: None)
