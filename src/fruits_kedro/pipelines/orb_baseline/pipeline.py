from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.orb_baseline.nodes import (
    build_word_histograms,
    detect_orb_descriptors,
    fit_visual_vocabulary,
)


def create_pipeline(**kwargs) -> Pipeline:
    """ORB nodes only; they read ``raw_images``, so register them after ingestion."""
    return Pipeline(
        [
            Node(
                detect_orb_descriptors,
                ["raw_images", "params:orb_baseline"],
                ["orb_descriptors", "orb_detection_report"],
                name="detect_orb_descriptors",
            ),
            Node(
                fit_visual_vocabulary,
                ["orb_descriptors", "params:orb_baseline"],
                "orb_vocabulary",
                name="fit_visual_vocabulary",
            ),
            Node(
                build_word_histograms,
                ["orb_descriptors", "orb_vocabulary", "orb_detection_report"],
                ["orb_histograms", "orb_baseline_report"],
                name="build_word_histograms",
            ),
        ]
    )
