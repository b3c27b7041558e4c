from kedro.pipeline import Node, Pipeline

from fruits_kedro.pipelines.streaming.nodes import stream_new_photos


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            # Saving stream_query runs the query: until the backlog is done (available_now), or
            # until it is stopped (processing_time).
            Node(
                stream_new_photos,
                [
                    "new_photos",
                    "stream_outputs",
                    "params:backbone",
                    "params:preprocessing",
                    "params:ingestion",
                    "params:feature_extraction",
                    "params:dimensionality_reduction",
                    "params:streaming",
                ],
                "stream_query",
                name="stream_new_photos",
            ),
        ]
    )
