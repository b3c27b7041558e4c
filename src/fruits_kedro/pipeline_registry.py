"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from fruits_kedro.pipelines import (
    dimensionality_reduction,
    evaluation,
    feature_extraction,
    ingestion,
    orb_baseline,
    preprocessing,
    streaming,
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` chains the four core ones.

    ``kedro run --pipeline evaluation`` compares the feature sets (ingestion, ORB, every
    configured backbone) and saves the classifier that ``fruits_kedro.predict`` uses.
    """
    pipelines = {
        "ingestion": ingestion.create_pipeline(),
        "preprocessing": preprocessing.create_pipeline(),
        "feature_extraction": feature_extraction.create_pipeline(),
        "dimensionality_reduction": dimensionality_reduction.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    # ORB and evaluation read ingestion's raw_images, which is not persisted (it carries
    # the photos' bytes): each is registered with ingestion, so that it runs on its own.
    # They compare feature sets on every image, so incremental selection never applies:
    # their ingestion reads the evaluation settings, which have no `incremental` switch.
    full_ingestion = Pipeline(pipelines["ingestion"], parameters={"params:feature_extraction": "params:evaluation"})
    pipelines["orb_baseline"] = full_ingestion + orb_baseline.create_pipeline()
    # In evaluation, ORB describes the photos that evaluation.feature_sets gives it: none without orb.
    orb_for_evaluation = Pipeline(orb_baseline.create_pipeline(), inputs={"raw_images": "images_for_orb"})
    pipelines["evaluation"] = full_ingestion + orb_for_evaluation + evaluation.create_pipeline()
    # Photos that keep arriving (docs/streaming.md): outside __default__, it runs until stopped.
    pipelines["streaming"] = streaming.create_pipeline()
    return pipelines
