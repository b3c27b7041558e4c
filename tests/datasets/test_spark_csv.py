import uuid

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fruits_kedro.datasets.spark_csv import SparkCSVFileDataset


def test_writes_one_pandas_readable_csv_sorted_and_atomically(spark, tmp_path):
    rows = [(f"p{i:04d}", float(i) / 3) for i in reversed(range(2500))]
    frame = spark.createDataFrame(rows, "path string, pc_1 double").repartition(4)
    target = tmp_path / "out" / "features.csv"
    dataset = SparkCSVFileDataset(filepath=str(target), save_args={"sort_by": ["path"], "rows_per_chunk": 700})
    dataset.save(frame)
    read_back = pd.read_csv(target)
    assert read_back.columns.tolist() == ["path", "pc_1"]
    assert len(read_back) == 2500
    assert read_back["path"].is_monotonic_increasing
    assert read_back["pc_1"].iloc[3] == 1.0
    assert [p.name for p in target.parent.iterdir()] == ["features.csv"]  # no temporary left behind
    pd.testing.assert_frame_equal(dataset.load(), read_back)


def test_empty_frame_gives_a_header_only_csv(spark, tmp_path):
    frame = spark.createDataFrame([], "path string, reason string")
    for name, save_args in (("unsorted", {}), ("sorted", {"sort_by": ["path"]})):
        target = tmp_path / name / "rejected.csv"
        SparkCSVFileDataset(filepath=str(target), save_args=save_args).save(frame)
        assert target.read_text().strip() == "path,reason"


def test_values_read_back_as_written(spark, tmp_path):
    # Quotes and commas inside a field, a null, float32 scores: what pandas reads is what was saved.
    values = np.float32([0.1, -1e-8, 123456.7, 3.4028235e38])
    rows = [(f'photo "{i}", copy', None if i == 1 else "ok", float(v)) for i, v in enumerate(values)]
    frame = spark.createDataFrame(rows, "path string, reason string, pc_1 float").repartition(3)
    target = tmp_path / "scores.csv"
    SparkCSVFileDataset(filepath=str(target), save_args={"sort_by": ["path"], "rows_per_chunk": 1}).save(frame)
    read_back = pd.read_csv(target)
    assert read_back["path"].tolist() == [row[0] for row in rows]
    assert read_back["reason"].isna().tolist() == [False, True, False, False]
    np.testing.assert_array_equal(read_back["pc_1"].to_numpy().astype(np.float32), values)


# File names as a file system allows them (no '/' or NUL), CR, LF, quotes and commas included.
NAMES = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('\r\n",; \t')),  # what CSV readers trip over, drawn often
        st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, min_size=1, max_size=6, unique=True))
def test_any_file_name_gives_exactly_one_row_per_image(spark, tmp_path, names):
    paths = [f"/photos/Training/Kiwi/{name}.jpg" for name in names]
    frame = spark.createDataFrame(
        [(p, "Kiwi", i * 0.5) for i, p in enumerate(paths)], "path string, label string, pc_1 double"
    )
    target = tmp_path / f"{uuid.uuid4().hex}.csv"
    SparkCSVFileDataset(filepath=str(target), save_args={"sort_by": ["path"]}).save(frame.repartition(2))
    read_back = pd.read_csv(target, keep_default_na=False)
    assert len(read_back) == len(paths)
    assert read_back["path"].tolist() == sorted(paths)
    assert read_back["label"].tolist() == ["Kiwi"] * len(paths)


def test_a_save_removes_the_temporary_files_of_killed_saves(spark, tmp_path):
    target = tmp_path / "features.csv"
    killed = tmp_path / f".features.csv.{uuid.uuid4().hex}.tmp"  # what a kill -9 mid-write leaves
    killed.write_text("path\nhalf")
    other = tmp_path / f".other.csv.{uuid.uuid4().hex}.tmp"  # another dataset's: not this save's business
    other.write_text("x")
    SparkCSVFileDataset(filepath=str(target)).save(spark.createDataFrame([("a",)], "path string"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["features.csv", other.name])


def test_arguments_are_keyword_only_as_in_kedro_datasets():
    with pytest.raises(TypeError):
        SparkCSVFileDataset("features.csv")  # type: ignore[misc]


def test_a_loaded_parquet_dataset_gives_the_csv_of_the_same_rows(spark, tmp_path):
    from fruits_kedro.datasets.arrow_source import arrow_source, with_constant_column
    from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset

    rows = [(f"p{(i * 37) % 997:04d}", None if i % 5 == 0 else "Kiwi", float(np.float32(i / 7))) for i in range(997)]
    frame = spark.createDataFrame(rows, "path string, label string, pc_1 float").repartition(6)
    parquet = SparkParquetFsspecDataset(filepath=str(tmp_path / "pca.parquet"))
    parquet.save(frame)
    loaded = with_constant_column(parquet.load(), "run_id", "r1")
    assert arrow_source(loaded) is not None
    # Small runs: each task writes several sorted runs, which the driver merges.
    args = {"sort_by": ["path"], "rows_per_chunk": 50}
    SparkCSVFileDataset(filepath=str(tmp_path / "a.csv"), save_args=args).save(loaded)
    SparkCSVFileDataset(filepath=str(tmp_path / "b.csv"), save_args=args).save(
        with_constant_column(frame, "run_id", "r1")
    )
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a, b)
    assert a.columns.tolist() == ["path", "label", "pc_1", "run_id"] and len(a) == 997
    assert a["path"].is_monotonic_increasing and a["label"].isna().sum() == 200
    np.testing.assert_array_equal(
        a.sort_values("path")["pc_1"].to_numpy(np.float32),
        np.float32([r[2] for r in sorted(rows)]),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "pca.parquet"]


