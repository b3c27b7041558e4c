from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.preprocessing.nodes import decode_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                decode_images,
                ["raw_images", "params:backbone", "params:preprocessing"],
                ["preprocessed_images", "rejected_images"],
                name="decode_images",
            ),
        ]
    )
