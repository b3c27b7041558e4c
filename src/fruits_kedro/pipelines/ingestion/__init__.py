"""List the photos, label them from their folders, sample, and attach their bytes."""

from fruits_kedro.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
