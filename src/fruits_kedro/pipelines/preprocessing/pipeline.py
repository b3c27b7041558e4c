from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.preprocessing.nodes import decode_images
from fruits_kedro.pipelines.tables import export_table


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                decode_images,
                ["raw_images", "params:backbone", "params:preprocessing"],
                ["preprocessed_images", "rejected_images"],
                name="decode_images",
            ),
            Node(export_table, "rejected_images", "rejected_images_csv", name="export_rejected_csv"),
        ]
    )
