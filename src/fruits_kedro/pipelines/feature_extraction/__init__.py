"""Run a pretrained ImageNet CNN over the preprocessed photos, inside Spark."""

from fruits_kedro.pipelines.feature_extraction.pipeline import create_pipeline

__all__ = ["create_pipeline"]