def test_unsorted_csv_keeps_every_row(spark, tmp_path):
    frame = spark.createDataFrame([(i,) for i in range(300)], "id long").repartition(4)
    target = tmp_path / "rows.csv"
    SparkCSVFileDataset(filepath=str(target), save_args={"rows_per_chunk": 40}).save(frame)
    assert sorted(pd.read_csv(target)["id"]) == list(range(300))


def test_a_save_removes_the_parts_of_killed_saves(spark, tmp_path):
    killed = tmp_path / f".features.csv.{uuid.uuid4().hex}.parts"
    killed.mkdir()
    (killed / "00000-abc-00000.csv").write_text("half")
    SparkCSVFileDataset(filepath=str(tmp_path / "features.csv")).save(spark.createDataFrame([("a",)], "path string"))
    assert [p.name for p in tmp_path.iterdir()] == ["features.csv"]


def test_new_rows_merge_into_an_indexed_csv_as_if_it_were_written_whole(spark, tmp_path):
    rows = [(f'p{(i * 37) % 1009:04d}, "q"', None if i % 7 == 0 else float(i) / 3) for i in range(1009)]
    old, new = rows[:1000], rows[1000:]
    schema = "path string, pc_1 double"
    args = {"sort_by": ["path"], "rows_per_chunk": 90, "index": True}
    first = tmp_path / "c1" / "scores.csv"
    SparkCSVFileDataset(filepath=str(first), save_args=args).save(spark.createDataFrame(old, schema).repartition(3))
    assert sorted(p.name for p in first.parent.iterdir()) == ["scores.csv", "scores.index.arrow"]
    merged = tmp_path / "c2" / "scores.csv"
    dataset = SparkCSVFileDataset(filepath=str(merged), save_args={**args, "merge_with": str(first)})
    dataset.save(spark.createDataFrame(new[:5], schema))
    again = tmp_path / "c3" / "scores.csv"  # the merged file's own index serves the next merge
    SparkCSVFileDataset(filepath=str(again), save_args={**args, "merge_with": str(merged)}).save(
        spark.createDataFrame(new[5:], schema)
    )
    whole = tmp_path / "whole.csv"
    SparkCSVFileDataset(filepath=str(whole), save_args={"sort_by": ["path"]}).save(spark.createDataFrame(rows, schema))
    assert again.read_bytes() == whole.read_bytes()
    assert len(pd.read_csv(first)) == 1000 and len(pd.read_csv(merged)) == 1005
    import pyarrow as pa

    with pa.memory_map(str(again.parent / "scores.index.arrow")) as source:
        index = pa.ipc.open_file(source).read_all()
    assert index.column("path").to_pylist() == sorted(r[0] for r in rows)
    assert sum(index.column("bytes").to_pylist()) + len(b"path,pc_1\n") == len(again.read_bytes())


def test_a_merge_refuses_a_csv_of_other_columns_or_without_index(spark, tmp_path):
    from kedro.io.core import DatasetError

    plain = tmp_path / "plain.csv"
    SparkCSVFileDataset(filepath=str(plain), save_args={"sort_by": ["path"]}).save(
        spark.createDataFrame([("a", 1.0)], "path string, pc_1 double")
    )
    args = {"sort_by": ["path"], "index": True, "merge_with": str(plain)}
    with pytest.raises(DatasetError, match="plain.csv has other columns"):
        SparkCSVFileDataset(filepath=str(tmp_path / "x.csv"), save_args=args).save(
            spark.createDataFrame([("b", 1.0, 2.0)], "path string, pc_1 double, pc_2 double")
        )
    with pytest.raises(DatasetError, match="plain.csv has no index"):
        SparkCSVFileDataset(filepath=str(tmp_path / "y.csv"), save_args=args).save(
            spark.createDataFrame([("b", 1.0)], "path string, pc_1 double")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.csv"]
