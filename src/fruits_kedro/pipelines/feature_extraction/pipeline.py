from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.feature_extraction.nodes import (
    extract_features,
    merge_with_previous_features,
    report_feature_extraction,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                extract_features,
                ["preprocessed_images", "params:backbone", "params:preprocessing", "params:feature_extraction"],
                "new_image_features",
                name="extract_features",
            ),
            Node(
                merge_with_previous_features,
                ["new_image_features", "previous_image_features", "sampled_image_files", "params:feature_extraction"],
                ["image_features", "reused_image_features"],
                name="merge_with_previous_features",
            ),
            Node(
                report_feature_extraction,
                ["image_features", "reused_image_features"],
                "feature_extraction_report",
                name="report_feature_extraction",
            ),
        ]
    )
