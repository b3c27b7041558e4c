"""Custom Kedro datasets of fruits_kedro."""

from fruits_kedro.datasets.image_folder import ImageFolderDataset
from fruits_kedro.datasets.spark_csv import SparkCSVFileDataset
from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset

__all__ = ["ImageFolderDataset", "SparkCSVFileDataset", "SparkParquetFsspecDataset"]
