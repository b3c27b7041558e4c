"""The upload command against a real S3 API (moto server)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import boto3
import pytest

from fruits_kedro.cloud.upload import UploadError, local_files, main, raw_prefix, upload_folder
from fruits_kedro.datasets.image_folder import ImageFolderDataset


def _objects(bucket: str, prefix: str) -> dict[str, int]:
    client = boto3.session.Session().client("s3")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _body(bucket: str, key: str) -> bytes:
    return boto3.session.Session().client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


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
        "p/raw/Training/Apple Red/0_100.jpg",
        "p/raw/Training/Banana/1_100.jpg",
        "p/raw/Test/Apple Red/2_100.jpg",
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


def _odd_tree(tmp_path: Path) -> bytes:
    """Regular files with odd names, a symlinked class folder, and what must not be read."""
    root = os.fsencode(tmp_path / "fruits")
    outside = os.fsencode(tmp_path / "elsewhere" / "Kiwi")
    for folder in (root + b"/Training/Apple Red", root + b"/Training/K\xe4se", outside, root + b"/Test/Banana"):
        os.makedirs(folder)
    for path, body in [
        (root + b"/Training/Apple Red/a.jpg", b"apple"),
        (root + b"/Training/Apple Red/b\xff.jpg", b"not utf-8"),
        (root + b'/Training/Apple Red/q\r,"x.jpg', b"odd characters"),  # moto refuses LF in a key (404); S3 takes it
        (root + b"/Training/K\xe4se/c.jpg", b"cheese"),
        (outside + b"/k.jpg", b"kiwi"),
    ]:
        with open(path, "wb") as out:
            out.write(body)
    os.symlink(outside, root + b"/Training/Kiwi")
    os.symlink(b"..", root + b"/Training/loop")
    os.mkfifo(root + b"/Test/Banana/fifo.jpg")
    os.symlink(b"/dev/zero", root + b"/Test/Banana/zero.jpg")
    os.symlink(b"missing.jpg", root + b"/Test/Banana/broken.jpg")
    return root


def test_odd_names_are_uploaded_and_special_files_reported(bucket, tmp_path):
    root = _odd_tree(tmp_path)
    lines: list[str] = []
    signal.alarm(60)  # a FIFO opened by mistake would block: fail instead of hanging
    try:
        report = upload_folder(os.fsdecode(root), bucket, "p", write=lines.append)
    finally:
        signal.alarm(0)

    expected = {
        "p/raw/Training/Apple Red/a.jpg": b"apple",
        "p/raw/Training/Apple Red/b%FF.jpg": b"not utf-8",
        'p/raw/Training/Apple Red/q\r,"x.jpg': b"odd characters",
        "p/raw/Training/K%E4se/c.jpg": b"cheese",
        "p/raw/Training/Kiwi/k.jpg": b"kiwi",
    }
    assert _objects(bucket, "p/raw/") == {key: len(body) for key, body in expected.items()}
    assert {key: _body(bucket, key) for key in expected} == expected
    assert report.uploaded == sorted(expected)
    assert report.renamed == ["p/raw/Training/Apple Red/b%FF.jpg", "p/raw/Training/K%E4se/c.jpg"]
    assert report.left_out == {
        "Test/Banana/broken.jpg": "broken symbolic link",
        "Test/Banana/fifo.jpg": "not a regular file (FIFO)",
        "Test/Banana/zero.jpg": "not a regular file (character device)",
        "Training/loop": "symbolic link loop",
    }
    assert "left out Test/Banana/fifo.jpg: not a regular file (FIFO)" in lines
    assert lines[-1].endswith("5 uploaded (0.0 MB), 0 already present, 2 with non-UTF-8 names, 4 left out")
    # The S3 listing gives the same relative paths, hence labels, as the local one.
    local = ImageFolderDataset(path=os.fsdecode(root)).list_files()
    remote = ImageFolderDataset(path=f"s3://{bucket}/p/raw").list_files()
    assert sorted(remote["relative_path"]) == sorted(local[local["skipped"].isna()]["relative_path"])


def test_the_command_does_not_abort_on_odd_names(bucket, tmp_path, capsys):
    root = _odd_tree(tmp_path)
    assert main([os.fsdecode(root), "--bucket", bucket, "--prefix", "p"]) == 0
    out = capsys.readouterr().out
    assert "name not UTF-8, uploaded as p/raw/Training/K%E4se/c.jpg" in out
    assert "left out Training/loop: symbolic link loop" in out


def test_keys_are_the_names_with_only_undecodable_bytes_escaped(tmp_path):
    os.makedirs(tmp_path / "Apple Red")
    for name in (b'q\r\n,"x.jpg', b"%41\xff.jpg"):
        with open(os.fsencode(tmp_path / "Apple Red") + b"/" + name, "wb") as out:
            out.write(b"x")
    files, left_out = local_files(tmp_path, "p/raw/")
    assert [f.key for f in files] == ["p/raw/Apple Red/%41%FF.jpg", 'p/raw/Apple Red/q\r\n,"x.jpg'] and not left_out


def test_a_utf8_name_keeps_its_key_over_an_escaped_byte(tmp_path):
    os.makedirs(tmp_path / "K")
    for name in (b"a%FF.jpg", b"a\xff.jpg"):
        with open(os.fsencode(tmp_path / "K") + b"/" + name, "wb") as out:
            out.write(name)
    files, left_out = local_files(tmp_path, "p/raw/")
    assert [(f.key, os.fsencode(f.path.name), f.renamed) for f in files] == [("p/raw/K/a%FF.jpg", b"a%FF.jpg", False)]
    assert left_out == {"K/a%FF.jpg": "name not UTF-8, and its key is another file's"}
