"""``NumpyArraysDataset``: a dict of NumPy arrays as one ``.npz`` file, local or on S3."""

from __future__ import annotations

import io
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import storage_options


class NumpyArraysDataset(AbstractDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """Save and load named NumPy arrays (``numpy.savez_compressed``; loading never unpickles).

    Args:
        filepath: The ``.npz`` file: a local path or any fsspec URL (``s3://...``).
        credentials: fsspec credentials (the AWS chain when not given).
        fs_args: Other fsspec arguments.
        metadata: Free-form metadata, ignored by Kedro.

    Examples:
        In ``catalog.yml``::

            classifier_export:
              type: fruits_kedro.datasets.NumpyArraysDataset
              filepath: data/06_models/classifier_export.npz

        In Python::

            >>> dataset = NumpyArraysDataset(filepath="arrays.npz")
            >>> dataset.save({"mean": np.zeros(3)})
            >>> dataset.load()["mean"].shape
            (3,)
    """

    def __init__(
        self,
        *,
        filepath: str,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath)
        self._storage_options = storage_options(credentials, fs_args)
        self.metadata = metadata

    def save(self, data: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{name: np.asarray(array) for name, array in data.items()})
        with fsspec.open(self._filepath, "wb", auto_mkdir=True, **self._storage_options) as handle:
            handle.write(buffer.getvalue())

    def load(self) -> dict[str, np.ndarray]:
        try:
            with fsspec.open(self._filepath, "rb", **self._storage_options) as handle:
                data = handle.read()
        except FileNotFoundError:
            raise DatasetError(f"No arrays at {self._filepath}: run `kedro run --pipelines evaluation` first") from None
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def _exists(self) -> bool:
        fs, path = fsspec.core.url_to_fs(self._filepath, **self._storage_options)
        return fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
