"""``SparkCSVFileDataset``: a Spark DataFrame saved as ONE CSV file that pandas can read.

Spark's own CSV writer makes a folder of part files (which ``pandas.read_csv`` cannot open)
and needs a Hadoop connector for ``s3://``. Here each task sorts its rows (``sort_by``),
formats them as CSV text (Arrow's writer) and writes the text, with an index of each row's
sort key and length, beside the target through fsspec, which reaches local disk and S3
alike; the driver then merges the sorted parts into one file, reading each part once from
start to end, so its memory stays flat in the number of rows and no Spark sort (a shuffle of
every row) is needed. The file is written under a temporary name and moved into place at the
end: a reader never sees half a file. A frame read straight from a Parquet dataset's parts is
formatted in the tasks that read them (:mod:`fruits_kedro.datasets.arrow_source`).

With ``index``, the merge also writes each row's sort key and byte length beside the file
(``<name>.index.arrow``); a later save with ``merge_with`` naming that file then merges only its
new rows into the old file's text, which is copied, never parsed or formatted again.
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.arrow_source import map_in_arrow
from fruits_kedro.datasets.aws import is_local_path, require_bucket
from fruits_kedro.spark import forward_aws_environment

if TYPE_CHECKING:
    import pandas as pd

WRITTEN_RUNS_SCHEMA = "partition long, run long, text string, keys string, rows long"
READ_BLOCK_BYTES = 1 << 18  # per run file open at once while merging


class SparkCSVFileDataset(AbstractDataset[Any, "pd.DataFrame"]):
    """Save a Spark DataFrame as a single CSV; load it back as pandas.

    Args:
        filepath: The CSV file: a local path or any fsspec URL (``s3://...``).
        save_args: ``sort_by`` (columns to order the rows by), ``rows_per_chunk`` (rows
            an executor sorts and formats at a time, default 5000), ``float_format``,
            ``index`` (also write ``<name>.index.arrow``: each row's sort key and length),
            ``merge_with`` (a CSV saved with ``index`` and the same columns: its rows are kept,
            the saved frame's are merged in by ``sort_by``).
        load_args: Passed to ``pandas.read_csv``.
        credentials: fsspec credentials (the AWS chain when not given).
        fs_args: Other fsspec arguments.
        metadata: Free-form metadata, ignored by Kedro.

    Examples:
        In ``catalog.yml``::

            image_features_pca_csv:
              type: fruits_kedro.datasets.SparkCSVFileDataset
              filepath: data/04_feature/image_features_pca.csv
              save_args: {sort_by: [path]}

        In Python::

            >>> dataset = SparkCSVFileDataset(filepath="features.csv", save_args={"sort_by": ["path"]})
            >>> dataset.save(spark_frame)
            >>> dataset.load().shape
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {
        "sort_by": None,
        "rows_per_chunk": 5000,
        "float_format": None,
        "index": False,
        "merge_with": None,
    }

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
        self._filepath = str(filepath)
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self._load_args = dict(load_args or {})
        self._storage_options = {**(fs_args or {}), **(credentials or {})}
        self.metadata = metadata

    def _fs(self):
        return fsspec.core.url_to_fs(self._filepath, **self._storage_options)

    def save(self, data) -> None:
        fs, path = self._fs()
        require_bucket(fs, self._filepath, "write CSV to")  # s3fs would create a missing bucket
        sort_by = list(self._save_args["sort_by"] or [])
        indexed = bool(self._save_args["index"])
        if indexed and not sort_by:
            raise DatasetError(f"CSV {self._filepath}: 'index' needs 'sort_by'")
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        fs.makedirs(parent, exist_ok=True)
        name = path.rsplit("/", 1)[-1]
        _remove_leftovers(fs, parent, name)
        token = uuid.uuid4().hex
        temp_path = f"{parent}/.{name}.{token}.tmp"
        temp_index = f"{parent}/.{name}.{token}.tmp.index"
        parts = f"{parent}/.{name}.{token}.parts"
        local = is_local_path(self._filepath)
        try:
            import pandas as pd

            header = pd.DataFrame(columns=data.columns).to_csv(index=False).encode("utf-8")
            previous = self._previous_run(fs, header, bool(sort_by))
            if local:
                fs.makedirs(parts, exist_ok=True)
            else:
                forward_aws_environment(data.sparkSession.sparkContext)
            writer = _part_writer(
                parts if local else fs.unstrip_protocol(parts),
                self._storage_options,
                sort_by,
                int(self._save_args["rows_per_chunk"]),
                self._save_args["float_format"],
            )
            written = sorted(tuple(row) for row in map_in_arrow(data, writer, WRITTEN_RUNS_SCHEMA).collect())
            runs = [(f"{parts}/{text}", 0, keys and f"{parts}/{keys}") for _, _, text, keys, _ in written]
            with fs.open(temp_path, "wb") as handle:
                handle.write(header)
                runs = ([previous] if previous else []) + runs
                index = _IndexWriter(fs, temp_index, runs, sort_by) if indexed else None
                _merge_parts(fs, runs, bool(sort_by), handle, index)
                if index:
                    index.close()
            if indexed:
                fs.mv(temp_index, index_path(path))
            fs.mv(temp_path, path)
        except BaseException:
            for temp in (temp_path, temp_index):
                if fs.exists(temp):
                    fs.rm(temp)
            raise
        finally:
            _remove_quietly(fs, parts)

    def _previous_run(self, fs, header: bytes, sorted_rows: bool) -> tuple[str, int, str | None] | None:
        """The ``merge_with`` file as one more run: its text after the header, and its index."""
        if not self._save_args["merge_with"]:
            return None
        _, previous = fsspec.core.url_to_fs(str(self._save_args["merge_with"]), **self._storage_options)
        with fs.open(previous, "rb") as handle:
            found = handle.read(len(header))
        if found != header:
            raise DatasetError(f"CSV {self._save_args['merge_with']} has other columns than the rows to merge into it")
        keys = index_path(previous) if sorted_rows else None
        if keys and not fs.exists(keys):
            raise DatasetError(f"CSV {self._save_args['merge_with']} has no index ({index_path(previous)})")
        return previous, len(header), keys

    def load(self) -> pd.DataFrame:
        import pandas as pd

        fs, path = self._fs()
        if not fs.exists(path):
            raise DatasetError(f"CSV not found: {self._filepath}")
        with fs.open(path, "r", encoding="utf-8") as handle:
            return pd.read_csv(handle, **self._load_args)

    def _exists(self) -> bool:
        fs, path = self._fs()
        return fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "save_args": self._save_args}


def _part_writer(parts: str, options: dict[str, Any], sort_by: list[str], run_rows: int, float_format: str | None):
    """Arrow function: the task's rows in runs of about ``run_rows``, each sorted by ``sort_by``
    and written as CSV text with an index (each row's sort key and byte length) beside it;
    yields one row naming each run's files. A task holds one run at a time, whatever its size."""

    def write_runs(batches: Iterator) -> Iterator:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        stem = f"{partition:05d}-{uuid.uuid4().hex[:12]}"  # each attempt its own files
        run, pending, rows = 0, [], 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            rows += batch.num_rows
            if rows >= run_rows:
                yield _write_run(pending, f"{parts}/{stem}-{run:05d}", options, sort_by, float_format, partition, run)
                run, pending, rows = run + 1, [], 0
        if pending:
            yield _write_run(pending, f"{parts}/{stem}-{run:05d}", options, sort_by, float_format, partition, run)

    return write_runs


def _write_run(batches: list, stem: str, options: dict[str, Any], sort_by: list[str], float_format, partition, run):
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_batches(batches)
    if sort_by:
        table = table.take(pc.sort_indices(table, [(c, "ascending", "at_start") for c in sort_by]))
    data = _csv_bytes(table, float_format)
    with fsspec.open(f"{stem}.csv", "wb", **options) as text:
        text.write(data)
    if sort_by:
        keys = table.select(sort_by).append_column("bytes", pa.array(_row_lengths(data)))
        with fsspec.open(f"{stem}.keys.arrow", "wb", **options) as handle, pa.ipc.new_file(handle, keys.schema) as out:
            out.write_table(keys)
    name = stem.rsplit("/", 1)[-1]
    return pa.RecordBatch.from_pydict(
        {
            "partition": [partition],
            "run": [run],
            "text": [f"{name}.csv"],
            "keys": [f"{name}.keys.arrow" if sort_by else None],
            "rows": [table.num_rows],
        }
    )


def _csv_bytes(chunk, float_format: str | None) -> bytes:
    """Rows as CSV text, every text field quoted (minimal quoting leaves a lone CR bare, which
    readers take for a row end); floats in their shortest exact form, unless ``float_format``."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if float_format is None:
        buffer = io.BytesIO()
        try:
            pa_csv.write_csv(chunk, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
            return buffer.getvalue()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # types Arrow cannot write: pandas can
            pass
    text = chunk.to_pandas().to_csv(  # pandas only here: the workers need not import it otherwise
        index=False, header=False, float_format=float_format, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n"
    )
    return text.encode("utf-8")


def _row_lengths(data: bytes):
    """The byte length of each CSV row in ``data``: rows end at line feeds outside quotes
    (a quote inside a field is doubled, so quotes before a row's end always pair up)."""
    import numpy as np

    raw = np.frombuffer(data, dtype=np.uint8)
    # Positions only (not a running count per byte): memory stays a small multiple of the text.
    quotes = np.flatnonzero(raw == ord('"'))
    feeds = np.flatnonzero(raw == ord("\n"))
    ends = feeds[np.searchsorted(quotes, feeds) % 2 == 0]
    return np.diff(ends + 1, prepend=0)


def index_path(csv_path: str) -> str:
    """The index a save with ``index`` writes beside ``csv_path``."""
    return f"{csv_path.removesuffix('.csv')}.index.arrow"


def _merge_parts(fs, runs: list[tuple[str, int, str | None]], sorted_rows: bool, handle, index=None) -> None:
    """Append the runs' rows (text file, offset of its first row, keys file) to ``handle``:
    merged by their keys, else run after run; ``index`` gets each row's key and length."""
    texts = [fs.open(text, "rb", block_size=READ_BLOCK_BYTES) for text, _, _ in runs]
    try:
        for text, (_, offset, _) in zip(texts, runs, strict=True):
            text.seek(offset)
        if not sorted_rows:
            for text in texts:
                while block := text.read(READ_BLOCK_BYTES):
                    handle.write(block)
            return
        rows = [_keyed_rows(fs, keys, i) for i, (_, _, keys) in enumerate(runs)]
        # Consecutive rows of one run are consecutive in its text: each stretch is copied at once.
        part, stretch = None, 0
        for _, row_part, length, key in heapq.merge(*rows):
            if row_part != part:
                if stretch:
                    _copy(texts[part], handle, stretch)
                part, stretch = row_part, 0
            stretch += length
            if index is not None:
                index.add(key, length)
        if stretch:
            _copy(texts[part], handle, stretch)
    finally:
        for text in texts:
            text.close()


def _copy(source, target, length: int) -> None:
    """The next ``length`` bytes of ``source`` to ``target``, a block at a time."""
    while length > 0:
        block = source.read(min(length, READ_BLOCK_BYTES))
        if not block:
            raise EOFError(f"{getattr(source, 'path', source)} ended {length} bytes before its rows did")
        target.write(block)
        length -= len(block)


class _IndexWriter:
    """Each merged row's sort key and byte length, as an Arrow file written a batch at a time,
    with the schema of the runs' keys (the first run's that has one)."""

    BATCH_ROWS = 65536

    def __init__(self, fs, path: str, runs: list[tuple[str, int, str | None]], sort_by: list[str]) -> None:
        import pyarrow as pa

        schema = pa.schema([(name, pa.string()) for name in sort_by] + [("bytes", pa.int64())])
        for _, _, keys in runs:
            with fs.open(keys, "rb") as handle:
                schema = pa.ipc.open_file(handle).schema
            break
        self._handle = fs.open(path, "wb")
        self._writer = pa.ipc.new_file(self._handle, schema)
        self._schema, self._keys, self._lengths = schema, [], []

    def add(self, key: tuple, length: int) -> None:
        self._keys.append(key)
        self._lengths.append(length)
        if len(self._keys) >= self.BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        values = list(zip(*self._keys, strict=True)) + [self._lengths]
        arrays = [pa.array(list(v), type=field.type) for v, field in zip(values, self._schema, strict=True)]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._keys, self._lengths = [], []

    def close(self) -> None:
        if self._keys:
            self._flush()
        self._writer.close()
        self._handle.close()


def _keyed_rows(fs, keys_path: str, part: int):
    """(sort key, run, byte length, key) of each row of a run, in its order, a batch at a time."""
    import pyarrow as pa

    with fs.open(keys_path, "rb") as handle:
        reader = pa.ipc.open_file(handle)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            lengths = batch.column(batch.num_columns - 1).to_pylist()
            keys = zip(*(batch.column(c).to_pylist() for c in range(batch.num_columns - 1)))
            for key, length in zip(keys, lengths):
                yield tuple(_sortable(v) for v in key), part, length, key


def _sortable(value) -> tuple:
    """Spark's ascending order in Python: nulls first, NaN after every number."""
    if value is None:
        return (0,)
    if isinstance(value, float) and math.isnan(value):
        return (2,)
    return (1, value)


def _remove_quietly(fs, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception:  # noqa: BLE001 - cleanup must never hide the real outcome
        pass


def _remove_leftovers(fs, parent: str, name: str) -> None:
    """Temporary files and parts of killed saves of this CSV: hidden, but never kept."""
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{32}}\.(tmp|tmp\.index|parts)")
    fs.invalidate_cache(parent)
    try:
        entries = fs.ls(parent, detail=False)
    except FileNotFoundError:  # an object store's empty prefix
        return
    for entry in entries:
        if pattern.fullmatch(entry.rstrip("/").rsplit("/", 1)[-1]):
            fs.rm(entry, recursive=True)
