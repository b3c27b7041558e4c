"""``SparkParquetFsspecDataset``: a Spark DataFrame as a folder of Parquet files, written and
read by the executors through pyarrow + fsspec.

Why not Spark's own writer: ``df.write.parquet("s3://...")`` needs a Hadoop S3 connector
(EMRFS on EMR, hadoop-aws elsewhere), which a laptop Spark and a plain S3-compatible
endpoint do not have. fsspec reaches local disk, S3 (and any endpoint set by
``AWS_ENDPOINT_URL``) the same way on a laptop and on EMR, so one catalog entry type
works in every environment.

Layout of ``filepath`` once saved::

    part-00000-<id>.parquet ...   one file per non-empty partition, written by its task
    _SUCCESS                      JSON manifest: Spark schema, the part files, the row count

Saving is a two-phase commit. Each task writes its part under
``_temporary/<job id>/`` (``_``-prefixed names are ignored by Spark, pyarrow and this
dataset) and reports the file name back; only files reported by *successful* task attempts
are committed, so retried or speculative attempts leave nothing behind. The driver then
moves the parts into place, writes ``_SUCCESS`` last (one PUT on S3, an atomic rename on
disk) and only then deletes the previous version's parts. :meth:`load` reads exactly the
files the manifest lists: a reader sees either the previous complete dataset or the new
one, never a mix or half of one.

Loading reads the parts inside the executors (one Spark partition per part file, via
``mapInArrow``), not on the driver: ``image_features`` for the full Fruits-360 is
hundreds of MB of float arrays, which must not funnel through the driver's memory.

Uses only APIs present in Spark 3.5 (EMR 7) and 4.x: ``DataFrame.mapInArrow``,
``DataFrame.sparkSession``, ``TaskContext.partitionId``, ``StructType.fromJson``.
"""

from __future__ import annotations

import json
import logging
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.cloud.s3_retries import use_s3_retry_settings
from fruits_kedro.datasets.arrow_source import map_in_arrow, with_arrow_source
from fruits_kedro.datasets.aws import (
    describe_s3_error,
    is_local_path,
    require_bucket,
    storage_options,
)
from fruits_kedro.datasets.files import StorageUnavailableError, storage_failure
from fruits_kedro.spark import forward_aws_environment

logger = logging.getLogger(__name__)

MANIFEST_NAME = "_SUCCESS"
STAGING_FOLDER = "_temporary"
MANIFEST_FORMAT = "fruits_kedro.parquet/1"
WRITTEN_FILES_SCHEMA = "file string, rows long"
_ROWS_ATTRIBUTE = "_fruits_kedro_rows"


def row_count(frame) -> int:
    """``frame.count()``, without reading a single part where ``frame`` is what
    :meth:`SparkParquetFsspecDataset.load` returned: its manifest counted the rows as they
    were written (a count would read every feature through the JVM)."""
    rows = getattr(frame, _ROWS_ATTRIBUTE, None)
    return frame.count() if rows is None else rows


