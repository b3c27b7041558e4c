"""The stream's outputs and its own commit record, beside the batch runs' output set.

Everything lives under one folder (``folder``, e.g. ``data/04_feature/stream``), out of the
``runs/`` folders that a batch run's start cleans up::

    state.json                                   the stream's commit record (one atomic write)
    features/<F>/image_features.parquet/         base/ (adopted from a batch run), b<batch>/, m<batch>/...
    features/<F>/rejected_images.parquet/        b<batch>/...
    pca/<G>/image_features_pca.parquet/          base/ (every row at the fit), b<batch>/...
    pca/<G>/pca_explained_variance.json, basis.npz
    csv/<C>/image_features_pca.csv, image_features_pca.index.arrow (each row's path and length)
    moments/b<batch>.npz                         count, mean, scatter of every feature row so far

Each table folder has the layout of :class:`SparkParquetFsspecDataset` (its reader and
``pandas.read_parquet`` both open it): every micro-batch is saved, with that dataset's two-phase
commit, into its own sub-folder ``b<batch id>`` (a replayed batch replaces its own files), and the
folder's ``_SUCCESS`` manifest names the parts of the batches that ``state.json`` has committed.
Small committed parts are merged into one (``m<batch>``, named by the batch after which they
were merged): Spark never replays a batch that ``state.json`` committed, so no replay can add a
part's rows again beside the merged copy.
``state.json`` is written first, the manifests after it (they are rewritten from it when a driver
is killed in between), and ``current_outputs.json`` names the tables, as a batch run's commit does.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import uuid
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import DatasetError, generate_timestamp

from fruits_kedro.datasets.aws import is_local_path
from fruits_kedro.datasets.output_set import OutputSet, read_text
from fruits_kedro.datasets.spark_csv import index_path
from fruits_kedro.datasets.spark_parquet import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    SparkParquetFsspecDataset,
    write_text_atomically,
)
from fruits_kedro.ml.moments import NO_ROWS, Moments

logger = logging.getLogger(__name__)

STATE_NAME = "state.json"
STATE_FORMAT = "fruits_kedro.stream/1"
TABLES = ("features", "rejected", "pca")
# The stream's outputs, by the names of the batch outputs they stand for.
MEMBERS = ("features", "rejected", "pca", "pca_csv", "pca_report")
BASE = "base"


# A micro-batch's part, and a part that merged smaller ones (named by the batch that merged them).
PART_PREFIXES = ("b", "m")


def batch_folder(batch_id: int) -> str:
    return f"b{batch_id:08d}"


def merged_folder(batch_id: int) -> str:
    return f"m{batch_id:08d}"


def new_state(source: str, settings: str) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "source": source,
        "settings": settings,
        "query_id": None,
        "last_batch": -1,
        "features_id": generate_timestamp(),
        "tables": {name: {"schema": None, "files": [], "rows": 0} for name in TABLES},
        "basis": None,
        "k": None,
        "fitted_rows": 0,
        "moments": None,
        "csv": None,
        "csv_rows": None,
        "csv_parts": None,
        "csv_basis": None,
        "adopted": None,
        "totals": {"listed": 0, "featurized": 0, "already_featurized": 0, "rejected": 0, "skipped": 0},
    }


class StreamStore:
    """The stream's tables and state under ``folder``, published in the output set at ``set_root``.

    Args:
        set_root: The output set's folder (``current_outputs.json``), as in the catalog's ``_outputs``.
        folder: The stream's folder, relative to ``set_root``.
        members: The output set's names (relative to ``set_root``) of ``MEMBERS``: ``features``,
            ``rejected``, ``pca``, ``pca_csv``, ``pca_report``.
        options: fsspec storage options.
    """

    def __init__(self, set_root: str, folder: str, members: dict[str, str], options: dict[str, Any] | None = None):
        missing = [m for m in MEMBERS if m not in members]
        if missing:
            raise DatasetError(f"Stream outputs: 'members' lacks {', '.join(missing)}")
        self.output_set = OutputSet(set_root, options)
        self.relative = str(folder).strip("/")
        self.folder = self.output_set.path(self.relative)
        self.members = {name: str(members[name]).strip("/") for name in MEMBERS}
        self._options = dict(options or {})
        self.state: dict[str, Any] | None = None
        self._committed_moments: str | None = None

    # ---- files --------------------------------------------------------------------------
    def _fs(self):
        fs, root = fsspec.core.url_to_fs(self.folder, **self._options)
        fs.invalidate_cache()
        return fs, root.rstrip("/")

    def path(self, relative: str) -> str:
        """A URL (or local path) under the stream's folder."""
        return f"{self.folder}/{relative}"

    def table_path(self, table: str, state: dict[str, Any] | None = None) -> str:
        state = state or self.state
        if table == "features":
            return self.path(f"features/{state['features_id']}/image_features.parquet")
        if table == "rejected":
            return self.path(f"features/{state['features_id']}/rejected_images.parquet")
        return self.path(f"pca/{state['basis']}/image_features_pca.parquet")

    def read_state(self) -> dict[str, Any] | None:
        fs, root = self._fs()
        text = read_text(fs, f"{root}/{STATE_NAME}")
        if text is None:
            return None
        state = json.loads(text)
        if state.get("format") != STATE_FORMAT:
            raise DatasetError(f"{self.path(STATE_NAME)} is not a {STATE_FORMAT} file")
        self._committed_moments = state["moments"]
        return state

    def write_state(self) -> None:
        """Commit ``state``: one atomic write, then the tables' manifests follow it; the running
        moments it replaced are removed."""
        fs, root = self._fs()
        if is_local_path(self.folder):
            fs.makedirs(root, exist_ok=True)
        write_text_atomically(fs, f"{root}/{STATE_NAME}", json.dumps(self.state, indent=1))
        self.write_manifests()
        replaced, self._committed_moments = self._committed_moments, self.state["moments"]
        if replaced and replaced != self.state["moments"]:
            try:
                fs.rm(f"{root}/{replaced}")
            except FileNotFoundError:
                pass

    def write_manifests(self, tables: tuple[str, ...] = TABLES) -> None:
        """Each table's ``_SUCCESS`` from ``state`` (idempotent: a restart rewrites them)."""
        fs, _ = self._fs()
        for table in tables:
            if not self._has_rows(table):
                continue
            entry = self.state["tables"][table]
            _, folder = fsspec.core.url_to_fs(self.table_path(table), **self._options)
            if is_local_path(self.folder):
                fs.makedirs(folder, exist_ok=True)
            manifest = {"format": MANIFEST_FORMAT, "schema": entry["schema"], "files": entry["files"]}
            manifest["rows"] = entry["rows"]
            write_text_atomically(fs, f"{folder}/{MANIFEST_NAME}", json.dumps(manifest, indent=1))

    def _has_rows(self, table: str) -> bool:
        """Whether ``table`` has a committed folder (a schema; the PCA's, a basis too)."""
        return self.state["tables"][table]["schema"] is not None and (table != "pca" or self.state["basis"] is not None)

    # ---- tables ---------------------------------------------------------------------------
    def save_part(self, table: str, part: str, frame) -> int:
        """Save ``frame`` as the part ``part`` (``b<batch>`` or ``base``) of ``table``, replacing
        that part's files in ``state`` (not committed yet); returns its rows."""
        dataset = SparkParquetFsspecDataset(filepath=f"{self.table_path(table)}/{part}", fs_args=self._options)
        dataset.save(frame)
        fs, _ = self._fs()
        _, folder = fsspec.core.url_to_fs(f"{self.table_path(table)}/{part}", **self._options)
        manifest = json.loads(fs.cat_file(f"{folder}/{MANIFEST_NAME}").decode("utf-8"))
        self.set_part(table, part, [f"{part}/{name}" for name in manifest["files"]], manifest["rows"])
        self.state["tables"][table]["schema"] = manifest["schema"]
        return int(manifest["rows"])

    def set_part(self, table: str, part: str, files: list[str], rows: int) -> None:
        entry = self.state["tables"][table]
        kept = [f for f in entry["files"] if not f.startswith(f"{part}/")]
        dropped_rows = entry.setdefault("part_rows", {}).pop(part, 0)
        entry["files"] = kept + list(files)
        entry["rows"] = entry["rows"] - dropped_rows + rows
        if rows:
            entry["part_rows"][part] = rows

    def small_parts(self, table: str, most_rows: int) -> list[str]:
        """The committed parts of ``table`` with fewer than ``most_rows`` rows, ``base`` aside."""
        parts = self.state["tables"][table].get("part_rows", {})
        return [part for part, rows in parts.items() if part != BASE and rows < most_rows]

    def merge_parts(self, table: str, parts: list[str], into: str) -> int:
        """Save the rows of committed ``parts`` of ``table`` as the one part ``into``, in their
        place in ``state`` (not committed yet); returns its rows."""
        frame = self.load_parts(table, parts)
        # A few files, read in parallel: one task would open every small file in turn.
        rows = self.save_part(table, into, frame.coalesce(frame.sparkSession.sparkContext.defaultParallelism))
        for part in parts:
            self.set_part(table, part, [], 0)
        return rows

    def remove_unnamed_parts(self, tables: tuple[str, ...] = TABLES) -> None:
        """The part folders of ``tables`` that ``state`` does not name: those a merge replaced,
        and those that a killed driver wrote and never committed."""
        fs, _ = self._fs()
        for table in tables:
            if not self._has_rows(table):
                continue
            named = {name.split("/", 1)[0] for name in self.state["tables"][table]["files"]}
            _, folder = fsspec.core.url_to_fs(self.table_path(table), **self._options)
            _remove_entries(fs, folder, named, _is_part)

    def reset_table(self, table: str) -> None:
        self.state["tables"][table] = {"schema": None, "files": [], "rows": 0}

    def load_table(self, table: str):
        """The committed rows of ``table`` (a lazy Spark DataFrame), or None before any."""
        if self.state["tables"][table]["schema"] is None:
            return None
        return SparkParquetFsspecDataset(
            filepath=self.table_path(table), fs_args=self._options, load_args={"missing_ok": True}
        ).load()

    def read_columns(self, table: str, part: str | None, columns: list[str]) -> dict[str, list]:
        """``columns`` of a committed part's rows (None: every part's), on the driver (a few
        narrow columns only)."""
        found: dict[str, list] = {c: [] for c in columns}
        for rows in self.read_tables(table, part, columns):
            for column, values in rows.to_pydict().items():
                found[column].extend(values)
        return found

    def read_tables(self, table: str, part: str | None, columns: list[str]) -> list:
        """``columns`` of a part's files (None: every part's) as Arrow tables, on the driver."""
        import pyarrow.parquet as pq

        fs, _ = self._fs()
        _, folder = fsspec.core.url_to_fs(self.table_path(table), **self._options)
        tables = []
        for name in self.state["tables"][table]["files"]:
            if part is None or name.startswith(f"{part}/"):
                with fs.open(f"{folder}/{name}", "rb") as handle:
                    tables.append(pq.read_table(handle, columns=columns))
        return tables

    def load_part(self, table: str, part: str):
        return SparkParquetFsspecDataset(filepath=f"{self.table_path(table)}/{part}", fs_args=self._options).load()

    def load_parts(self, table: str, parts: list[str]):
        """The rows of committed ``parts`` of ``table`` (a lazy Spark DataFrame), read through
        the table's manifest (one scan, whatever the number of parts)."""
        wanted = set(parts)
        files = [name for name in self.state["tables"][table]["files"] if name.split("/", 1)[0] in wanted]
        return SparkParquetFsspecDataset(filepath=self.table_path(table), fs_args=self._options).load_files(files)

    def csv_to_merge_into(self, parts: list[str]) -> str | None:
        """The current CSV, if the PCA table's ``parts`` hold its rows and more, in its basis, and
        it has its index: the new parts' rows can then be merged into it."""
        state = self.state
        written = state.get("csv_parts")
        if state["csv"] is None or written is None or state.get("csv_basis") != state["basis"]:
            return None
        if not set(written) < set(parts):
            return None
        csv = self.path(f"csv/{state['csv']}/image_features_pca.csv")
        fs, _ = self._fs()
        _, local = fsspec.core.url_to_fs(index_path(csv), **self._options)
        return csv if fs.exists(local) else None

    # ---- moments and basis --------------------------------------------------------------
    def read_moments(self) -> Moments:
        if not self.state["moments"]:
            return NO_ROWS
        fs, root = self._fs()
        with np.load(io.BytesIO(fs.cat_file(f"{root}/{self.state['moments']}"))) as data:
            return int(data["n"]), data["mean"], data["scatter"]

    def write_moments(self, moments: Moments, name: str) -> str:
        """The running moments after a batch, under a name of that batch (a replay rewrites it)."""
        relative = f"moments/{name}.npz"
        self._write_bytes(relative, _npz(n=np.int64(moments[0]), mean=moments[1], scatter=moments[2]))
        return relative

    def write_basis(self, basis: str, mean: np.ndarray, axes: np.ndarray, report: dict[str, Any]) -> None:
        self._write_bytes(f"pca/{basis}/basis.npz", _npz(mean=mean, axes=axes))
        self._write_bytes(f"pca/{basis}/pca_explained_variance.json", json.dumps(report, indent=2).encode("utf-8"))

    def read_basis(self) -> tuple[np.ndarray, np.ndarray]:
        fs, root = self._fs()
        with np.load(io.BytesIO(fs.cat_file(f"{root}/pca/{self.state['basis']}/basis.npz"))) as data:
            return data["mean"], data["axes"]

    def _write_bytes(self, relative: str, data: bytes) -> None:
        fs, root = self._fs()
        target = f"{root}/{relative}"
        if getattr(fs, "async_impl", False):
            fs.pipe_file(target, data)  # one PUT
            return
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        temp = f"{posixpath.dirname(target)}/.{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp"
        fs.pipe_file(temp, data)
        fs.mv(temp, target)

    # ---- publishing -----------------------------------------------------------------------
    def outputs(self) -> dict[str, str]:
        """The output set's entries that the stream's state names (relative to the set's root)."""
        state = self.state
        found: dict[str, str] = {}
        for table in ("features", "rejected"):
            if state["tables"][table]["schema"] is not None:
                found[self.members[table]] = self.output_set.member_of(self.table_path(table))
        if state["basis"] is not None:
            found[self.members["pca"]] = self.output_set.member_of(self.table_path("pca"))
            found[self.members["pca_report"]] = f"{self.relative}/pca/{state['basis']}/pca_explained_variance.json"
        if state["csv"] is not None:
            found[self.members["pca_csv"]] = f"{self.relative}/csv/{state['csv']}/image_features_pca.csv"
        return found

    def publish(self) -> None:
        """Make the stream's tables current in ``current_outputs.json``, if they are not yet."""
        wanted = self.outputs()
        current = self.output_set.read()
        named = (current or {}).get("outputs", {})
        if all(named.get(member) == path for member, path in wanted.items()):
            return
        self.output_set.commit(f"stream-{self.state['features_id']}", wanted)

    def is_current(self, current: dict[str, Any] | None) -> bool:
        """Whether the set's features are the stream's own (no batch run replaced them since)."""
        named = (current or {}).get("outputs", {}).get(self.members["features"])
        return named is not None and named.startswith(f"{self.relative}/")

    def remove_unused(self) -> None:
        """Folders of bases, fits, CSVs and moments that ``state`` no longer names (best effort);
        the ones it replaced last stay, for readers that opened them."""
        fs, root = self._fs()
        keep = {
            "features": {self.state["features_id"]},
            "pca": {self.state["basis"], self.state.get("previous_basis")},
            "csv": {self.state["csv"], self.state.get("previous_csv")},
            "moments": {posixpath.basename(self.state["moments"] or "")},
        }
        for folder, names in keep.items():
            _remove_entries(fs, f"{root}/{folder}", names, lambda name: not name.startswith("."))


def _is_part(name: str) -> bool:
    return name[:1] in PART_PREFIXES and name[1:].isdigit()


def _remove_entries(fs, folder: str, keep: set[str], removable) -> None:
    """Remove the entries of ``folder`` not named in ``keep`` whose name is ``removable`` (one
    gone already is fine)."""
    try:
        entries = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name not in keep and removable(name):
            try:
                fs.rm(entry, recursive=True)
            except FileNotFoundError:
                pass


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds")
