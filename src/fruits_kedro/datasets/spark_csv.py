"""``SparkCSVFileDataset``: a Spark DataFrame saved as ONE CSV file that pandas can read.

Spark's own CSV writer makes a folder of part files (which ``pandas.read_csv`` cannot open)
and needs a Hadoop connector for ``s3://``. Here the executors format the rows as CSV text,
which is streamed to the driver one partition at a time (``toLocalIterator``), so driver
memory stays flat in the number of rows, and written through fsspec, which reaches local
disk and S3 alike. The file is written under a temporary name and moved into place at the
end: a reader never sees half a file.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import require_bucket


class SparkCSVFileDataset(AbstractDataset[Any, pd.DataFrame]):
    """Save a Spark DataFrame as a single CSV; load it back as pandas.

    Args:
        filepath: The CSV file: a local path or any fsspec URL (``s3://...``).
        save_args: ``sort_by`` (columns to order the rows by), ``rows_per_chunk`` (rows
            formatted per piece of text an executor sends, default 5000), ``float_format``.
        load_args: Passed to ``pandas.read_csv``.
        credentials: fsspec credentials (the AWS chain when not given).
        fs_args: Other fsspec arguments.
        metadata: Free-form metadata, ignored by Kedro.

    Examples:
        In ``catalog.yml``::

            image_features_pca_csv:
              type: fruits_kedro.datasets.SparkCSVFileDataset
              filepath: data/04_feature/image_features_pca.csv
              save_args: {sort_by: [path]}

        In Python::

            >>> dataset = SparkCSVFileDataset(filepath="features.csv", save_args={"sort_by": ["path"]})
            >>> dataset.save(spark_frame)
            >>> dataset.load().shape
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {"sort_by": None, "rows_per_chunk": 5000, "float_format": None}

    def __init__(
        self,
        *,
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
        name = path.rsplit("/", 1)[-1]
        _remove_leftovers(fs, parent, name)
        temp_path = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        columns = frame.columns
        text_chunks = frame.mapInPandas(_csv_text(chunk_rows, self._save_args["float_format"]), "text string")
        try:
            with fs.open(temp_path, "w", newline="", encoding="utf-8") as handle:
                pd.DataFrame(columns=columns).to_csv(handle, index=False)
                for chunk in text_chunks.toLocalIterator(prefetchPartitions=True):
                    handle.write(chunk.text)
            fs.mv(temp_path, path)
        except BaseException:
            if fs.exists(temp_path):
                fs.rm(temp_path)
            raise

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


def _csv_text(chunk_rows: int, float_format: str | None):
    """mapInPandas function: the partition's rows as CSV text, ``chunk_rows`` rows per chunk.

    The executors format the rows, in parallel; the driver only appends text.
    """

    def to_csv_text(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pending: list[pd.DataFrame] = []
        rows = 0
        for frame in frames:
            pending.append(frame)
            rows += len(frame)
            if rows >= chunk_rows:
                yield _as_text(pending, float_format)
                pending, rows = [], 0
        if rows:
            yield _as_text(pending, float_format)

    return to_csv_text


def _as_text(frames: list[pd.DataFrame], float_format: str | None) -> pd.DataFrame:
    # Every text field quoted: minimal quoting leaves a lone CR bare, which readers take for a row end.
    text = pd.concat(frames, ignore_index=True).to_csv(
        index=False, header=False, float_format=float_format, quoting=csv.QUOTE_NONNUMERIC
    )
    return pd.DataFrame({"text": [text]})


def _remove_leftovers(fs, parent: str, name: str) -> None:
    """Temporary files of killed saves of this CSV: hidden, but never kept."""
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{32}}\.tmp")
    fs.invalidate_cache(parent)
    try:
        entries = fs.ls(parent, detail=False)
    except FileNotFoundError:  # an object store's empty prefix
        return
    for entry in entries:
        if pattern.fullmatch(entry.rstrip("/").rsplit("/", 1)[-1]):
            fs.rm(entry)
