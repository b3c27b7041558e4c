"""PCA on Spark: the fewest principal components that explain a share of the variance.

The executors compute the count, mean and covariance in one pass (numpy per task, merged in
the cluster); the driver decomposes the d x d covariance once, which gives every component's
share of the total variance, hence the whole cumulative curve and k (:func:`choose_k`). The
scores are projected by Arrow functions in the executors (:func:`project_columns`); as a
Spark ML stage that saves and loads in a ``PipelineModel``, the projection is
:class:`CentredProjection`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.ml.moments import (
    MOMENTS_SCHEMA,
    NO_ROWS,
    Moments,
    merge_moments,
    moments_of,
    partition_moments,
    partition_projection,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SCORE_ID_COLUMNS",
    "CentredProjection",
    "PcaFit",
    "fit_from_moments",
    "Moments",
    "choose_k",
    "column_moments",
    "fit_principal_components",
    "merge_moments",
    "moments_of",
    "principal_components",
    "project_columns",
]


SCORE_ID_COLUMNS = ("path", "label", "split")  # what identifies a row of scores


def choose_k(explained_variance: list[float] | np.ndarray, threshold: float) -> int:
    """Smallest k whose cumulative explained variance reaches ``threshold``.

    Ratios that sum to less than the threshold (rounding, or a capped fit) give all of them.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"dimensionality_reduction.variance_threshold must be in (0, 1], got {threshold!r}")
    ratios = np.asarray(explained_variance, dtype=float)
    if ratios.size == 0 or not np.all(np.isfinite(ratios)):
        raise ValueError("explained variance is empty or not finite")
    cumulative = np.cumsum(ratios)
    # A tolerance of a few ulps: 0.95 must be reached by a cumulative sum printed as 0.95.
    reached = np.nonzero(cumulative >= threshold - 1e-9)[0]
    return int(reached[0]) + 1 if reached.size else int(ratios.size)


def fit_principal_components(vectors: DataFrame, input_col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean and principal axes of a vector or array column (nulls skipped).

    Returns (the d column means, every axis's explained-variance ratio in decreasing order,
    the axes as columns of a d x d matrix): :func:`principal_components` of
    :func:`column_moments`.
    """
    return principal_components(column_moments(vectors, input_col))


def column_moments(frame: DataFrame, column: str) -> Moments:
    """Count, mean and scatter matrix of a vector or array column's non-null rows, in one pass.

    Each task computes the moments of its rows with numpy (BLAS, float64), the partials are
    merged in the executors (``treeAggregate``), and only the total reaches the driver. The
    count and the width come with them: no other pass over the rows. An array column is read
    by the Arrow function in the tasks that read a Parquet dataset's parts (no Spark rows
    between them; :mod:`fruits_kedro.datasets.arrow_source`). Spark's
    ``RowMatrix.computeCovariance`` does the same sums row by row (no native BLAS on a
    pip-installed Spark), after a separate pass for the mean.
    """
    from pyspark.ml.linalg import VectorUDT

    from fruits_kedro.datasets.arrow_source import map_in_arrow

    if isinstance(frame.schema[column].dataType, VectorUDT):
        frame = frame.select(vector_to_array(F.col(column), dtype="float64").alias(column))
    cores = frame.sparkSession.sparkContext.defaultParallelism
    # One partial per core, not per partition: each is d x d.
    partials = map_in_arrow(frame, partition_moments(column), MOMENTS_SCHEMA, partitions=cores)
    if cores <= DRIVER_MERGED_PARTIALS:
        rows = partials.collect()
        return functools.reduce(merge_moments, map(_moments_of_row, rows), NO_ROWS)
    return partials.rdd.map(_moments_of_row).treeAggregate(NO_ROWS, merge_moments, merge_moments)


DRIVER_MERGED_PARTIALS = 8  # more partials (d x d each) are merged in the executors first


def _moments_of_row(row) -> Moments:
    return row.n, np.frombuffer(row.mean), np.frombuffer(row.scatter)


def principal_components(moments: Moments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, explained-variance ratios in decreasing order, axes as columns) of the moments.

    LAPACK's ``eigh`` decomposes the d x d covariance on the driver. Spark ML's ``PCA.fit``
    decomposes with a general SVD that, without a native LAPACK, gives spectra that differ
    from run to run (docs/performance.md); ``eigh`` is exact and stable for this symmetric case.
    """
    n, mean, scatter = moments
    d = mean.size
    covariance = scatter.reshape(d, d) / max(n - 1, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)  # tiny negatives are rounding
    eigenvectors = eigenvectors[:, order]
    # An axis's sign is arbitrary; fix it (largest loading positive) so reruns agree exactly.
    signs = np.sign(eigenvectors[np.abs(eigenvectors).argmax(axis=0), np.arange(eigenvectors.shape[1])])
    eigenvectors = eigenvectors * np.where(signs == 0, 1.0, signs)
    total = eigenvalues.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = eigenvalues / total if total > 0 else np.full_like(eigenvalues, np.nan)
    return mean, ratios, eigenvectors


@dataclass(frozen=True)
class PcaFit:
    """A fitted PCA: the d column means, the d x k axes kept, and the variance report."""

    mean: np.ndarray
    axes: np.ndarray
    report: dict[str, Any]

    @property
    def k(self) -> int:
        return int(self.axes.shape[1])


