import numpy as np
import pandas as pd

from fruits_kedro.datasets.spark_csv import SparkCSVFileDataset


def test_writes_one_pandas_readable_csv_sorted_and_atomically(spark, tmp_path):
    rows = [(f"p{i:04d}", float(i) / 3) for i in reversed(range(2500))]
    frame = spark.createDataFrame(rows, "path string, pc_1 double").repartition(4)
    target = tmp_path / "out" / "features.csv"
    dataset = SparkCSVFileDataset(str(target), save_args={"sort_by": ["path"], "rows_per_chunk": 700})
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
    target = tmp_path / "rejected.csv"
    SparkCSVFileDataset(str(target)).save(frame)
    assert target.read_text().strip() == "path,reason"


def test_values_read_back_as_written(spark, tmp_path):
    # Quotes and commas inside a field, a null, float32 scores: what pandas reads is what was saved.
    values = np.float32([0.1, -1e-8, 123456.7, 3.4028235e38])
    rows = [(f'photo "{i}", copy', None if i == 1 else "ok", float(v)) for i, v in enumerate(values)]
    frame = spark.createDataFrame(rows, "path string, reason string, pc_1 float").repartition(3)
    target = tmp_path / "scores.csv"
    SparkCSVFileDataset(str(target), save_args={"sort_by": ["path"], "rows_per_chunk": 1}).save(frame)
    read_back = pd.read_csv(target)
    assert read_back["path"].tolist() == [row[0] for row in rows]
    assert read_back["reason"].isna().tolist() == [False, True, False, False]
    np.testing.assert_array_equal(read_back["pc_1"].to_numpy().astype(np.float32), values)
