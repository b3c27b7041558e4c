"""Dimensionality reduction: PCA on Spark, keeping the fewest components that explain
``variance_threshold`` of the variance.

The method (one pass for the count, mean and covariance, ``eigh`` on the driver, k from the
cumulative curve, the projection as the scores are saved) is :mod:`fruits_kedro.ml.pca`; this pipeline
applies it to the image features, with its parameters' checks and report, and exports the
scores and a scree plot.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pyspark.sql import DataFrame

from fruits_kedro.ml.pca import PCAUndefinedError, choose_k, column_moments, principal_components, project_columns
from fruits_kedro.params import section

logger = logging.getLogger(__name__)

ID_COLUMNS = ("path", "label", "split")


def fit_pca(image_features: DataFrame, params: dict[str, Any]) -> tuple[DataFrame, dict[str, Any]]:
    """Fit PCA on ``features``; return (scores ``pc_1..pc_k`` per image, variance report).

    One pass over the features for their count, mean and covariance; the scores are computed
    when they are saved, in the tasks that read the features (:func:`project_columns`).
    """
    settings = section("dimensionality_reduction", params)
    threshold = settings.variance_threshold
    moments = column_moments(image_features, "features")
    n_images, n_input = moments[0], moments[1].size
    if n_images == 0:
        raise PCAUndefinedError("No image features to reduce: every image was rejected or the input folder is empty")
    if n_images == 1:
        raise PCAUndefinedError("PCA needs at least 2 images: only 1 image has features (variance is undefined)")
    # Rank is at most n-1 after centring: components beyond it carry no variance.
    k_max = max(1, min(n_input, n_images - 1, settings.max_components or n_input))
    mean, ratios, components = principal_components(moments)
    if not np.all(np.isfinite(ratios)):
        raise PCAUndefinedError(
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
    reduced = project_columns(image_features, "features", mean, components[:, :k], ID_COLUMNS)
    report = {
        "k": k,
        "threshold": threshold,
        "n_input_features": n_input,
        "n_images": n_images,
        "explained_variance_at_k": float(cumulative[k - 1]),
        "explained_variance": [float(r) for r in ratios],
        "cumulative": [float(c) for c in cumulative],
    }
    return reduced, report


def export_pca_csv(image_features_pca: DataFrame) -> DataFrame:
    """Hand ``image_features_pca`` on unchanged, to be saved again as ``image_features_pca_csv``.

    A Kedro dataset has one format; publishing the same table as Parquet and as a
    pandas-readable CSV takes a second output, hence this node.
    """
    return image_features_pca


def plot_scree(report: dict[str, Any]):
    """Scree plot: each component's share of variance, the cumulative curve and the chosen k."""
    import matplotlib.pyplot as plt  # matplotlib picks a headless backend where there is no display

    ratios = np.asarray(report["explained_variance"])
    cumulative = np.asarray(report["cumulative"])
    k, threshold = report["k"], report["threshold"]
    shown = min(len(ratios), max(k * 2, 20))
    x = np.arange(1, shown + 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    # One filled outline, not a bar patch per component: hundreds of bars draw slowly, too thin to show.
    ax.stairs(ratios[:shown], np.arange(shown + 1) + 0.5, fill=True, color="#7aa6c2", label="explained variance ratio")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    twin = ax.twinx()
    twin.plot(x, cumulative[:shown], color="#c0392b", marker=".", label="cumulative")
    twin.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    twin.axvline(k, color="grey", linestyle=":", linewidth=1)
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("cumulative explained variance")
    ax.set_title(
        f"PCA scree: k={k} components reach {cumulative[k - 1]:.1%} "
        f"(threshold {threshold:.0%}) of {report['n_input_features']} features"
    )
    fig.tight_layout()
    return fig
