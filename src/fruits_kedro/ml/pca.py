"""PCA on Spark: the fewest principal components that explain a share of the variance.

The executors compute the mean and covariance in one pass (numpy per partition, merged in
the cluster); the driver decomposes the d x d covariance once, which gives every component's
share of the total variance, hence the whole cumulative curve and k (:func:`choose_k`). The
projection onto k axes is a Spark ML stage of the project's own (:class:`CentredProjection`),
which saves and loads in a ``PipelineModel`` like a fitted model.
"""

from __future__ import annotations

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
    """The mean and principal axes of a vector column.

    Returns (the d column means, every axis's explained-variance ratio in decreasing order,
    the axes as columns of a d x d matrix). One pass over the vectors: each partition computes
    its count, mean and d x d scatter matrix with numpy (BLAS), the partials are merged in
    the executors (``treeReduce``), and only the total d x d covariance reaches the driver,
    where LAPACK's ``eigh`` decomposes it. Spark's ``RowMatrix.computeCovariance`` does the same
    sums row by row (no native BLAS on a pip-installed Spark), after a separate pass for the
    mean; Spark ML's ``PCA.fit`` decomposes with a general SVD that, without a native LAPACK,
    gives spectra that differ from run to run (docs/performance.md); ``eigh`` is exact and
    stable for this symmetric case.
    """
    arrays = vectors.select(vector_to_array(F.col(input_col), dtype="float64").alias("x"))
    partials = arrays.mapInArrow(_partition_moments, MOMENTS_SCHEMA).rdd.map(
        lambda row: (row.n, np.frombuffer(row.mean), np.frombuffer(row.scatter))
    )
    n, mean, scatter = partials.treeReduce(merge_moments)
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


MOMENTS_SCHEMA = "n long, mean binary, scatter binary"
Moments = tuple[int, np.ndarray, np.ndarray]  # count, mean (d), scatter (d*d, flat): sum of (x - mean)(x - mean)^T


def moments_of(x: np.ndarray) -> Moments:
    """Count, mean and scatter matrix of the rows of x (n x d), centred first: no cancellation."""
    mean = x.mean(axis=0)
    centred = x - mean
    return len(x), mean, (centred.T @ centred).ravel()


def merge_moments(a: Moments, b: Moments) -> Moments:
    """The moments of two sets of rows together (Chan, Golub and LeVeque's pairwise update)."""
    (n_a, mean_a, scatter_a), (n_b, mean_b, scatter_b) = a, b
    if n_a == 0:
        return b
    if n_b == 0:
        return a
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), scatter_a + scatter_b + np.outer(delta, delta * (n_a * n_b / n)).ravel()


def _partition_moments(batches):
    """mapInArrow function: one row with the moments of the partition's vectors, if it has any."""
    import pyarrow as pa

    total: Moments = (0, np.zeros(0), np.zeros(0))
    for batch in batches:
        column = batch.column(0)
        if len(column) == 0:
            continue
        x = column.flatten().to_numpy().reshape(len(column), -1)
        total = merge_moments(total, moments_of(x))
    if total[0]:
        n, mean, scatter = total
        yield pa.RecordBatch.from_pydict({"n": [n], "mean": [mean.tobytes()], "scatter": [scatter.tobytes()]})


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
