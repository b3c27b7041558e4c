"""``SparkCSVFileDataset``: a Spark DataFrame saved as ONE CSV file that pandas can read.

Spark's own CSV writer makes a folder of part files (which ``pandas.read_csv`` cannot open)
and needs a Hadoop connector for ``s3://``. This dataset streams the DataFrame to the driver
one partition at a time (``toLocalIterator``), so driver memory stays flat in the number of
rows, and writes through fsspec, which reaches local disk and S3 alike. The file is written
under a temporary name and moved into place at the end: a reader never sees half a file.
"""

from __future__ import annotations

import uuid
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import require_bucket


class SparkCSVFileDataset(AbstractDataset[Any, pd.DataFrame]):
    """Save a Spark DataFrame as a single CSV; load it back as pandas.

    Example catalog entry::

        image_features_pca_csv:
          type: fruits_kedro.datasets.SparkCSVFileDataset
          filepath: data/04_feature/image_features_pca.csv
          save_args: {sort_by: [path]}
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {"sort_by": None, "rows_per_chunk": 5000, "float_format": None}

    def __init__(
        self,
        filepath: str,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath)
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self._load_args = dict(load_args or {})
        self._storage_options = {**(fs_args or {}), **(credentials or {})}
        self.metadata = metadata

    def _fs(self):
        return fsspec.core.url_to_fs(self._filepath, **self._storage_options)

    def save(self, data) -> None:
        fs, path = self._fs()
        require_bucket(fs, self._filepath, "write CSV to")  # s3fs would create a missing bucket
        sort_by = self._save_args["sort_by"]
        frame = data.orderBy(*sort_by) if sort_by else data
        chunk_rows = int(self._save_args["rows_per_chunk"])
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        fs.makedirs(parent, exist_ok=True)
        temp_path = f"{parent}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.tmp"
        columns = frame.columns
        try:
            with fs.open(temp_path, "w", newline="", encoding="utf-8") as handle:
                pd.DataFrame(columns=columns).to_csv(handle, index=False)
                chunk: list = []
                for row in frame.toLocalIterator(prefetchPartitions=True):
                    chunk.append(tuple(row))
                    if len(chunk) >= chunk_rows:
                        self._write_chunk(handle, chunk, columns)
                        chunk = []
                if chunk:
                    self._write_chunk(handle, chunk, columns)
            fs.mv(temp_path, path)
        except BaseException:
            if fs.exists(temp_path):
                fs.rm(temp_path)
            raise

    def _write_chunk(self, handle, rows: list, columns: list[str]) -> None:
        pd.DataFrame.from_records(rows, columns=columns).to_csv(
            handle, index=False, header=False, float_format=self._save_args["float_format"]
        )

    def load(self) -> pd.DataFrame:
        fs, path = self._fs()
        if not fs.exists(path):
            raise DatasetError(f"CSV not found: {self._filepath}")
        with fs.open(path, "r", encoding="utf-8") as handle:
            return pd.read_csv(handle, **self._load_args)

    def _exists(self) -> bool:
        fs, path = self._fs()
        return fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "save_args": self._save_args}
