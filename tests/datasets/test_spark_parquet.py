"""SparkParquetFsspecDataset on local disk and on a real S3 API (moto server)."""

from __future__ import annotations

import json

import fsspec
import pyarrow.parquet as pq
import pytest
from kedro.io.core import DatasetError

from fruits_kedro.datasets import SparkParquetFsspecDataset
from fruits_kedro.datasets.spark_parquet import row_count

SCHEMA = "path string, label string, features array<float>, pc_1 float"


def _frame(spark, n: int, partitions: int, offset: int = 0):
    rows = [(f"img/{i:04d}.jpg", f"class_{i % 3}", [float(i), i / 2.0], float(i + offset)) for i in range(n)]
    return spark.createDataFrame(rows, SCHEMA).repartition(partitions)


def _sorted_rows(frame):
    return sorted((r.path, r.label, list(r.features), r.pc_1) for r in frame.collect())


def _data_files(fs, root: str) -> list[str]:
    fs.invalidate_cache(root)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root) if not p.rsplit("/", 1)[-1].startswith(("_", ".")))


def test_local_round_trip_commits_one_file_per_nonempty_partition(spark, tmp_path):
    target = tmp_path / "features.parquet"
    dataset = SparkParquetFsspecDataset(filepath=str(target))
    frame = _frame(spark, 50, partitions=4)

    dataset.save(frame)

    manifest = json.loads((target / "_SUCCESS").read_text())
    assert manifest["rows"] == 50
    assert sorted(manifest["files"]) == _data_files(fsspec.filesystem("file"), str(target))
    assert 1 <= len(manifest["files"]) <= 4
    assert not (target / "_temporary").exists()
    loaded = dataset.load()
    assert loaded.schema == frame.schema
    assert loaded.rdd.getNumPartitions() == len(manifest["files"])
    assert _sorted_rows(loaded) == _sorted_rows(frame)
    assert row_count(loaded) == 50  # from the manifest
    assert row_count(loaded.where("pc_1 < 10")) == 10  # a derived frame is counted
    # Plain pyarrow reads the folder too (it skips the _-prefixed manifest).
    assert pq.read_table(str(target)).num_rows == 50
    # Text is dictionary-encoded; floats, which rarely repeat, are not.
    part = pq.ParquetFile(str(target / manifest["files"][0])).metadata.row_group(0)
    encodings = {part.column(i).path_in_schema: part.column(i).encodings for i in range(part.num_columns)}
    assert "RLE_DICTIONARY" in encodings["path"] and "RLE_DICTIONARY" in encodings["label"]
    assert "RLE_DICTIONARY" not in encodings["features.list.element"]
    assert "RLE_DICTIONARY" not in encodings["pc_1"]


def test_overwrite_replaces_previous_parts(spark, tmp_path):
    target = tmp_path / "t.parquet"
    dataset = SparkParquetFsspecDataset(filepath=str(target))
    dataset.save(_frame(spark, 30, partitions=3))
    first = json.loads((target / "_SUCCESS").read_text())["files"]

    dataset.save(_frame(spark, 10, partitions=2, offset=100))

    second = json.loads((target / "_SUCCESS").read_text())["files"]
    assert not set(first) & set(second)
    assert _data_files(fsspec.filesystem("file"), str(target)) == sorted(second)
    assert sorted(r.pc_1 for r in dataset.load().collect()) == [float(i + 100) for i in range(10)]


def test_empty_frame_keeps_its_schema(spark, tmp_path):
    dataset = SparkParquetFsspecDataset(filepath=str(tmp_path / "empty.parquet"))
    frame = _frame(spark, 5, partitions=2).where("pc_1 < 0")
    dataset.save(frame)
    loaded = dataset.load()
    assert loaded.schema == frame.schema
    assert loaded.count() == 0


def test_load_without_manifest_names_the_path(spark, tmp_path):
    target = tmp_path / "never_saved.parquet"
    with pytest.raises(DatasetError, match="never_saved.parquet.*_SUCCESS is missing"):
        SparkParquetFsspecDataset(filepath=str(target)).load()


def test_some_committed_files_load_alone_and_others_are_refused(spark, tmp_path):
    target = tmp_path / "features.parquet"
    dataset = SparkParquetFsspecDataset(filepath=str(target))
    dataset.save(_frame(spark, 40, partitions=4))
    files = json.loads((target / "_SUCCESS").read_text())["files"]
    expected = sorted(pq.read_table(target / files[0]).column("path").to_pylist())
    assert sorted(row.path for row in dataset.load_files(files[:1]).collect()) == expected
    with pytest.raises(DatasetError, match="not committed files: part-9"):
        dataset.load_files([files[0], "part-9.parquet"])


def test_only_overwrite_mode(tmp_path):
    with pytest.raises(DatasetError, match="mode"):
        SparkParquetFsspecDataset(filepath=str(tmp_path / "x"), save_args={"mode": "append"})


def test_s3_round_trip_written_by_the_executors(spark, aws_env):
    from tests.s3_server import new_bucket

    bucket = new_bucket()
    uri = f"s3://{bucket}/fruits/features/image_features.parquet"
    dataset = SparkParquetFsspecDataset(filepath=uri)
    frame = _frame(spark, 40, partitions=3)

    dataset.save(frame)

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    root = uri.removeprefix("s3://")
    names = fs.ls(root)
    assert f"{root}/_SUCCESS" in names
    assert not any("_temporary" in n for n in fs.find(root))
    assert _sorted_rows(dataset.load()) == _sorted_rows(frame)
    assert dataset.exists()

    smaller = _frame(spark, 6, partitions=1, offset=7)
    dataset.save(smaller)

    manifest = json.loads(fs.cat_file(f"{root}/_SUCCESS"))
    assert _data_files(fs, root) == sorted(manifest["files"])  # the first version's parts are gone
    assert _sorted_rows(dataset.load()) == _sorted_rows(smaller)


def test_s3_missing_bucket_is_named(spark, aws_env):
    dataset = SparkParquetFsspecDataset(filepath="s3://no-such-bucket-fruits/features/x.parquet")
    with pytest.raises(DatasetError, match="no-such-bucket-fruits"):
        dataset.save(_frame(spark, 4, partitions=1))
    with pytest.raises(DatasetError, match="no-such-bucket-fruits"):
        dataset.load()


def test_arguments_are_keyword_only_as_in_kedro_datasets():
    with pytest.raises(TypeError):
        SparkParquetFsspecDataset("features.parquet")  # type: ignore[misc]
