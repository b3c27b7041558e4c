"""Decode and resize the photos; set aside what cannot be decoded."""

from fruits_kedro.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
