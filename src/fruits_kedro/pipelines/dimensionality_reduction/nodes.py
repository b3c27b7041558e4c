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

from fruits_kedro.ml.pca import SCORE_ID_COLUMNS, column_moments, fit_from_moments, project_columns
from fruits_kedro.params import section

logger = logging.getLogger(__name__)


def fit_pca(image_features: DataFrame, params: dict[str, Any]) -> tuple[DataFrame, dict[str, Any]]:
    """Fit PCA on ``features``; return (scores ``pc_1..pc_k`` per image, variance report).

    One pass over the features for their count, mean and covariance; the scores are computed
    when they are saved, in the tasks that read the features (:func:`project_columns`).
    """
    settings = section("dimensionality_reduction", params)
    moments = column_moments(image_features, "features")
    fit = fit_from_moments(moments, settings.variance_threshold, settings.max_components)
    reduced = project_columns(image_features, "features", fit.mean, fit.axes, SCORE_ID_COLUMNS)
    return reduced, fit.report


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
