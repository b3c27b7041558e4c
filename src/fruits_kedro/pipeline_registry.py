"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from fruits_kedro.pipelines import dimensionality_reduction, feature_extraction, ingestion, preprocessing


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` chains the four core ones."""
    pipelines = {
        "ingestion": ingestion.create_pipeline(),
        "preprocessing": preprocessing.create_pipeline(),
        "feature_extraction": feature_extraction.create_pipeline(),
        "dimensionality_reduction": dimensionality_reduction.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
