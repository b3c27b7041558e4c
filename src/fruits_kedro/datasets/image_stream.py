"""``ImageStreamDataset``: the photos that arrive under a folder, as a Spark Structured Streaming
source; and ``MicroBatchQueryDataset``: the query that hands each micro-batch to the project's code.

The column contract
-------------------
Whatever the source, the streaming DataFrame that :meth:`ImageStream.read` returns has exactly
these columns (``SOURCE_SCHEMA``), one row per new file, and never the files' bytes:

========== ========= ======================================================================
column     type      value
========== ========= ======================================================================
path       string    the file as the batch listing names it (``image_folder.LISTING_COLUMNS``):
                     a local absolute path; a remote object as its full URL (``s3://B/key``)
size       long      bytes
modified   string    the batch listing's change marker: local ``str(st_mtime)`` (the micro-batch
                     takes it again from one ``os.stat``), S3 the ETag without quotes, as
                     ``ImageFolderDataset`` lists them
arrival    timestamp when the file landed: the latest of its mtime and ctimes (local, see
                     :mod:`~fruits_kedro.datasets.local_stream_source`) or its LastModified (S3);
                     latency and backlog are measured from it
========== ========= ======================================================================

Rows may name hidden files (a part starting with ``.``), files without an image extension, or
files that are too large: the micro-batch applies the batch mode's rules to them.

The source is chosen by ``path``'s protocol, both written with PySpark's Python Data Source
API and registered (``spark.dataSource.register``), both with the same offsets (a watermark on
the arrival time and the files of its lateness window: bounded, exact on replay):

- a local folder: ``fruits_local_images``
  (:mod:`fruits_kedro.datasets.local_stream_source`), a walk of the folder with the batch
  listing's walker. Spark's own file source (``binaryFile``) lists the whole folder through
  Hadoop and restores its log of every path seen at each start: seconds per start at tens of
  thousands of photos, which a run that finds 10 new ones should not pay.
- ``s3://``: ``fruits_s3_images`` (:mod:`fruits_kedro.datasets.s3_stream_source`), a listing of
  the prefix with the project's S3 client (no Hadoop S3 connector needed).

Each is read with ``spark.readStream.format(name).options(**load_args).option("path", folder)
.option("maxFilesPerTrigger", n).load()`` (options arrive as strings; ``path`` has no trailing
``/``); their rows already have the columns above, in that order.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import is_local_path, require_bucket

logger = logging.getLogger(__name__)

SOURCE_COLUMNS = ("path", "size", "modified", "arrival")
SOURCE_SCHEMA = "path string, size long, modified string, arrival timestamp"
S3_SOURCE_FORMAT = "fruits_s3_images"
# The checkpoint's own record of what it belongs to, beside Spark's files.
CHECKPOINT_MARKER = "fruits_kedro_stream.json"
CHECKPOINT_FORMAT = "fruits_kedro.stream_checkpoint/1"


@dataclass(frozen=True)
class ImageStream:
    """A source of arriving photos: ``read()`` gives the streaming DataFrame of the contract."""

    path: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return is_local_path(self.path)

    @property
    def root(self) -> str:
        """The folder as the batch listing writes its paths: absolute, no protocol, for local folders."""
        fs, root = fsspec.core.url_to_fs(self.path)
        root = root.rstrip("/") or "/"
        return root if self.local else fs.unstrip_protocol(root)

    def backlog(self, end: dict[str, Any] | None) -> tuple[int, Any] | None:
        """Files that the source's offset ``end`` (a micro-batch's end) has not consumed: how
        many, and the oldest one's arrival (a UTC ``datetime``); None where this is not known.
        One more walk of the folder or listing of the prefix."""
        if end is None:
            return None
        from fruits_kedro.datasets.s3_stream_source import S3ImageStreamReader, waiting

        if self.local:
            from fruits_kedro.datasets.local_stream_source import LocalImageStreamReader

            return waiting(LocalImageStreamReader({"path": self.root}).list_objects(), end)
        return waiting(S3ImageStreamReader({"path": self.root}).list_objects(), end)

    def read(self, max_files_per_trigger: int | None = None):
        """The streaming DataFrame of ``SOURCE_COLUMNS`` (see the module's docstring)."""
        from fruits_kedro.spark import get_spark, warm_python_workers

        spark = get_spark()
        # Its micro-batches run Python tasks: their workers start while the query does.
        warm_python_workers(spark, ("fruits_kedro.inference.featurize", "fruits_kedro.datasets.s3_stream_source"))
        options = dict(self.options)
        if max_files_per_trigger is not None:
            options["maxFilesPerTrigger"] = str(int(max_files_per_trigger))
        if self.local:
            from fruits_kedro.datasets.local_stream_source import register_local_stream_source

            source = register_local_stream_source(spark)
        else:
            from fruits_kedro.datasets.s3_stream_source import register_s3_stream_source

            # Registering captures the AWS settings for the source's processes: forwarded first.
            source = register_s3_stream_source(spark)
        frame = spark.readStream.format(source).options(**options).option("path", self.root).load()
        return frame.select(*SOURCE_COLUMNS)


class ImageStreamDataset(AbstractDataset[None, ImageStream]):
    """The photos arriving under ``path`` (a local folder or ``s3://``), as a streaming source; read-only.

    Loading starts nothing: it returns an :class:`ImageStream`, whose ``read()`` gives the
    streaming DataFrame, with the micro-batch size the run's parameters choose.

    Args:
        path: The folder: a local path or an ``s3://`` URL.
        load_args: Source options handed to it as they are (``allowedLatenessSeconds``,
            ``maxFileBytes``: see the sources' modules).
        metadata: Any arbitrary metadata; ignored by Kedro.

    Examples:
        Using the YAML API (``conf/base/catalog.yml``)::

            new_photos:
              type: fruits_kedro.datasets.ImageStreamDataset
              path: data/01_raw/fruits
              load_args:
                allowedLatenessSeconds: 60

        Using the Python API::

            from fruits_kedro.datasets import ImageStreamDataset

            stream = ImageStreamDataset(path="data/01_raw/fruits").load()
            frame = stream.read(max_files_per_trigger=500)  # path, size, modified, arrival
    """

    def __init__(
        self, *, path: str, load_args: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self._stream = ImageStream(str(path), {str(k): _option(v) for k, v in (load_args or {}).items()})
        self.metadata = metadata

    def load(self) -> ImageStream:
        fs, root = fsspec.core.url_to_fs(self._stream.path)
        if self._stream.local:
            if not fs.isdir(root):
                raise DatasetError(f"Image folder not found: {self._stream.path}")
        else:  # a mistyped bucket is named before the stream writes its outputs to it
            require_bucket(fs, self._stream.path, "stream new images from")
        return self._stream

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: put photos under {self._stream.path} instead")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._stream.path, "load_args": self._stream.options}


def _option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class MicroBatchJob:
    """What :class:`MicroBatchQueryDataset` runs: ``process(frame, batch_id)`` on each micro-batch
    of ``frame`` (a streaming DataFrame), started with ``trigger`` (the keyword arguments of
    ``DataStreamWriter.trigger``).

    ``source`` names what the checkpoint belongs to; ``before_start(checkpoint, marker)`` is
    called before the query starts (``marker`` is None for a new checkpoint) and raises if the
    checkpoint does not match the state the job continues from; ``on_stop()`` runs once the
    query has ended by itself or was stopped (not when it failed).
    """

    frame: Any
    process: Callable[[Any, int], None]
    trigger: dict[str, Any]
    source: str
    name: str = "fruits_kedro_stream"
    before_start: Callable[[str, dict[str, Any] | None], None] | None = None
    on_stop: Callable[[], None] | None = None


class StreamCheckpointError(DatasetError):
    """The checkpoint is missing, or belongs to another source or another stream's outputs."""


class MicroBatchQueryDataset(AbstractDataset[MicroBatchJob, None]):
    """Runs a streaming query whose micro-batches go to the project's code (``foreachBatch``),
    checkpointed at ``checkpoint``; keeps the query's handle (``query``).

    Saving a :class:`MicroBatchJob` starts the query and waits for it: until the source has
    nothing left (``availableNow``), or until it is stopped (``processingTime``: Ctrl-C, or
    ``stop()`` from another thread). Progress of every micro-batch is in Spark's event log.

    Args:
        path: The query's checkpoint folder (offsets, commits, the source's seen files).
        metadata: Any arbitrary metadata; ignored by Kedro.

    Examples:
        Using the YAML API (``conf/base/catalog.yml``)::

            stream_query:
              type: fruits_kedro.datasets.MicroBatchQueryDataset
              path: data/04_feature/stream/checkpoint

        Using the Python API::

            dataset = MicroBatchQueryDataset(path="/tmp/checkpoint")
            dataset.save(MicroBatchJob(frame, process, {"availableNow": True}, source="data/01_raw/fruits"))
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._checkpoint = str(path).rstrip("/")
        self.query = None
        self.metadata = metadata

    @property
    def checkpoint(self) -> str:
        return self._checkpoint

    def save(self, data: MicroBatchJob) -> None:
        marker = self.read_marker()
        if marker is not None and marker.get("source") != data.source:
            raise StreamCheckpointError(
                f"Checkpoint {self._checkpoint} belongs to the stream of {marker.get('source')}, not of "
                f"{data.source}: give this source its own checkpoint (catalog entry of the stream's checkpoint)."
            )
        if data.before_start is not None:
            data.before_start(self._checkpoint, marker)
        if marker is None:
            self._write_marker(data.source)
        writer = (
            data.frame.writeStream.queryName(data.name)
            .foreachBatch(data.process)
            .option("checkpointLocation", self._checkpoint)
            .trigger(**data.trigger)
        )
        self.query = writer.start()
        logger.info("Streaming query %s started (checkpoint %s, trigger %s)", data.name, self._checkpoint, data.trigger)
        try:
            self.query.awaitTermination()
        except KeyboardInterrupt:
            logger.info("Stopping the streaming query (the micro-batch under way finishes first)")
        finally:
            if self.query.isActive:
                self.query.stop()
        if self.query.exception() is None and data.on_stop is not None:
            data.on_stop()

    def stop(self) -> None:
        """Stop the running query (it finishes the micro-batch under way first)."""
        if self.query is not None and self.query.isActive:
            self.query.stop()

    def load(self) -> None:
        raise DatasetError(f"{type(self).__name__} runs a query; its outputs are other datasets")

    def read_marker(self) -> dict[str, Any] | None:
        """The checkpoint's record of its source, or None for a checkpoint that has none yet.

        Raises:
            StreamCheckpointError: Spark's files are there but the record is not: a checkpoint
                that another program made.
        """
        fs, root = fsspec.core.url_to_fs(self._checkpoint)
        fs.invalidate_cache()
        try:
            text = fs.cat_file(posixpath.join(root, CHECKPOINT_MARKER)).decode("utf-8")
        except FileNotFoundError:
            if fs.exists(posixpath.join(root, "offsets")):
                raise StreamCheckpointError(
                    f"Checkpoint {self._checkpoint} was not made by this project's stream "
                    f"(no {CHECKPOINT_MARKER}): point the stream's checkpoint elsewhere."
                ) from None
            return None
        marker = json.loads(text)
        if marker.get("format") != CHECKPOINT_FORMAT:
            raise StreamCheckpointError(f"{self._checkpoint}/{CHECKPOINT_MARKER} is not a {CHECKPOINT_FORMAT} file")
        return marker

    def _write_marker(self, source: str) -> None:
        from fruits_kedro.datasets.spark_parquet import write_text_atomically

        fs, root = fsspec.core.url_to_fs(self._checkpoint)
        if is_local_path(self._checkpoint):
            fs.makedirs(root, exist_ok=True)
        marker = {"format": CHECKPOINT_FORMAT, "source": source}
        write_text_atomically(fs, posixpath.join(root, CHECKPOINT_MARKER), json.dumps(marker) + "\n")

    def _describe(self) -> dict[str, Any]:
        return {"checkpoint": self._checkpoint}
