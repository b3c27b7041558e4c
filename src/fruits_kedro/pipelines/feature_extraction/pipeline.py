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
                [
                    "raw_images",
                    "params:backbone",
                    "params:preprocessing",
                    "params:feature_extraction",
                    "params:ingestion",
                ],
                ["featurized_images", "rejected_images_by_path"],
                name="extract_features",
            ),
            Node(
                merge_with_previous_features,
                ["featurized_images", "reusable_image_features", "sampled_image_files"],
                ["image_features", "reused_image_features"],
                name="merge_with_previous_features",
            ),
            # After image_features is saved (it is an input): saving them ran the CNN, which
            # gathered the rejected images on the way; the CNN does not run again for them.
            Node(
                report_feature_extraction,
                [
                    "image_features",
                    "rejected_images_by_path",
                    "sampled_image_files",
                    "reused_image_features",
                    "listing_account",
                    "skipped_files",
                ],
                ["feature_extraction_report", "rejected_images", "skipped_images"],
                name="report_feature_extraction",
            ),
        ]
    )