def fit_from_moments(moments: Moments, threshold: float, max_components: int | None = None) -> PcaFit:
    """The fewest principal axes of ``moments`` that explain ``threshold`` of the variance.

    Raises:
        ValueError: fewer than 2 rows, or rows without variance: PCA is undefined.
    """
    n_images, n_input = moments[0], moments[1].size
    if n_images == 0:
        raise ValueError("No image features to reduce: every image was rejected or the input folder is empty")
    if n_images == 1:
        raise ValueError("PCA needs at least 2 images: only 1 image has features (variance is undefined)")
    # Rank is at most n-1 after centring: components beyond it carry no variance.
    k_max = max(1, min(n_input, n_images - 1, max_components or n_input))
    mean, ratios, components = principal_components(moments)
    if not np.all(np.isfinite(ratios)):
        raise ValueError(
            f"The {n_images} feature vector(s) have no variance (all identical): PCA is undefined. "
            "Use more, or more varied, images."
        )
    ratios = ratios[:k_max]
    k = choose_k(ratios, threshold)
    cumulative = np.cumsum(ratios)
    logger.info(
        "PCA: %d images x %d features -> k=%d components explain %.4f (threshold %.2f)",
        n_images,
        n_input,
        k,
        cumulative[k - 1],
        threshold,
    )
    report = {
        "k": k,
        "threshold": threshold,
        "n_input_features": n_input,
        "n_images": n_images,
        "explained_variance_at_k": float(cumulative[k - 1]),
        "explained_variance": [float(r) for r in ratios],
        "cumulative": [float(c) for c in cumulative],
    }
    return PcaFit(mean, components[:, :k], report)


def project_columns(
    frame: DataFrame, column: str, mean: np.ndarray, axes: np.ndarray, keep: tuple[str, ...], prefix: str = "pc_"
) -> DataFrame:
    """``keep`` and the scores ``<prefix>1 .. <prefix>k`` (float) of the non-null rows of an
    array column: ``(x - mean) @ axes`` in float64, stored as float32.

    An Arrow function, run where a Parquet dataset's parts are read (no Spark rows of the d
    inputs or of the k scores; :mod:`fruits_kedro.datasets.arrow_source`).
    """
    from pyspark.sql import types as T

    from fruits_kedro.datasets.arrow_source import map_in_arrow

    k = axes.shape[1]
    names = [f"{prefix}{i + 1}" for i in range(k)]
    schema = T.StructType(
        [frame.schema[c] for c in keep] + [T.StructField(name, T.FloatType(), True) for name in names]
    )
    projection = partition_projection(column, np.asarray(mean, float), np.asarray(axes, float), keep, names)
    return map_in_arrow(frame, projection, schema)


class CentredProjection(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """``x -> (x - mean) @ axes``: a vector column onto k principal axes, as a Spark ML stage.

    Spark ML's ``PCAModel`` cannot be built from given axes through public APIs, and its own
    fit is unstable here (:func:`fit_principal_components`), so the project has this stage: it
    saves and loads with a ``PipelineModel`` (its mean and axes are its parameters) and projects
    with numpy in the executors, one Arrow batch at a time.

    Args:
        mean: The d column means to subtract.
        axes: The d x k axes, as columns.
        inputCol: A vector column of width d.
        outputCol: The vector column of width k it adds.

    Examples:
        >>> stage = CentredProjection.of(mean, axes[:, :k], "vector", "pca")
        >>> stage.transform(vectors).select("pca")
    """

    mean = Param(Params._dummy(), "mean", "the d column means to subtract", TypeConverters.toListFloat)
    axes = Param(Params._dummy(), "axes", "the d x k axes, row by row (d rows of k)", TypeConverters.toListFloat)
    k = Param(Params._dummy(), "k", "the number of axes", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, mean=None, axes=None, k=None, inputCol=None, outputCol=None) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @classmethod
    def of(cls, mean: np.ndarray, axes: np.ndarray, input_col: str, output_col: str) -> CentredProjection:
        mean, axes = np.asarray(mean, dtype=float), np.asarray(axes, dtype=float)
        if axes.ndim != 2 or axes.shape[0] != mean.size:
            raise ValueError(f"axes must be d x k with d = {mean.size} (the mean's width), got {axes.shape}")
        return cls(
            mean=mean.tolist(), axes=axes.ravel().tolist(), k=axes.shape[1], inputCol=input_col, outputCol=output_col
        )

    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, axes) as numpy arrays: what a reader without Spark needs to project."""
        mean = np.asarray(self.getOrDefault(self.mean), dtype=float)
        return mean, np.asarray(self.getOrDefault(self.axes), dtype=float).reshape(mean.size, self.getOrDefault(self.k))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector

        project = F.pandas_udf(_projection(*self.matrices()), "array<double>")
        output = array_to_vector(project(vector_to_array(F.col(self.getInputCol()), dtype="float64")))
        return dataset.withColumn(self.getOutputCol(), output)


def _projection(mean: np.ndarray, axes: np.ndarray):
    def project(vectors: pd.Series) -> pd.Series:
        if vectors.empty:
            return pd.Series([], dtype=object)
        x = np.stack(vectors.to_numpy())
        return pd.Series(list((x - mean) @ axes))

    return project
