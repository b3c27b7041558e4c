"""Helpers shared by pipelines that publish one table in two formats."""

from __future__ import annotations

from pyspark.sql import DataFrame


def export_table(table: DataFrame) -> DataFrame:
    """Hand a table on unchanged, to be saved again in another format (e.g. Parquet -> CSV).

    A Kedro dataset has one format; publishing the same table as Parquet and as a
    pandas-readable CSV takes a second output, hence this node.
    """
    return table
