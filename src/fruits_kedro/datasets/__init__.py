"""Custom Kedro datasets of fruits_kedro."""

from fruits_kedro.datasets.image_folder import ImageFolderDataset
from fruits_kedro.datasets.spark_csv import SparkCSVFileDataset

__all__ = ["ImageFolderDataset", "SparkCSVFileDataset"]
