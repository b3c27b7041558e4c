"""Spark ML PCA, with k chosen from the explained variance."""

from fruits_kedro.pipelines.dimensionality_reduction.pipeline import create_pipeline

__all__ = ["create_pipeline"]
