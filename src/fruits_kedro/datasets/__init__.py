"""Custom Kedro datasets of fruits_kedro.

Each dataset's module is imported when first named (``fruits_kedro.datasets.X``, as the
catalog does): the executors' Python workers import modules of this package for the
functions their tasks run, and must not pay for the other datasets' dependencies (pandas
alone slows a worker's start).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "ImageFolderDataset": "image_folder",
    "ImageStreamDataset": "image_stream",
    "MicroBatchQueryDataset": "image_stream",
    "NumpyArraysDataset": "numpy_arrays",
    "OutputSetDataset": "output_set",
    "SparkCSVFileDataset": "spark_csv",
    "SparkParquetFsspecDataset": "spark_parquet",
    "StreamOutputsDataset": "stream_outputs",
}

__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
