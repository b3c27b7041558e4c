"""Streaming nodes: the run's parameters wired to the stream's micro-batches
(:mod:`fruits_kedro.streaming.micro_batch`), whose query ``stream_query`` runs."""

from __future__ import annotations

from typing import Any

from fruits_kedro.datasets.image_stream import ImageStream, MicroBatchJob
from fruits_kedro.inference.featurize import calibrated_runtime, run_feature_settings
from fruits_kedro.params import ParameterError, section
from fruits_kedro.streaming.micro_batch import MicroBatches, StreamSettings
from fruits_kedro.streaming.store import StreamStore


def stream_new_photos(
    new_photos: ImageStream,
    stream_outputs: StreamStore,
    backbone_params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    ingestion_params: dict[str, Any],
    feature_extraction_params: dict[str, Any],
    dimensionality_reduction_params: dict[str, Any],
    params: dict[str, Any],
) -> MicroBatchJob:
    """The query that featurizes the photos arriving under ``new_photos``, micro-batch by
    micro-batch, with the batch mode's settings (``backbone``, ``preprocessing``, ``ingestion``'s
    extensions and size cap, ``feature_extraction``, ``dimensionality_reduction``)."""
    settings = section("streaming", params)
    try:
        runtime = calibrated_runtime(backbone_params, feature_extraction_params)
    except ValueError as exc:
        raise ParameterError(f"Invalid parameters: {exc}") from None
    feature_extraction = {**feature_extraction_params, "runtime": runtime}
    ingestion = section("ingestion", ingestion_params)
    reduction = section("dimensionality_reduction", dimensionality_reduction_params)
    batches = MicroBatches(
        new_photos,
        stream_outputs,
        StreamSettings(
            backbone=backbone_params,
            preprocessing=preprocessing_params,
            feature_extraction=feature_extraction,
            extensions=ingestion.extensions,
            max_file_bytes=ingestion.max_file_bytes,
            variance_threshold=reduction.variance_threshold,
            max_components=reduction.max_components,
            refit_growth=settings.refit_growth,
            refit_min_rows=settings.refit_min_rows,
            compact_parts=settings.compact_parts,
            compact_rows=settings.compact_rows,
            feature_settings=run_feature_settings(backbone_params, preprocessing_params, feature_extraction),
        ),
    )
    if settings.trigger == "available_now":
        trigger = {"availableNow": True}
    else:
        trigger = {"processingTime": f"{settings.interval_seconds:g} seconds"}
    return MicroBatchJob(
        frame=new_photos.read(settings.max_files_per_trigger),
        process=batches,
        trigger=trigger,
        source=new_photos.path,
        before_start=batches.before_start,
        on_stop=batches.finish,
    )
