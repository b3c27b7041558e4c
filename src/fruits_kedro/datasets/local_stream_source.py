"""``fruits_local_images``: new photos under a local folder as a Spark Structured Streaming source.

The offsets of :mod:`fruits_kedro.datasets.s3_stream_source` (a watermark on the arrival time
with an allowed lateness, and the objects of that window: bounded, exact on replay), over a
walk of the folder with ``os.scandir``. Spark's own file source remembers every path it has
seen and, at each start, restores that log and lists the whole folder through Hadoop before the
first micro-batch (about 1 s per 10,000 files); this walk costs a ``stat`` per file and nothing
at a start but the walk.

**Arrival.** A file's arrival is the latest of its mtime, its ctime and the ctimes of its
folders below the root where they are later than their mtimes, in milliseconds. Creating a file
or renaming it into a folder sets its ctime, and moving a folder in sets that folder's ctime
(not its mtime, which adding a file moves with the ctime): so a photo copied with its old mtime
kept (``cp -p``, ``rsync -a``, an unzipped archive) and a folder of photos moved in are new,
where a watermark on mtime alone would miss them. (A file added to a moved-in folder before the
next walk hides the move: the folder's photos then arrive only if their own times are recent.)
A file listed again later (a ``chmod`` moves its ctime) is found among the featurized photos
by the micro-batch (:class:`~fruits_kedro.streaming.micro_batch.MicroBatches`), which keeps
one row per path.

Rows have the columns and rules of the batch listing (``image_folder.listing_row``: hidden names
left out, special files and files over ``maxFileBytes`` listed with their reason, a name that is
not UTF-8 as a ``file://`` URI), then ``arrival``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql.types import StructType

from fruits_kedro.datasets.s3_stream_source import (
    ListedObject,
    ListingSource,
    StreamSourceError,
    WatermarkStreamReader,
)

SOURCE_NAME = "fruits_local_images"
NS_PER_MS = 1_000_000


class LocalImageStreamSource(ListingSource):
    """The photos that land under a local folder, as a streaming DataFrame of listing rows.

    Options (strings, as every Spark source option):
        path: The folder (an absolute path).
        maxFilesPerTrigger: At most this many files per micro-batch (default: all that are new).
        maxFileBytes: Files larger than this are listed as skipped and never read.
        allowedLatenessSeconds: How long after its arrival a file may still appear in the walk
            (default 60): clock differences between the folder's server and this machine.

    Examples:
        Using the Python API (the columns: path, relative_path, size, modified, skipped, arrival)::

            register_local_stream_source(spark)
            photos = spark.readStream.format("fruits_local_images").option("path", "/data/fruits").load()
    """

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def streamReader(self, schema: StructType) -> LocalImageStreamReader:
        return LocalImageStreamReader(self.options)


class LocalImageStreamReader(WatermarkStreamReader):
    """:class:`WatermarkStreamReader` over the files under a local folder."""

    name = SOURCE_NAME

    def __init__(self, options: dict[str, str]) -> None:
        path = str(options.get("path") or "").rstrip("/")
        if not path or not os.path.isabs(path):
            raise StreamSourceError(f"{SOURCE_NAME} needs an absolute folder as its path, got {options.get('path')!r}")
        super().__init__(path, options)

    def list_objects(self) -> list[ListedObject]:
        """Every file under the folder, as the batch listing sees it (hidden names left out)."""
        from fruits_kedro.datasets.image_folder import is_hidden, walk_local

        if not Path(self._source).is_dir():
            raise StreamSourceError(f"Image folder not found: {self._source}")
        entries = walk_local(self._source, self._max_file_bytes)
        return [ListedObject(e.relative, e.arrival_ns // NS_PER_MS, e) for e in entries if not is_hidden(e.relative)]

    def row_values(self, obj: ListedObject) -> tuple:
        """A taken file's row: made only then, as most files of a walk are not taken."""
        from fruits_kedro.datasets.image_folder import LISTING_COLUMNS, listing_row

        row = listing_row(obj.row)
        return (*(row[column] for column in LISTING_COLUMNS), datetime.fromtimestamp(obj.modified_ms / 1000, tz=UTC))


def register_local_stream_source(spark) -> str:
    """Register :class:`LocalImageStreamSource` under ``fruits_local_images``; returns the name."""
    spark.dataSource.register(LocalImageStreamSource)
    return SOURCE_NAME
