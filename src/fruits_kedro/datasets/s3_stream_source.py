"""``fruits_s3_images``: new photos under an S3 prefix as a Spark Structured Streaming source.

Spark's own file source needs a Hadoop S3 connector that a pip-installed Spark does not have
(see ``SparkParquetFsspecDataset``), so this source is written with PySpark's Python Data
Source API and lists the prefix with the project's S3 client (s3fs, with the retry settings
of :mod:`fruits_kedro.cloud.s3_retries`). Each row is one new object, with the columns and
rules of the batch listing (:class:`~fruits_kedro.datasets.image_folder.ImageFolderDataset`:
``path``, ``relative_path``, ``size``, ``modified`` = ETag, ``skipped``; hidden names and
folder markers left out, objects over ``maxFileBytes`` listed as skipped), then ``arrival``,
its LastModified (the stream's column contract, :mod:`fruits_kedro.datasets.image_stream`).
Extensions and labels are the ingestion's business, as in the batch mode.

**Offsets.** S3 lists keys in lexicographic order, not by time, and a photo may land under a
key lower than any seen before, so a key cursor would miss it. An object is identified by
``(key, LastModified)`` and an offset says which objects are consumed::

    {"source": "s3://bucket/prefix/raw", "through_ms": T, "recent": [[key, ms], ...]}

An object is consumed when its LastModified is at or before ``T``, or when it is listed in
``recent`` (every entry there is later than ``T``). Each micro-batch takes the unconsumed
objects in (LastModified, key) order, at most ``maxFilesPerTrigger``, and moves ``T`` to
``now - allowedLatenessSeconds`` (never past the first object left for a later batch); the
taken objects later than ``T`` go to ``recent``. So a photo is featurized as soon as it is
listed, ``recent`` only holds the objects of the last ``allowedLatenessSeconds`` (bounded
state: no set of every key ever seen), and the objects of a batch are exactly those consumed
at its end offset but not at its start: a batch replayed after a crash lists the prefix again
and gets the same objects. The one assumption: an object becomes visible in listings within
``allowedLatenessSeconds`` of its LastModified (S3 sets it when the upload starts; a
multipart upload's is its start). An object rewritten under the same key gets a new
LastModified and is listed again (the micro-batch keeps one row per ``path``).

**Trigger.AvailableNow.** The source notes the newest LastModified listed when the query
starts and stops after the objects up to it (an upload still in flight with an earlier
LastModified is included when it lands).

Every offset names its prefix: a checkpoint of another source is refused with a one-line
error instead of silently reading everything again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxFiles,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

SOURCE_NAME = "fruits_s3_images"
OFFSET_VERSION = 1
DEFAULT_LATENESS_SECONDS = 60
ROWS_PER_PARTITION = 2000

SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("relative_path", StringType(), False),
        StructField("size", LongType(), False),
        StructField("modified", StringType(), True),
        StructField("skipped", StringType(), True),
        StructField("arrival", TimestampType(), True),
    ]
)


class StreamSourceError(ValueError):
    """A setting or checkpoint of the S3 stream that cannot be used; the message is one line."""


@dataclass(frozen=True)
class ListedObject:
    """One object of the listing: its key relative to the prefix, its LastModified (its arrival)
    in milliseconds and its row (what the reader's ``row_values`` makes the row of)."""

    key: str
    modified_ms: int
    row: Any


def initial_offset(source: str) -> dict[str, Any]:
    return {"version": OFFSET_VERSION, "source": source, "through_ms": -1, "recent": []}


def check_offset(offset: dict[str, Any], source: str, name: str = SOURCE_NAME) -> None:
    """Refuse an offset written by another source or version (a reused checkpoint folder)."""
    if not isinstance(offset, dict) or offset.get("version") != OFFSET_VERSION or "through_ms" not in offset:
        raise StreamSourceError(
            f"The streaming checkpoint holds an offset that is not one of {name} "
            f"(version {OFFSET_VERSION}): {json.dumps(offset)[:200]}; use a new checkpoint folder for {source}"
        )
    if offset.get("source") != source:
        raise StreamSourceError(
            f"The streaming checkpoint belongs to {offset.get('source')}, not to {source}: "
            "give this source its own checkpoint folder"
        )


def is_consumed(obj: ListedObject, offset: dict[str, Any], recent: set[tuple[str, int]] | None = None) -> bool:
    if obj.modified_ms <= offset["through_ms"]:
        return True
    if recent is None:
        recent = _recent(offset)
    return (obj.key, obj.modified_ms) in recent


def _recent(offset: dict[str, Any]) -> set[tuple[str, int]]:
    return {(key, int(ms)) for key, ms in offset["recent"]}


def _order(obj: ListedObject) -> tuple[int, str]:
    return obj.modified_ms, obj.key


def pending_objects(listing: Sequence[ListedObject], offset: dict[str, Any]) -> list[ListedObject]:
    """The objects ``offset`` has not consumed, in (LastModified, key) order."""
    recent = _recent(offset)
    return sorted((obj for obj in listing if not is_consumed(obj, offset, recent)), key=_order)


def next_offset(
    start: dict[str, Any],
    listing: Sequence[ListedObject],
    *,
    max_files: int | None,
    now_ms: int,
    lateness_ms: int,
    target_ms: int | None = None,
) -> tuple[dict[str, Any], list[ListedObject]]:
    """The end offset of the next micro-batch from ``start``, and that batch's objects.

    At most ``max_files`` objects (None: all), none later than ``target_ms`` (None: no end).
    ``start`` itself is returned when there is nothing to take, which tells Spark that no
    batch is due.
    """
    pending = pending_objects(listing, start)
    eligible = [obj for obj in pending if target_ms is None or obj.modified_ms <= target_ms]
    taken = eligible[:max_files] if max_files is not None else eligible
    if not taken:
        return start, []
    through = now_ms - lateness_ms
    if len(taken) < len(pending):  # everything up to the first object left behind is taken
        through = min(through, pending[len(taken)].modified_ms - 1)
    through = max(through, int(start["through_ms"]))
    recent = {entry for entry in _recent(start) if entry[1] > through}
    recent.update((obj.key, obj.modified_ms) for obj in taken if obj.modified_ms > through)
    end = {
        "version": OFFSET_VERSION,
        "source": start["source"],
        "through_ms": through,
        "recent": [[key, ms] for key, ms in sorted(recent)],
    }
    return end, taken


def objects_between(listing: Sequence[ListedObject], start: dict[str, Any], end: dict[str, Any]) -> list[ListedObject]:
    """The objects consumed at ``end`` but not at ``start``: one micro-batch, in order."""
    start_recent, end_recent = _recent(start), _recent(end)
    return sorted(
        (obj for obj in listing if is_consumed(obj, end, end_recent) and not is_consumed(obj, start, start_recent)),
        key=_order,
    )


def positive_int(options: dict[str, str], name: str, default: int | None, source: str = SOURCE_NAME) -> int | None:
    value = options.get(name)
    if value is None or str(value).strip().lower() in ("", "none", "null"):
        return default
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number <= 0:
        raise StreamSourceError(f"{source} option {name} must be a positive integer, got {value!r}")
    return number


def _source_url(options: dict[str, str]) -> str:
    from fruits_kedro.cloud.s3_retries import is_s3_url
    from fruits_kedro.datasets.aws import split_s3_url

    path = str(options.get("path") or "").rstrip("/")
    if not is_s3_url(path) or not split_s3_url(path)[0]:
        raise StreamSourceError(
            f"{SOURCE_NAME} needs an S3 folder as its path (s3://bucket/prefix), got {options.get('path')!r}"
        )
    return path


class ListingSource(DataSource):
    """A source of listing rows (:data:`SCHEMA`); a subclass names it and gives its reader."""

    def schema(self) -> StructType:
        return SCHEMA


class S3ImageStreamSource(ListingSource):
    """The photos that land under an S3 prefix, as a streaming DataFrame of listing rows.

    Options (strings, as every Spark source option):
        path: The folder, ``s3://bucket/prefix``.
        maxFilesPerTrigger: At most this many objects per micro-batch (default: all that are new).
        maxFileBytes: Objects larger than this are listed as skipped and never read.
        allowedLatenessSeconds: How long after its LastModified an object may still appear in
            a listing (default 60): the uploads' longest duration, with room for clock skew.

    Examples:
        Using the Python API::

            from fruits_kedro.datasets.s3_stream_source import register_s3_stream_source

            register_s3_stream_source(spark)
            photos = (
                spark.readStream.format("fruits_s3_images")
                .option("path", "s3://bucket/fruits/raw")
                .option("maxFilesPerTrigger", 500)
                .load()
            )  # path, relative_path, size, modified, skipped, arrival
    """

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def streamReader(self, schema: StructType) -> S3ImageStreamReader:
        return S3ImageStreamReader(self.options)


class _RowsPartition(InputPartition):
    """Listing rows planned on the driver: a task yields them without another S3 call."""

    def __init__(self, rows: list[tuple]) -> None:
        super().__init__(len(rows))
        self.rows = rows


class WatermarkStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Offsets, plans and rows of a source that lists objects with an arrival time (see the
    module docstring); a subclass lists them (:meth:`list_objects`).

    Lives in one Python process beside the driver for the whole query; :meth:`read` runs in
    the executors' Python workers and only yields the rows that were planned here.
    """

    name = SOURCE_NAME

    def __init__(self, source: str, options: dict[str, str]) -> None:
        self._source = source
        self._max_files = positive_int(options, "maxFilesPerTrigger", None, self.name)
        self._max_file_bytes = positive_int(options, "maxFileBytes", None, self.name)
        lateness = positive_int(options, "allowedLatenessSeconds", DEFAULT_LATENESS_SECONDS, self.name)
        self._lateness_ms = 1000 * lateness
        self._target_ms: int | None = None
        # Trigger.AvailableNow: the listing that set the target, with its time, for every batch.
        self._available_now: tuple[int, list[ListedObject]] | None = None
        self._planned: tuple[str, str, list[ListedObject]] | None = None  # (start, end, objects)

    def list_objects(self) -> list[ListedObject]:
        raise NotImplementedError

    def row_values(self, obj: ListedObject) -> tuple:
        """The row of a taken object (the columns of :data:`SCHEMA`, in order)."""
        return obj.row

    def initialOffset(self) -> dict:
        return initial_offset(self._source)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadAllAvailable() if self._max_files is None else ReadMaxFiles(self._max_files)

    def prepareForTriggerAvailableNow(self) -> None:
        """The query takes what this listing holds, in as many batches as its limit needs, and no
        more: so each batch plans from it, with no second listing (nor one to find it done)."""
        listed_at = int(time.time() * 1000)
        listing = self.list_objects()
        self._target_ms = max((obj.modified_ms for obj in listing), default=-1)
        self._available_now = (listed_at, listing)

    def _listing(self) -> tuple[int, list[ListedObject]]:
        """The objects to plan from, and when they were listed (what lands meanwhile is later)."""
        if self._available_now is not None:
            return self._available_now
        listed_at = int(time.time() * 1000)
        return listed_at, self.list_objects()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        check_offset(start, self._source, self.name)
        if isinstance(limit, ReadMaxFiles):
            max_files = limit.max_files
        elif isinstance(limit, ReadMaxRows):
            max_files = limit.max_rows
        else:
            max_files = None
        listed_at, listing = self._listing()
        end, taken = next_offset(
            start,
            listing,
            max_files=max_files,
            now_ms=listed_at,
            lateness_ms=self._lateness_ms,
            target_ms=self._target_ms,
        )
        self._planned = (_key(start), _key(end), taken)
        return end

    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        check_offset(start, self._source, self.name)
        check_offset(end, self._source, self.name)
        if _key(start) == _key(end):
            return []
        if self._planned is not None and self._planned[:2] == (_key(start), _key(end)):
            objects = self._planned[2]
        else:  # a batch planned before a restart: the same objects, listed again
            objects = objects_between(self._listing()[1], start, end)
        rows = [self.row_values(obj) for obj in objects]
        return [_RowsPartition(rows[i : i + ROWS_PER_PARTITION]) for i in range(0, len(rows), ROWS_PER_PARTITION)]

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        yield from partition.rows

    def commit(self, end: dict) -> None:
        """Nothing to release: the offsets are the whole state."""


class S3ImageStreamReader(WatermarkStreamReader):
    """:class:`WatermarkStreamReader` over the objects under an S3 prefix."""

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(_source_url(options), options)
        self._bucket_checked = False

    def list_objects(self) -> list[ListedObject]:
        """Every object under the prefix, as the batch listing sees it."""
        from fruits_kedro.cloud.s3_retries import use_s3_retry_settings
        from fruits_kedro.datasets.image_folder import LISTING_COLUMNS, find_remote, remote_listing_row

        use_s3_retry_settings(self._source)
        import fsspec

        fs, root = fsspec.core.url_to_fs(self._source)
        root = root.rstrip("/")
        # The bucket once: one that goes away later fails the listing itself.
        found = find_remote(fs, self._source, root, "list new images under", check_bucket=not self._bucket_checked)
        self._bucket_checked = True
        listing = []
        for name, info in found.items():
            row = remote_listing_row(fs, root, name, info, self._max_file_bytes)
            if row is not None:
                modified_ms = _epoch_ms(info.get("LastModified"))
                arrival = datetime.fromtimestamp(modified_ms / 1000, tz=UTC)
                values = (*(row[column] for column in LISTING_COLUMNS), arrival)
                listing.append(ListedObject(row["relative_path"], modified_ms, values))
        return listing


def _key(offset: dict[str, Any]) -> str:
    return json.dumps(offset, sort_keys=True)


def _epoch_ms(value: Any) -> int:
    """LastModified as milliseconds since the epoch (s3fs gives an aware datetime)."""
    if value is None:
        raise StreamSourceError("the S3 listing gave an object without LastModified")
    if hasattr(value, "timestamp"):
        return int(round(value.timestamp() * 1000))
    return int(round(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000))


def waiting(listing: Sequence[ListedObject], end: dict[str, Any]) -> tuple[int, datetime | None]:
    """The objects of ``listing`` that the offset ``end`` has not consumed (those waiting after
    the micro-batch that ends there): how many, and the oldest one's arrival (UTC)."""
    pending = pending_objects(listing, end)
    oldest = datetime.fromtimestamp(pending[0].modified_ms / 1000, tz=UTC) if pending else None
    return len(pending), oldest


def register_s3_stream_source(spark) -> str:
    """Register :class:`S3ImageStreamSource` under ``fruits_s3_images``; returns the name.

    Registering captures the SparkContext's environment for the source's Python processes,
    so the driver's AWS settings (``AWS_ENDPOINT_URL`` ...) are forwarded first, and
    registering again after they change is safe.
    """
    from fruits_kedro.spark import forward_aws_environment

    forward_aws_environment(spark.sparkContext)
    spark.dataSource.register(S3ImageStreamSource)
    return SOURCE_NAME
