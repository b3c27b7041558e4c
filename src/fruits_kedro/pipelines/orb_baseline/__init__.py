"""ORB keypoints -> bag of visual words: a hand-crafted baseline for the CNN features."""

from fruits_kedro.pipelines.orb_baseline.pipeline import create_pipeline

__all__ = ["create_pipeline"]
