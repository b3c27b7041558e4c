"""Preprocessing: the files that could not be decoded, published as a CSV for people.

The decode itself (:class:`fruits_kedro.imaging.decode.ImageDecoder`) runs inside feature
extraction's inference tasks, where each image is read and decoded once;
``rejected_images`` comes out of that run, and this pipeline exports it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame


def export_rejected_csv(rejected_images: DataFrame) -> DataFrame:
    """Hand ``rejected_images`` on unchanged, to be saved again as ``rejected_images_csv``.

    A Kedro dataset has one format; publishing the same table as Parquet and as a
    pandas-readable CSV takes a second output, hence this node.
    """
    return rejected_images
