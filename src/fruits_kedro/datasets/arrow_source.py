"""Arrow functions run in the tasks that read a Parquet dataset, with no Spark rows in between.

A DataFrame that :class:`SparkParquetFsspecDataset` loads is one Spark task per part file,
reading it with pyarrow (``mapInArrow``). Handed on to another ``mapInArrow``, every batch
would be turned into JVM rows and back into Arrow between the two Python functions: for
features of 1,280 floats or tables of hundreds of columns, that copying costs far more than
the work itself. :func:`map_in_arrow` composes the function with the reader instead, so it
runs on the batches as they come out of the part files; its result is such a frame again,
so a chain (read, project, write) stays one pass of Arrow batches in one Python worker.
The featurization's frame is made so too (its function over the photo listing's partitions):
saving it runs network and Parquet writer in one worker, the features never becoming JVM rows.
Any other DataFrame gets plain ``mapInArrow``: the results are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

ArrowFunction = Callable[[Iterator[Any]], Iterator[Any]]  # pyarrow RecordBatches in, out

_SOURCE_ATTRIBUTE = "_fruits_kedro_arrow_source"


@dataclass(frozen=True)
class ArrowSource:
    """How a frame's rows are made: ``read`` applied to the batches of ``files`` (a frame of
    one row per part file, one partition each, unless ``fixed_partitions``: then any frame
    whose partitioning is the work's own, never coalesced)."""

    files: Any  # a Spark DataFrame
    read: ArrowFunction
    fixed_partitions: bool = False


def with_arrow_source(frame, files, read: ArrowFunction, *, fixed_partitions: bool = False):
    """Mark ``frame`` as ``files.mapInArrow(read, frame.schema)``; returns ``frame``."""
    setattr(frame, _SOURCE_ATTRIBUTE, ArrowSource(files, read, fixed_partitions))
    return frame


def arrow_source(frame) -> ArrowSource | None:
    """How ``frame``'s rows are made, unless it is cached (then its rows come from the cache:
    ``persist()`` returns the same object, marks included)."""
    if getattr(frame, "is_cached", False):
        return None
    return getattr(frame, _SOURCE_ATTRIBUTE, None)


def map_in_arrow(frame, function: ArrowFunction, schema, partitions: int | None = None):
    """``frame.mapInArrow(function, schema)``, run inside the reading tasks where ``frame``
    comes straight from part files, in at most ``partitions`` tasks (default: one per core);
    for any other frame, ``partitions`` coalesces it first if given."""
    source = arrow_source(frame)
    if source is None:
        narrowed = frame.coalesce(partitions) if partitions else frame
        return narrowed.mapInArrow(function, schema)
    files = source.files
    if partitions or not source.fixed_partitions:
        # A Python task costs tens of ms to start: a few long ones stream the part files in turn.
        files = files.coalesce(partitions or frame.sparkSession.sparkContext.defaultParallelism)
    composed = _compose(function, source.read)
    fixed = source.fixed_partitions and not partitions
    return with_arrow_source(files.mapInArrow(composed, schema), files, composed, fixed_partitions=fixed)


def with_constant_column(frame, name: str, value: str):
    """``frame.withColumn(name, lit(value))`` for a string, keeping a frame read from part
    files so (the column is added to each Arrow batch)."""
    if arrow_source(frame) is None:
        from pyspark.sql import functions as F

        return frame.withColumn(name, F.lit(value))
    from pyspark.sql import types as T

    field = T.StructField(name, T.StringType(), False)
    fields = list(frame.schema.fields)
    names = [f.name for f in fields]
    if name in names:  # replaced where it stands, as withColumn does
        fields[names.index(name)] = field
    else:
        fields.append(field)
    return map_in_arrow(frame, _constant_column(name, value), T.StructType(fields))


def _compose(outer: ArrowFunction, inner: ArrowFunction) -> ArrowFunction:
    def composed(batches):
        return outer(inner(batches))

    # Spark's plans and UI name the function: say what it is made of.
    composed.__name__ = composed.__qualname__ = f"{outer.__name__}_of_{inner.__name__}"
    return composed


def _constant_column(name: str, value: str) -> ArrowFunction:
    def add(batches):
        import pyarrow as pa

        for batch in batches:
            constant = pa.array([value] * batch.num_rows, pa.string())
            names = batch.schema.names
            if name in names:
                yield batch.set_column(names.index(name), name, constant)
            else:
                yield batch.append_column(name, constant)

    return add
