"""``ImageFolderDataset``: the files under a folder (local or any fsspec URL, e.g. ``s3://``).

Loading lists the files on the driver and returns a Spark DataFrame of their locations
(``path``, ``relative_path``, ``size``, ``modified``) — never their bytes. The bytes are read
later, inside the executors, by :func:`fruits_kedro.datasets.files.read_files`, after sampling has decided which
files are needed: with tens of thousands of photos nothing should pass through the driver.
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import describe_s3_error, forward_aws_environment, is_local_path, require_bucket
from fruits_kedro.datasets.files import Unreadable, read_files

LISTING_COLUMNS = ("path", "relative_path", "size", "modified")


class ImageFolderDataset(AbstractDataset[None, Any]):
    """Lists every file under ``path``; read-only.

    Example catalog entry::

        raw_images:
          type: fruits_kedro.datasets.ImageFolderDataset
          path: data/01_raw/fruits
    """

    def __init__(
        self,
        path: str,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._path = str(path)
        storage_options = {**(fs_args or {}), **(credentials or {})}
        self._protocol = fsspec.utils.get_protocol(self._path)
        self._storage_options = storage_options
        self.metadata = metadata
        # The run's up-front check lists the folder; the run's load then reuses that listing
        # once, instead of listing tens of thousands of objects twice.
        self._pending_listing: pd.DataFrame | None = None

    @property
    def path(self) -> str:
        return self._path

    def _filesystem(self):
        fs, root = fsspec.core.url_to_fs(self._path, **self._storage_options)
        return fs, root.rstrip("/")

    def list_files(self) -> pd.DataFrame:
        """The listing as pandas, sorted by path, so that every run sees the same order."""
        self._pending_listing = self._list_files()
        return self._pending_listing

    def _list_files(self) -> pd.DataFrame:
        fs, root = self._filesystem()
        if is_local_path(self._path):
            entries = self._find_local(fs, root)
        else:
            entries = self._find_remote(fs, root)
        rows = []
        for name, info in sorted(entries.items()):
            relative = posixpath.relpath(name, root) if self._protocol != "file" else _local_relpath(name, root)
            if any(part.startswith(".") for part in relative.split("/")):
                continue  # hidden files and folders (.DS_Store, .sample_complete, ._*) are not photos
            rows.append(
                {
                    "path": self._full_uri(fs, name),
                    "relative_path": relative,
                    "size": int(info.get("size") or 0),
                    "modified": _modified(info),
                }
            )
        return pd.DataFrame(rows, columns=list(LISTING_COLUMNS))

    def _find_local(self, fs, root: str) -> dict[str, Any]:
        if not fs.exists(root):
            raise DatasetError(f"Image folder not found: {self._path}")
        if not fs.isdir(root):
            raise DatasetError(f"Image folder is not a folder: {self._path}")
        return fs.find(root, detail=True, withdirs=False)

    def _find_remote(self, fs, root: str) -> dict[str, Any]:
        """Object stores have no folders: an empty or mistyped prefix simply lists nothing,
        so say which bucket and prefix were searched and how to fill them."""
        require_bucket(fs, self._path, "list images under")
        fs.invalidate_cache(root)  # objects uploaded since the last listing must be seen
        try:
            entries = fs.find(root, detail=True, withdirs=False)
        except Exception as exc:
            message = describe_s3_error(exc, self._path, "list images under")
            if message:
                raise DatasetError(message) from exc
            raise
        if not entries:
            raise DatasetError(
                f"No files under {self._path}/ (empty or mistyped prefix). Upload the images with: "
                f"python -m fruits_kedro.cloud.upload LOCAL_DIR --bucket BUCKET --prefix PREFIX"
            )
        return entries

    def _full_uri(self, fs, name: str) -> str:
        if self._protocol == "file":
            return name
        return fs.unstrip_protocol(name)

    def load(self):
        from pyspark.sql import types as T

        from fruits_kedro.spark import get_spark

        listing, self._pending_listing = self._pending_listing, None
        if listing is None:
            listing = self._list_files()
        spark = get_spark()
        if not is_local_path(self._path):
            # read_files runs in the executors: they must reach the same endpoint.
            forward_aws_environment(spark.sparkContext)
        schema = T.StructType(
            [
                T.StructField("path", T.StringType(), False),
                T.StructField("relative_path", T.StringType(), False),
                T.StructField("size", T.LongType(), False),
                T.StructField("modified", T.StringType(), True),
            ]
        )
        return spark.createDataFrame(listing, schema=schema)

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: upload images to {self._path} instead")

    def _exists(self) -> bool:
        fs, root = self._filesystem()
        return fs.isdir(root)

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "protocol": self._protocol}


def _local_relpath(name: str, root: str) -> str:
    return posixpath.relpath(name.replace("\\", "/"), root.replace("\\", "/"))


def _modified(info: dict[str, Any]) -> str | None:
    """A change marker: mtime for files, ETag (or LastModified) for object stores."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"')
    return None


def read_file_bytes(paths: pd.Series) -> pd.Series:
    """:func:`fruits_kedro.datasets.files.read_files` as a pandas UDF's function: each file's
    bytes, None for a file that is gone or may not be read (storage failures raise)."""
    contents = read_files(paths.tolist())
    return pd.Series([None if isinstance(data, Unreadable) else data for data in contents], dtype=object)
