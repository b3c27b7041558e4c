"""Photos that keep arriving: featurized in micro-batches by Spark Structured Streaming."""

from fruits_kedro.pipelines.streaming.pipeline import create_pipeline

__all__ = ["create_pipeline"]