class SparkParquetFsspecDataset(AbstractDataset[Any, Any]):
    """Save/load a Spark DataFrame as Parquet through fsspec, from the executors.

    Args:
        filepath: The dataset's folder: a local path or any fsspec URL (``s3://...``).
        save_args: ``compression`` (pyarrow codec, default ``snappy``), ``row_group_rows``.
            Saving always replaces the previous version (Kedro's ``mode: overwrite``).
        load_args: ``batch_rows`` (rows per Arrow batch handed to Spark, default 4096);
            ``missing_ok`` (default false): load ``None`` instead of failing when nothing
            was saved yet.
        credentials: fsspec credentials (the AWS chain when not given).
        fs_args: Other fsspec arguments.
        metadata: Free-form metadata, ignored by Kedro.

    Examples:
        In ``catalog.yml``::

            image_features_pca:
              type: fruits_kedro.datasets.SparkParquetFsspecDataset
              filepath: s3://${runtime_params:bucket}/fruits/features/image_features_pca.parquet

        In Python::

            >>> dataset = SparkParquetFsspecDataset(filepath="data/04_feature/table.parquet")
            >>> dataset.save(spark.range(10))
            >>> dataset.load().count()
            10
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {"compression": "snappy", "row_group_rows": 100_000}
    DEFAULT_LOAD_ARGS: dict[str, Any] = {"batch_rows": 4096, "missing_ok": False}

    def __init__(
        self,
        *,
        filepath: str,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath).rstrip("/")
        save_args = dict(save_args or {})
        mode = save_args.pop("mode", "overwrite")
        if mode != "overwrite":
            raise DatasetError(
                f"{type(self).__name__} ({self._filepath}): only save_args.mode 'overwrite' is supported, got {mode!r}"
            )
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **save_args}
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._storage_options = storage_options(credentials, fs_args)
        self.metadata = metadata

    # ---- paths ------------------------------------------------------------------------
    def _fs(self):
        fs, root = fsspec.core.url_to_fs(self._filepath, **self._storage_options)
        root = root.rstrip("/")
        # fsspec reuses filesystem instances and their listings; the executors (other
        # processes) change this folder behind the driver's back, so never trust a cache.
        fs.invalidate_cache(root)
        return fs, root

    def _uri(self, fs, path: str) -> str:
        """A URI the executors can open: local paths stay paths, others keep their protocol."""
        return path if is_local_path(self._filepath) else fs.unstrip_protocol(path)

    # ---- save -------------------------------------------------------------------------
    def save(self, data) -> None:
        fs, root = self._fs()
        require_bucket(fs, self._filepath, "write Parquet to")
        # Parts that attempts of killed runs left behind: never visible, but never kept either.
        _remove_quietly(fs, f"{root}/{STAGING_FOLDER}")
        staging = f"{root}/{STAGING_FOLDER}/{uuid.uuid4().hex}"
        try:
            self._prepare_staging(fs, staging)
            written = self._write_parts(data, self._uri(fs, staging))
            self._commit(fs, root, staging, written, data.schema.json())
        except DatasetError:
            raise
        except Exception as exc:
            storage = storage_failure(exc)
            if storage:
                raise DatasetError(
                    f"{storage}. Spark retried the task and gave up; {self._filepath} was not replaced."
                ) from exc
            message = (
                describe_s3_error(exc, self._filepath, "write Parquet to")
                if not is_local_path(self._filepath)
                else None
            )
            if message:
                raise DatasetError(message) from exc
            raise
        finally:
            _remove_quietly(fs, staging)

    def _prepare_staging(self, fs, staging: str) -> None:
        if is_local_path(self._filepath):
            # Executors on this machine write straight into it; object stores need no folders.
            fs.makedirs(staging, exist_ok=True)

    def _write_parts(self, data, staging_uri: str) -> list[tuple[str, int]]:
        if not is_local_path(self._filepath):
            forward_aws_environment(data.sparkSession.sparkContext)
        writer = _part_writer(
            staging_uri,
            self._storage_options,
            str(self._save_args["compression"]),
            int(self._save_args["row_group_rows"]),
        )
        # Inside the reading tasks where data comes straight from part files (arrow_source).
        rows = map_in_arrow(data, writer, WRITTEN_FILES_SCHEMA).collect()
        return sorted((row["file"], int(row["rows"])) for row in rows)

    def _commit(self, fs, root: str, staging: str, written: list[tuple[str, int]], schema_json: str) -> None:
        previous = self._committed_files(fs, root)
        names = [name for name, _ in written]
        _move_all(fs, [f"{staging}/{n}" for n in names], [f"{root}/{n}" for n in names])
        manifest = {
            "format": MANIFEST_FORMAT,
            "schema": json.loads(schema_json),
            "files": names,
            "rows": sum(rows for _, rows in written),
        }
        write_text_atomically(fs, f"{root}/{MANIFEST_NAME}", json.dumps(manifest, indent=1))
        stale = [f"{root}/{n}" for n in previous if n not in set(names)]
        stale += self._foreign_files(fs, root, keep=set(names))
        if stale:
            fs.rm(sorted(set(stale)), recursive=True)  # recursive: a Spark-written folder may hold partition dirs
        logger.info("Saved %d rows in %d Parquet part(s) to %s", manifest["rows"], len(names), self._filepath)

    def _committed_files(self, fs, root: str) -> list[str]:
        try:
            return list(self._read_manifest(fs, root)["files"])
        except (FileNotFoundError, DatasetError):
            return []

    @staticmethod
    def _foreign_files(fs, root: str, keep: set[str]) -> list[str]:
        """Data files in the folder that no manifest owns (e.g. an earlier Spark-written
        version): overwrite means the folder ends up holding the new dataset only."""
        fs.invalidate_cache(root)
        if not fs.isdir(root):
            return []
        out = []
        for info in fs.ls(root, detail=True):
            name = posixpath.basename(info["name"].rstrip("/"))
            if name.startswith(("_", ".")) or name in keep:
                continue
            out.append(info["name"])
        return out

    # ---- load -------------------------------------------------------------------------
    def load(self):
        fs, root = self._fs()
        manifest = self._committed(fs, root)
        if manifest is None:
            return None
        return self._frame(fs, root, manifest["files"], manifest["schema"], int(manifest["rows"]))

    def load_files(self, names: list[str]):
        """Like :meth:`load`, the rows of some of the committed files only: ``names``, relative
        to the folder, as the manifest lists them (for a reader that knows which parts it wants)."""
        fs, root = self._fs()
        manifest = self._committed(fs, root)
        unknown = sorted(set(names) - set(manifest["files"] if manifest else []))
        if unknown:
            raise DatasetError(f"{self._filepath}: not committed files: {', '.join(unknown[:3])}")
        return self._frame(fs, root, names, manifest["schema"], None)

    def _committed(self, fs, root: str) -> dict[str, Any] | None:
        require_bucket(fs, self._filepath, "read Parquet from")
        try:
            return self._read_manifest(fs, root)
        except FileNotFoundError:
            if self._load_args["missing_ok"]:
                return None  # e.g. the previous run's features, on a first run
            raise DatasetError(
                f"No committed Parquet dataset at {self._filepath}: {MANIFEST_NAME} is missing "
                "(never saved, or a save did not finish)."
            ) from None
        except Exception as exc:
            message = describe_s3_error(exc, self._filepath, "read") if not is_local_path(self._filepath) else None
            if message:
                raise DatasetError(message) from exc
            raise

    def _frame(self, fs, root: str, names: list[str], schema_json: dict[str, Any], rows: int | None):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from fruits_kedro.spark import get_spark

        schema = T.StructType.fromJson(schema_json)
        spark = get_spark()
        files = [self._uri(fs, f"{root}/{name}") for name in names]
        if not files:
            return spark.createDataFrame([], schema)
        if not is_local_path(self._filepath):
            forward_aws_environment(spark.sparkContext)
        # One row per partition: each part file is read by its own task. Made in the JVM: a
        # Python RDD would need a Python worker only to hand out the file names.
        names_column = F.array(*(F.lit(f) for f in files))
        file_rows = spark.range(0, len(files), 1, len(files)).select(
            F.element_at(names_column, F.col("id").cast("int") + 1).alias("file")
        )
        reader = _part_reader(self._storage_options, int(self._load_args["batch_rows"]))
        frame = with_arrow_source(file_rows.mapInArrow(reader, schema), file_rows, reader)
        if rows is not None:
            setattr(frame, _ROWS_ATTRIBUTE, rows)
        return frame

    def _read_manifest(self, fs, root: str) -> dict[str, Any]:
        with fs.open(f"{root}/{MANIFEST_NAME}", "r", encoding="utf-8") as handle:
            text = handle.read()
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError:
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise DatasetError(
                f"{self._filepath}/{MANIFEST_NAME} is not a {type(self).__name__} manifest "
                "(a folder written by Spark's own writer? read it with spark.SparkDataset, or save it again)."
            )
        return manifest

    def _exists(self) -> bool:
        fs, root = self._fs()
        return fs.exists(f"{root}/{MANIFEST_NAME}")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "save_args": self._save_args, "load_args": self._load_args}


# --------------------------------------------------------------------------------------
# Executor side. Module-level factories, so that the closures pickle small and clean.
# --------------------------------------------------------------------------------------
def _part_writer(staging_uri: str, options: dict[str, Any], compression: str, row_group_rows: int):
    def write_partition(batches: Iterator) -> Iterator:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        use_s3_retry_settings(staging_uri)
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        # Each attempt its own name: a retried or speculative attempt never overwrites another's.
        name = f"part-{partition:05d}-{uuid.uuid4().hex[:12]}.parquet"
        uri = f"{staging_uri}/{name}"
        writer = None
        rows = 0
        handle = None
        try:
            for batch in batches:  # errors of the computation itself pass through as they are
                if batch.num_rows == 0:
                    continue
                with _storage_errors("write", uri):
                    if writer is None:
                        # No bucket check and creation per part: the driver checked the bucket.
                        handle = fsspec.open(uri, "wb", auto_mkdir=False, **options).open()
                        writer = pq.ParquetWriter(
                            handle,
                            batch.schema,
                            compression=compression,
                            use_dictionary=dictionary_columns(batch.schema),
                        )
                    writer.write_batch(batch, row_group_size=row_group_rows)
                rows += batch.num_rows
            with _storage_errors("write", uri):
                if writer is not None:
                    writer.close()
                if handle is not None:
                    handle.close()  # on S3, the upload completes here
        except BaseException:
            if handle is not None and not handle.closed:
                _close_quietly(handle)
            raise
        if rows:  # an empty partition writes no file
            yield pa.RecordBatch.from_pydict({"file": [name], "rows": [rows]})

    return write_partition


def dictionary_columns(schema) -> list[str]:
    """The columns worth dictionary-encoding: all but floating-point ones (and lists of them),
    whose values rarely repeat: there the encoding costs time and makes the file larger."""
    import pyarrow.types as pat

    def floating(data_type) -> bool:
        while pat.is_list(data_type) or pat.is_large_list(data_type) or pat.is_fixed_size_list(data_type):
            data_type = data_type.value_type
        return pat.is_floating(data_type)

    return [field.name for field in schema if not floating(field.type)]


def _part_reader(options: dict[str, Any], batch_rows: int):
    def read_files(batches: Iterator) -> Iterator:
        import pyarrow.parquet as pq

        for batch in batches:
            for uri in batch.column(0).to_pylist():
                use_s3_retry_settings(uri)
                with _storage_errors("read", uri), fsspec.open(uri, "rb", **options) as handle:
                    yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_rows)

    return read_files


@contextmanager
def _storage_errors(action: str, uri: str):
    """I/O errors of a part file are the storage's (its bytes are in memory or were written
    by us): say which file, so the run's failure names it."""
    try:
        yield
    except (StorageUnavailableError, GeneratorExit):
        raise
    except (OSError, RuntimeError) as exc:  # s3fs/aiohttp/botocore errors derive from these
        known = None if is_local_path(uri) else describe_s3_error(exc, uri, action)
        raise StorageUnavailableError(known or f"Cannot {action} {uri}: {type(exc).__name__}: {exc}") from exc


