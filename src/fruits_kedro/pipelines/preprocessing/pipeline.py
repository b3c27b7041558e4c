"""Preprocessing's own output: the files that could not be decoded, as a CSV for people.

The decode itself (:class:`fruits_kedro.imaging.decode.ImageDecoder`) runs inside feature
extraction's inference tasks, where each image is read and decoded once; ``rejected_images``
comes out of that run.
"""

from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.preprocessing.nodes import export_rejected_csv


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(export_rejected_csv, "rejected_images", "rejected_images_csv", name="export_rejected_csv"),
        ]
    )
