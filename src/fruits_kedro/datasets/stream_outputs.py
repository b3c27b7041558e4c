"""``StreamOutputsDataset``: where the stream keeps its tables and its commit record, and which
outputs of the batch runs' set they stand for (:mod:`fruits_kedro.streaming.store`)."""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import storage_options


class StreamOutputsDataset(AbstractDataset[None, Any]):
    """The stream's outputs; loading gives the :class:`~fruits_kedro.streaming.store.StreamStore`
    that the micro-batches write through (nothing is read until the stream starts).

    Args:
        path: The output set's folder (which holds ``current_outputs.json``).
        folder: The stream's own folder, relative to ``path``.
        members: The batch outputs the stream's tables stand for, by their names in
            ``current_outputs.json`` (relative to ``path``): ``features``, ``rejected``, ``pca``,
            ``pca_csv``, ``pca_report``.
        credentials: fsspec credentials (the AWS chain when not given).
        fs_args: Other fsspec arguments.
        metadata: Any arbitrary metadata; ignored by Kedro.

    Examples:
        Using the YAML API (``conf/base/catalog.yml``)::

            stream_outputs:
              type: fruits_kedro.datasets.StreamOutputsDataset
              path: data
              folder: 04_feature/stream
              members:
                features: 04_feature/image_features.parquet
                rejected: 02_intermediate/rejected_images.parquet
                pca: 04_feature/image_features_pca.parquet
                pca_csv: 04_feature/image_features_pca.csv
                pca_report: 08_reporting/pca_explained_variance.json
    """

    def __init__(
        self,
        *,
        path: str,
        folder: str,
        members: dict[str, str],
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        from fruits_kedro.streaming.store import StreamStore

        self._store = StreamStore(str(path), str(folder), dict(members), storage_options(credentials, fs_args))
        self.metadata = metadata

    def load(self):
        return self._store

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is written by the stream's micro-batches, not saved")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._store.output_set.root, "folder": self._store.folder, "members": self._store.members}
