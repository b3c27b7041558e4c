"""The stream of arriving photos: its micro-batches and its outputs (the pipeline is ``pipelines/streaming``)."""
