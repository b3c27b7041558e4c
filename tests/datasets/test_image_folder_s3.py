"""ImageFolderDataset on a real S3 API (moto server): listing on the driver, bytes read by
the executors, which must reach the same endpoint even when Spark started before it was set."""

from __future__ import annotations

import os

import boto3
import pytest
from kedro.io.core import DatasetError
from pyspark.sql import functions as F

from fruits_kedro.datasets import ImageFolderDataset
from fruits_kedro.datasets.image_folder import FOLDER_MARKER, HIDDEN, read_file_bytes
from tests.s3_server import new_bucket

FILES = {"Training/Apple Red/0_100.jpg": b"apple", "Test/Banana/1_100.jpg": b"banana!", ".hidden/x.jpg": b"x"}
# Zero-byte keys ending in "/": the "folders" that consoles and some tools create.
FOLDER_MARKERS = ("Training/", "Training/Dir.jpg/")


@pytest.fixture
def image_bucket(aws_env) -> str:
    bucket = new_bucket()
    client = boto3.session.Session().client("s3")
    for key, body in FILES.items():
        client.put_object(Bucket=bucket, Key=f"fruits/raw/{key}", Body=body)
    for key in FOLDER_MARKERS:
        client.put_object(Bucket=bucket, Key=f"fruits/raw/{key}", Body=b"")
    return bucket


def test_listing_and_executor_reads(spark, image_bucket, aws_env):
    frame = ImageFolderDataset(path=f"s3://{image_bucket}/fruits/raw").load()

    assert {r.relative_path: r.skipped for r in frame.where("skipped IS NOT NULL").collect()} == {
        ".hidden/x.jpg": HIDDEN,
        "Training/": FOLDER_MARKER,
        "Training/Dir.jpg/": FOLDER_MARKER,
    }
    rows = {r.relative_path: r for r in frame.where("skipped IS NULL").collect()}
    assert set(rows) == {"Training/Apple Red/0_100.jpg", "Test/Banana/1_100.jpg"}
    marker = frame.where("relative_path = 'Training/Dir.jpg/'").first()
    assert marker.path == f"s3://{image_bucket}/fruits/raw/Training/Dir.jpg/"
    frame = frame.where("skipped IS NULL")
    assert rows["Test/Banana/1_100.jpg"].path == f"s3://{image_bucket}/fruits/raw/Test/Banana/1_100.jpg"
    assert rows["Test/Banana/1_100.jpg"].size == len(b"banana!")
    # The session fixture started Spark before aws_env set AWS_ENDPOINT_URL: the workers see
    # it only because the dataset forwarded it.
    endpoint_in_workers = F.udf(lambda _: os.environ.get("AWS_ENDPOINT_URL"), "string")
    assert {r[0] for r in frame.repartition(2).select(endpoint_in_workers("path")).collect()} == {aws_env}
    read_bytes = F.pandas_udf(read_file_bytes, "binary")
    contents = {
        r.relative_path: bytes(r.content)
        for r in frame.select("relative_path", read_bytes("path").alias("content")).collect()
    }
    assert contents == {k: v for k, v in FILES.items() if not k.startswith(".")}
    # An object deleted after listing reads as None, and its batch-mates still arrive.
    gone = frame.select("path").union(
        spark.createDataFrame([(f"s3://{image_bucket}/fruits/raw/Test/Banana/gone.jpg",)], "path string")
    )
    read = {
        r.path.rsplit("/", 1)[-1]: r.content
        for r in gone.coalesce(1).select("path", read_bytes("path").alias("content")).collect()
    }
    assert read == {
        "0_100.jpg": FILES["Training/Apple Red/0_100.jpg"],
        "1_100.jpg": FILES["Test/Banana/1_100.jpg"],
        "gone.jpg": None,
    }


def test_missing_bucket_and_empty_prefix_are_named(spark, image_bucket):
    with pytest.raises(DatasetError, match="bucket 'no-such-bucket-images' does not exist"):
        ImageFolderDataset(path="s3://no-such-bucket-images/fruits/raw").load()
    with pytest.raises(DatasetError, match=f"No files under s3://{image_bucket}/other/raw/"):
        ImageFolderDataset(path=f"s3://{image_bucket}/other/raw").load()
