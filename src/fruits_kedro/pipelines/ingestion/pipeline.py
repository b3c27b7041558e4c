from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.ingestion.nodes import (
    attach_image_bytes,
    label_images,
    sample_per_class,
    select_images_to_featurize,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(label_images, ["raw_image_files", "params:ingestion"], "labelled_image_files", name="label_images"),
            Node(sample_per_class, ["labelled_image_files", "params:ingestion"], "sampled_image_files", name="sample_per_class"),
            Node(
                select_images_to_featurize,
                ["sampled_image_files", "previous_image_features", "params:feature_extraction"],
                "image_files_to_featurize",
                name="select_images_to_featurize",
            ),
            Node(attach_image_bytes, ["image_files_to_featurize", "params:ingestion"], "raw_images", name="attach_image_bytes"),
        ]
    )
