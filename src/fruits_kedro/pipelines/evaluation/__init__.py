"""Classify the photos with each feature set (CNN backbones, ORB) and report the scores."""

from fruits_kedro.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
