from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.ingestion.nodes import (
    account_for_listing,
    attach_image_bytes,
    label_images,
    list_skipped_files,
    reusable_previous_features,
    sample_per_class,
    select_images_to_featurize,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(label_images, ["raw_image_files", "params:ingestion"], "labelled_image_files", name="label_images"),
            Node(
                sample_per_class,
                ["labelled_image_files", "params:ingestion"],
                "sampled_image_files",
                name="sample_per_class",
            ),
            Node(
                account_for_listing,
                ["raw_image_files", "sampled_image_files", "params:ingestion"],
                "listing_account",
                name="account_for_listing",
            ),
            Node(
                list_skipped_files,
                ["raw_image_files", "sampled_image_files", "params:ingestion"],
                "skipped_files",
                name="list_skipped_files",
            ),
            Node(
                reusable_previous_features,
                ["previous_image_features", "params:backbone", "params:preprocessing", "params:feature_extraction"],
                "reusable_image_features",
                name="reusable_previous_features",
            ),
            Node(
                select_images_to_featurize,
                ["sampled_image_files", "reusable_image_features"],
                "image_files_to_featurize",
                name="select_images_to_featurize",
            ),
            Node(
                attach_image_bytes,
                ["image_files_to_featurize", "params:ingestion"],
                "raw_images",
                name="attach_image_bytes",
            ),
        ]
    )
