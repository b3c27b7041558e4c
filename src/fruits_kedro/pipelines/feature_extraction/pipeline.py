from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.feature_extraction.nodes import extract_features


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                extract_features,
                ["preprocessed_images", "params:backbone", "params:feature_extraction"],
                "image_features",
                name="extract_features",
            ),
        ]
    )