def _close_quietly(handle) -> None:
    try:
        handle.close()
    except Exception:  # noqa: BLE001 - the error that got us here is the one to report
        logger.debug("Could not close %s", handle, exc_info=True)


# --------------------------------------------------------------------------------------
# Driver-side file operations.
# --------------------------------------------------------------------------------------
def _move_all(fs, sources: list[str], destinations: list[str]) -> None:
    if not sources:
        return
    if getattr(fs, "async_impl", False):
        # Object stores: one batch of concurrent server-side copies, then one bulk delete.
        fs.copy(sources, destinations)
        fs.rm(sources)
    else:
        for source, destination in zip(sources, destinations):
            fs.mv(source, destination)  # a rename on local disk


def write_text_atomically(fs, path: str, text: str) -> None:
    if getattr(fs, "async_impl", False):
        fs.pipe_file(path, text.encode("utf-8"))  # one PUT: readers see the old or the new object
        return
    temp = f"{posixpath.dirname(path)}/.{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp"
    fs.pipe_file(temp, text.encode("utf-8"))
    fs.mv(temp, path)


def _remove_quietly(fs, path: str) -> None:
    """Best-effort cleanup of the staging folder; a leftover is harmless (``_``-prefixed)."""
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
        parent = posixpath.dirname(path)
        if not getattr(fs, "async_impl", False) and fs.isdir(parent) and not fs.ls(parent):
            fs.rmdir(parent)  # local disk keeps empty folders; object stores have none
    except Exception:  # noqa: BLE001 - cleanup must never hide the real outcome
        logger.debug("Could not remove staging folder %s", path, exc_info=True)
