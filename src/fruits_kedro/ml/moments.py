"""The Arrow functions of the PCA, run in the executors: moments of a vector column's rows
and their projection onto given axes.

Kept apart from :mod:`fruits_kedro.ml.pca` so that a Python worker running them imports
numpy and pyarrow only (no pandas, no Spark ML).
"""

from __future__ import annotations

import numpy as np

MOMENTS_SCHEMA = "n long, mean binary, scatter binary"
Moments = tuple[int, np.ndarray, np.ndarray]  # count, mean (d), scatter (d*d, flat): sum of (x - mean)(x - mean)^T
NO_ROWS: Moments = (0, np.zeros(0), np.zeros(0))
ROWS_PER_BLOCK = 4096  # rows per BLAS call: few merges, a few tens of MB at most


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
    if mean_a.size != mean_b.size:
        raise ValueError(f"Vectors of different lengths ({mean_a.size} and {mean_b.size}): PCA needs one width")
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), scatter_a + scatter_b + np.outer(delta, delta * (n_a * n_b / n)).ravel()


def valid_rows(batch, column: str):
    """The batch's rows whose ``column`` is not null, and that column as an n x d array."""
    import pyarrow.compute as pc

    values = batch.column(column)
    if values.null_count:
        batch = batch.filter(pc.is_valid(values))
        values = batch.column(column)
    if len(values) == 0:
        return batch, None
    lengths = pc.list_value_length(values)
    extremes = pc.min_max(lengths)
    shortest, longest = extremes["min"].as_py(), extremes["max"].as_py()
    if shortest != longest:
        raise ValueError(f"Vectors of different lengths ({shortest} to {longest}) in {column}: PCA needs one width")
    x = values.flatten().to_numpy(zero_copy_only=False)
    return batch, x.reshape(len(values), -1)


def batches_moments(batches, column: str) -> Moments:
    """The moments of the non-null vectors of ``column`` in Arrow record batches."""
    total, block, rows = NO_ROWS, [], 0
    for batch in batches:
        _, x = valid_rows(batch, column)
        if x is None:
            continue
        block.append(x)
        rows += len(x)
        if rows >= ROWS_PER_BLOCK:
            total = merge_moments(total, moments_of(np.concatenate(block).astype(np.float64)))
            block, rows = [], 0
    if rows:
        total = merge_moments(total, moments_of(np.concatenate(block).astype(np.float64)))
    return total


def partition_moments(column: str):
    """Arrow function: one row with the moments of the task's non-null vectors, if it has any."""

    def partition_moments(batches):
        import pyarrow as pa

        n, mean, scatter = batches_moments(batches, column)
        if n:
            yield pa.RecordBatch.from_pydict({"n": [n], "mean": [mean.tobytes()], "scatter": [scatter.tobytes()]})

    return partition_moments


def partition_projection(column: str, mean: np.ndarray, axes: np.ndarray, keep: tuple[str, ...], names: list[str]):
    """Arrow function: ``keep`` and the float32 scores of each batch's non-null rows."""

    def partition_projection(batches):
        import pyarrow as pa

        for batch in batches:
            batch, x = valid_rows(batch, column)
            if x is None:
                continue
            scores = ((x - mean) @ axes).astype(np.float32)
            columns = [batch.column(c) for c in keep] + [pa.array(scores[:, i]) for i in range(scores.shape[1])]
            yield pa.RecordBatch.from_arrays(columns, [*keep, *names])

    return partition_projection
