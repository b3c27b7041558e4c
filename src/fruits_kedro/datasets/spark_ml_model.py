"""``SparkMLModelDataset``: a fitted ``pyspark.ml`` PipelineModel, saved with Spark ML's own writer.

kedro-datasets has no dataset for Spark ML models. Spark writes the model as a folder
(metadata JSON + Parquet stages) through Hadoop, so the path may be local or any URL
the cluster's Hadoop reaches (``s3://`` on EMR).
"""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError


class SparkMLModelDataset(AbstractDataset[Any, Any]):
    """Save and load a ``pyspark.ml.PipelineModel``.

    Args:
        filepath: The model's folder: a local path or a URL the cluster's Hadoop reaches.
        metadata: Free-form metadata, ignored by Kedro.

    Examples:
        In ``catalog.yml``::

            classifier_model:
              type: fruits_kedro.datasets.spark_ml_model.SparkMLModelDataset
              filepath: data/06_models/classifier_pipeline_model

        In Python::

            >>> dataset = SparkMLModelDataset(filepath="data/06_models/classifier_pipeline_model")
            >>> dataset.save(pipeline_model)
            >>> reloaded = dataset.load()
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = str(filepath)
        self.metadata = metadata

    def save(self, data) -> None:
        from pyspark.ml import PipelineModel

        from fruits_kedro.spark import get_spark

        if not isinstance(data, PipelineModel):
            raise DatasetError(
                f"{type(self).__name__} ({self._filepath}) saves a pyspark.ml PipelineModel, got {type(data).__name__}"
            )
        get_spark()  # the writer needs the project's session, started with its configuration
        data.write().overwrite().save(self._filepath)

    def load(self):
        from pyspark.ml import PipelineModel

        from fruits_kedro.spark import get_spark

        get_spark()
        if not self._exists():
            raise DatasetError(
                f"No Spark ML model at {self._filepath}: run `kedro run --pipelines evaluation` first "
                "to train and save it."
            )
        return PipelineModel.load(self._filepath)

    def _exists(self) -> bool:
        import fsspec

        # Spark ML keeps the model's description in <filepath>/metadata: no folder, no model.
        fs, path = fsspec.core.url_to_fs(self._filepath)
        return fs.exists(f"{path.rstrip('/')}/metadata")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
