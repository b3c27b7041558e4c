"""What the stream does with each micro-batch, on the driver (``foreachBatch``), with the batch
mode's modules: the listing rules (:mod:`fruits_kedro.datasets.photo_rules`), the featurization
(:func:`fruits_kedro.inference.featurize.featurize_images`), the PCA's moments and projection
(:mod:`fruits_kedro.ml.pca`), the Parquet and CSV datasets and the output set.

Per micro-batch ``b``:

1. the batch's rows (paths, sizes, stamps: never bytes) become listing rows as the batch listing
   makes them (a local file is ``stat``-ed: special files are skipped, ``modified`` is its exact
   mtime text), then the ingestion's rules say which are photos, with their labels;
2. photos whose (path, size, modified) a batch run already featurized are left out (counted);
3. the others are featurized in the executors, and saved as ``b``'s part of the features (and of
   the rejected photos, with their reasons);
4. ``b``'s features' moments are merged into the running ones (float64), and ``b`` is projected
   with the current basis (its rows carry the basis id, ``pca_basis``);
5. ``state.json`` is committed (the commit point), then the tables' manifests;
6. when the rows have grown by ``refit_growth`` since the last fit, the basis is fitted again from
   the running moments (no feature row is read for it), every row is projected with it, the CSV is
   written, and the new set becomes current through ``current_outputs.json``;
7. once a table has ``compact_parts`` small parts (fewer than ``compact_rows`` rows each), they
   are merged into one, committed by ``state.json`` as well.

A batch that Spark replays after a crash replaces its own files (every file of ``b`` is named by
``b``); one that ``state.json`` already committed is not run again.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kedro.io.core import generate_timestamp

from fruits_kedro import progress
from fruits_kedro.datasets.arrow_source import with_constant_column
from fruits_kedro.datasets.files import os_path
from fruits_kedro.datasets.image_folder import listing_frame, local_listing_row
from fruits_kedro.datasets.image_stream import ImageStream, StreamCheckpointError
from fruits_kedro.datasets.photo_rules import labelled, skip_reason
from fruits_kedro.datasets.spark_csv import SparkCSVFileDataset
from fruits_kedro.datasets.spark_parquet import SparkParquetFsspecDataset
from fruits_kedro.feature_settings import IMAGE_KEY, SETTINGS_COLUMN
from fruits_kedro.inference.featurize import featurize_images
from fruits_kedro.ml.moments import batches_moments, merge_moments
from fruits_kedro.ml.pca import SCORE_ID_COLUMNS, column_moments, fit_from_moments, project_columns
from fruits_kedro.streaming.store import BASE, TABLES, StreamStore, batch_folder, merged_folder, new_state

logger = logging.getLogger(__name__)
_BACKLOG = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-backlog")

BASIS_COLUMN = "pca_basis"
GONE = "file is gone: listed, then removed before it was read"
REPLACED = "replaced under the name of a featurized photo: the next incremental batch run featurizes it"
# A driver paused here (point@batch) waits to be killed: the exactly-once tests' fault points.
PAUSE_VARIABLE = "FRUITS_KEDRO_STREAM_PAUSE"
PAUSE_MARKER_VARIABLE = "FRUITS_KEDRO_STREAM_PAUSE_MARKER"


@dataclass
class StreamSettings:
    """What a micro-batch needs from the run's parameters."""

    backbone: dict[str, Any]
    preprocessing: dict[str, Any]
    feature_extraction: dict[str, Any]
    extensions: list[str]
    max_file_bytes: int | None
    variance_threshold: float
    max_components: int | None
    refit_growth: float
    refit_min_rows: int
    compact_parts: int
    compact_rows: int
    feature_settings: str
    totals: Counter = field(default_factory=Counter)


class MicroBatches:
    """The ``foreachBatch`` function of the stream, and what runs before and after its query."""

    def __init__(self, stream: ImageStream, store: StreamStore, settings: StreamSettings) -> None:
        self.stream = stream
        self.store = store
        self.settings = settings
        self.checkpoint: str | None = None
        self._known: tuple[set[tuple], set[str]] | None = None
        self._root = stream.root

    # ---- before the query -----------------------------------------------------------------
    def before_start(self, checkpoint: str, marker: dict[str, Any] | None) -> None:
        """Check that the checkpoint is the stream's own, then :meth:`prepare`."""
        self.check_checkpoint(checkpoint)
        self.prepare()

    def check_checkpoint(self, checkpoint: str) -> None:
        """The checkpoint must be the one the stream's outputs were made with: one that was
        deleted, or that another stream made, would have Spark list every photo again."""
        self.checkpoint = checkpoint
        state = self.store.read_state()
        query_id = _spark_query_id(checkpoint)
        if state is None:
            if query_id is not None and _has_commits(checkpoint):
                raise StreamCheckpointError(
                    f"Checkpoint {checkpoint} has already seen photos, but the stream's outputs "
                    f"({self.store.path('state.json')}) are missing: delete the checkpoint to start over."
                )
            return
        if state["last_batch"] >= 0 and query_id is None:
            raise StreamCheckpointError(
                f"Checkpoint {checkpoint} is missing or new, but the stream's outputs under {self.store.folder} "
                f"record {state['last_batch'] + 1} committed micro-batches: restore the checkpoint, or delete "
                f"{self.store.folder} to featurize everything again."
            )
        if state.get("query_id") and query_id is not None and query_id != state["query_id"]:
            raise StreamCheckpointError(
                f"Checkpoint {checkpoint} belongs to another stream (query {query_id}) than the outputs "
                f"under {self.store.folder} (query {state['query_id']}): point the checkpoint back at its own."
            )
        if state["source"] != self.stream.path:
            raise StreamCheckpointError(
                f"The stream's outputs under {self.store.folder} are of {state['source']}, not of {self.stream.path}."
            )

    def prepare(self) -> None:
        """Load the stream's state; start from a batch run's features when one replaced the
        stream's (or came first); repair what a killed driver left between two commits."""
        store = self.store
        state = store.read_state()
        current = store.output_set.read()
        if state is not None and state["settings"] != self.settings.feature_settings:
            raise StreamCheckpointError(
                f"The stream's features under {store.folder} were made with other feature settings "
                f"({state['settings']}, now {self.settings.feature_settings}): delete {store.folder} "
                "(checkpoint included) to featurize everything again with these."
            )
        if state is None or not store.is_current(current) and _names_features(current, store):
            previous = state
            store.state = new_state(self.stream.path, self.settings.feature_settings)
            if previous is not None:
                store.state.update({k: previous[k] for k in ("query_id", "last_batch", "totals")})
            self._adopt(current)
        else:
            store.state = state
            store.write_manifests()
        # A PCA fitted since by `kedro run --pipelines dimensionality_reduction` is a refit on demand.
        pca = (current or {}).get("outputs", {}).get(store.members["pca"])
        refitted_elsewhere = store.state["basis"] is not None and pca != store.outputs().get(store.members["pca"])
        if self._refit_due() or refitted_elsewhere:
            self._refit()
        store.write_state()
        store.publish()
        store.remove_unused()
        store.remove_unnamed_parts()  # a merge or a batch that a killed driver left uncommitted

    def _adopt(self, current: dict[str, Any] | None) -> None:
        """Start from the current features of a batch run, if they were made with these settings."""
        store = self.store
        if not _names_features(current, store):
            store.write_state()
            return
        source = store.output_set.path(current["outputs"][store.members["features"]])
        base = SparkParquetFsspecDataset(filepath=source, load_args={"missing_ok": True}).load()
        if base is None:
            store.write_state()
            return
        stored = base.select(SETTINGS_COLUMN).limit(1).collect() if SETTINGS_COLUMN in base.columns else []
        if not stored or stored[0][0] != self.settings.feature_settings:
            logger.warning("Stream: the current features (%s) were made with other settings: not reused", source)
            store.write_state()
            return
        rows = store.save_part("features", BASE, base)
        store.state["adopted"] = {"from": source, "at": time.time()}
        moments = column_moments(store.load_part("features", BASE), "features")
        store.state["moments"] = store.write_moments(moments, BASE)
        logger.info("Stream: starting from the %d features of %s", rows, source)
        store.write_state()

    # ---- each micro-batch -------------------------------------------------------------------
    def __call__(self, frame, batch_id: int) -> None:
        store = self.store
        started = time.monotonic()
        if batch_id <= store.state["last_batch"]:
            logger.info("Micro-batch %d: already committed (replayed after a restart)", batch_id)
            store.write_manifests()
            return
        if store.state["query_id"] is None and self.checkpoint is not None:
            store.state["query_id"] = _spark_query_id(self.checkpoint)
        spark = frame.sparkSession
        rows = [row.asDict() for row in frame.collect()]  # paths and stamps only
        # The backlog's walk (or listing) goes on while the batch is featurized, for its log line.
        backlog = _BACKLOG.submit(self._backlog, batch_id)
        listing, known, left_out = self._listing(rows)
        account = Counter()
        account["already_featurized"] = known
        part = batch_folder(batch_id)
        photos = None
        if listing:
            files = listing_frame(spark, listing)
            reason = skip_reason(self.settings.extensions, self.settings.max_file_bytes, [])
            reasons = Counter(row["reason"] for row in files.select(reason.alias("reason")).collect())
            skipped = {r: n for r, n in reasons.items() if r is not None}
            n_photos = reasons.get(None, 0)
            account.update({"skipped": sum(skipped.values())})
            if n_photos:
                partitions = max(1, min(n_photos, spark.sparkContext.defaultParallelism))
                photos = labelled(files.where(reason.isNull())).repartition(partitions)
        else:
            skipped, n_photos = {}, 0
        account["skipped"] += sum(left_out.values())
        for why, n in left_out.items():
            skipped[why] = skipped.get(why, 0) + n
        featurized = rejected = 0
        if photos is not None:
            featurized, rejected = self._featurize(photos, n_photos, part, batch_id)
        account.update({"featurized": featurized, "rejected": rejected, "listed": len(rows)})
        # Projected even when a refit follows: the committed batch must be in the table if the
        # refit never completes (a killed driver; another refit_growth at the restart).
        if featurized and store.state["basis"] is not None:
            self._project(part)
        refit = self._refit_due()
        self._pause("written", batch_id)
        state = store.state
        state["last_batch"] = batch_id
        for key in ("listed", "featurized", "already_featurized", "rejected", "skipped"):
            state["totals"][key] += account[key]
        by_reason = state["totals"].setdefault("skipped_by_reason", {})
        for key, n in skipped.items():
            by_reason[key] = by_reason.get(key, 0) + n
        store.write_state()
        if refit:
            self._refit()
            store.write_state()
            self.after_refit()
        store.publish()
        self._merge_small_parts(batch_id)
        self._pause("committed", batch_id)
        self._log(batch_id, rows, account, time.monotonic() - started, backlog.result())

    def _listing(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, Counter]:
        """The batch listing's rows of the batch's files that are new to the features; how many
        were featurized before (by a batch run, or by the stream before a change of their mode
        made them arrive again), and the others left out, by reason."""
        listing, left_out = [], Counter()
        known_keys, known_paths = self._known_keys()
        already = 0
        for row in rows:
            path = os_path(row["path"])
            relative = _relative(path, self._root)
            if any(part.startswith(".") for part in relative.split("/")):
                continue  # hidden files and folders are not photos, as in the batch listing
            if self.stream.local:
                entry = local_listing_row(path, relative)
                if entry is None:
                    left_out[GONE] += 1
                    continue
            else:
                entry = {**{k: row[k] for k in ("path", "size", "modified")}, "relative_path": relative}
                entry["skipped"] = None
            if (entry["path"], entry["size"], entry["modified"]) in known_keys:
                already += 1
            elif entry["path"] in known_paths:
                left_out[REPLACED] += 1
            else:
                listing.append(entry)
        return listing, already, left_out

    def _known_keys(self) -> tuple[set[tuple], set[str]]:
        """(path, size, modified) and path of every featurized photo: read once per driver, then
        kept up to date batch by batch."""
        if self._known is None:
            keys = self.store.read_columns("features", None, list(IMAGE_KEY))
            self._known = (set(zip(*(keys[c] for c in IMAGE_KEY))), set(keys["path"]))
        return self._known

    def _featurize(self, photos, n_photos: int, part: str, batch_id: int) -> tuple[int, int]:
        settings = self.settings
        features, rejected = featurize_images(
            photos, settings.backbone, settings.preprocessing, settings.feature_extraction
        )
        progress.expect_images(n_photos)
        reporter = progress.for_node(photos.sparkSession.sparkContext, f"micro-batch {batch_id}", True)
        reporter.start()
        try:
            featurized = self.store.save_part("features", part, features)
        finally:
            reporter.stop()
        self._pause("features_saved", batch_id)
        reasons = rejected.reasons
        if reasons:
            self.store.save_part("rejected", part, rejected.to_frame(photos))
        else:
            self.store.set_part("rejected", part, [], 0)
        if featurized:
            # The batch's part is small: its keys and moments are read once, on the driver.
            tables = self.store.read_tables("features", part, [*IMAGE_KEY, "features"])
            batch = batches_moments((b for table in tables for b in table.to_batches()), "features")
            moments = merge_moments(self.store.read_moments(), batch)
            self.store.state["moments"] = self.store.write_moments(moments, part)
            for table in tables:
                keys = table.select(list(IMAGE_KEY)).to_pydict()
                self._known[0].update(zip(*(keys[c] for c in IMAGE_KEY)))
                self._known[1].update(keys["path"])
        return featurized, len(reasons)

    def _project(self, part: str) -> None:
        mean, axes = self.store.read_basis()
        features = self.store.load_part("features", part)
        scores = project_columns(features, "features", mean, axes, SCORE_ID_COLUMNS)
        self.store.save_part("pca", part, with_constant_column(scores, BASIS_COLUMN, self.store.state["basis"]))

    def _merge_small_parts(self, batch_id: int) -> None:
        """Each table's small parts (one per micro-batch) merged into one, once there are
        ``compact_parts`` of them, so that readers open a few files rather than one per batch.
        The batch's own part waits for the next merge: the last CSV has the earlier ones, and
        keeps taking new rows by merging them into its text."""
        store, settings = self.store, self.settings
        own = batch_folder(batch_id)
        due = {}
        for table in TABLES:
            parts = [part for part in store.small_parts(table, settings.compact_rows) if part != own]
            if len(parts) >= settings.compact_parts:
                due[table] = parts
        if not due:
            return
        started = time.monotonic()
        into = merged_folder(batch_id)
        for table, parts in due.items():
            store.merge_parts(table, parts, into)
        written = store.state.get("csv_parts")
        if written is not None and "pca" in due and set(due["pca"]) <= set(written):
            store.state["csv_parts"] = [part for part in written if part not in due["pca"]] + [into]
        self._pause("merged", batch_id)
        store.write_state()
        store.remove_unnamed_parts(tuple(due))  # at once: a reader of the folder must not see rows twice
        logger.info(
            "Stream: %s merged into one part each, after micro-batch %d (%.1f s)",
            ", ".join(f"{len(parts)} parts of {table}" for table, parts in due.items()),
            batch_id,
            time.monotonic() - started,
        )

    # ---- the PCA's basis --------------------------------------------------------------------
    def _refit_due(self) -> bool:
        state = self.store.state
        rows = state["tables"]["features"]["rows"]
        if rows < 2 or not state["moments"]:
            return False
        if state["basis"] is None:
            return True
        fitted = state["fitted_rows"]
        return rows - fitted >= max(fitted * self.settings.refit_growth, self.settings.refit_min_rows)

    def _refit(self) -> None:
        """A new basis from the running moments; every row projected with it; the CSV rewritten."""
        store = self.store
        moments = store.read_moments()
        try:
            fit = fit_from_moments(moments, self.settings.variance_threshold, self.settings.max_components)
        except ValueError as error:
            logger.warning("Stream: no PCA yet (%s)", error)
            return
        basis = generate_timestamp()
        previous = dict(store.state)
        store.state["basis"] = basis
        store.reset_table("pca")
        report = {**fit.report, "run_id": basis, BASIS_COLUMN: basis}
        store.write_basis(basis, fit.mean, fit.axes, report)
        features = store.load_table("features")
        scores = project_columns(features, "features", fit.mean, fit.axes, SCORE_ID_COLUMNS)
        store.save_part("pca", BASE, with_constant_column(scores, BASIS_COLUMN, basis))
        store.write_manifests(("pca",))  # a folder that nothing names until the next commit
        self._pause("refit", store.state["last_batch"])
        store.state.update(
            {
                "k": fit.k,
                "fitted_rows": int(moments[0]),
                "previous_basis": previous["basis"],
            }
        )
        self.write_csv()
        logger.info("Stream: PCA refitted on %d rows: basis %s, k=%d", moments[0], basis, fit.k)

    def after_refit(self) -> None:
        """Once the new fit is committed and current: the fits before the one it replaced go."""
        self.store.publish()
        self.store.remove_unused()

    def write_csv(self) -> None:
        """The PCA table as the one CSV that pandas reads (a new file, named by the next commit):
        the rows of the parts the last CSV lacks merged into its text, or all of them after a refit."""
        store, state = self.store, self.store.state
        parts = list(state["tables"]["pca"].get("part_rows", {}))
        if state["tables"]["pca"]["schema"] is None:
            return
        csv = generate_timestamp()
        save_args: dict[str, Any] = {"sort_by": ["path"], "index": True}
        previous = store.csv_to_merge_into(parts)
        if previous is None:
            rows = store.load_table("pca")
        else:
            written = set(state["csv_parts"])
            rows = store.load_parts("pca", [part for part in parts if part not in written])
            save_args["merge_with"] = previous
        SparkCSVFileDataset(filepath=store.path(f"csv/{csv}/image_features_pca.csv"), save_args=save_args).save(
            with_constant_column(rows, "run_id", csv)
        )
        state.update(
            {
                "previous_csv": state["csv"],
                "csv": csv,
                "csv_rows": state["tables"]["pca"]["rows"],
                "csv_parts": parts,
                "csv_basis": state["basis"],
            }
        )

    def finish(self) -> None:
        """After the query stops: the CSV holds every row of the PCA table, and is current."""
        store = self.store
        if store.state is None or store.state["basis"] is None:
            return
        if store.state["csv_rows"] != store.state["tables"]["pca"]["rows"]:
            self.write_csv()
            store.write_state()
            store.publish()
        totals = store.state["totals"]
        logger.info(
            "Stream: %d files seen: %d featurized, %d already featurized, %d rejected, %d skipped; "
            "%d rows, PCA basis %s (k=%s)",
            *(totals[k] for k in ("listed", "featurized", "already_featurized", "rejected", "skipped")),
            store.state["tables"]["pca"]["rows"],
            store.state["basis"],
            store.state["k"],
        )

    # ---- observability and fault points -----------------------------------------------------
    def _backlog(self, batch_id: int) -> tuple[int, Any] | None:
        """The files waiting after this batch, by the end offset Spark logged for it; None when
        unknown (a log line never fails a batch: the listing's error is said instead)."""
        if self.checkpoint is None:
            return None
        try:
            return self.stream.backlog(_source_offset(self.checkpoint, batch_id))
        except Exception as error:  # noqa: BLE001 - observability only; the batch's own work is done
            logger.warning("Micro-batch %d: backlog unknown (%s: %s)", batch_id, type(error).__name__, error)
            return None

    def _log(
        self, batch_id: int, rows: list[dict[str, Any]], account: Counter, seconds: float, waiting: tuple | None
    ) -> None:
        if waiting is None:
            backlog = "backlog unknown"
        elif waiting[0] == 0:
            backlog = "backlog 0 files"
        else:
            age = (datetime.now(tz=UTC) - waiting[1]).total_seconds()
            backlog = f"backlog {waiting[0]} files, the oldest waiting {age:.0f} s"
        logger.info(
            "Micro-batch %d: %d photos in %.1f s (%d featurized, %d rejected, %d skipped, %d already featurized), "
            "%s, %.1f photos/s; %d rows, PCA basis %s (k=%s)",
            batch_id,
            len(rows),
            seconds,
            account["featurized"],
            account["rejected"],
            account["skipped"],
            account["already_featurized"],
            backlog,
            account["featurized"] / seconds if seconds > 0 else 0.0,
            self.store.state["tables"]["features"]["rows"],
            self.store.state["basis"],
            self.store.state["k"],
        )

    @staticmethod
    def _pause(point: str, batch_id: int) -> None:
        wanted = os.environ.get(PAUSE_VARIABLE, "")
        name, _, at = wanted.partition("@")
        if name != point or batch_id < int(at or 0):
            return
        logger.warning("Paused at %s of micro-batch %d (%s)", point, batch_id, PAUSE_VARIABLE)
        marker = os.environ.get(PAUSE_MARKER_VARIABLE)
        if marker:  # after the log line: whoever waits for it kills this process
            with open(marker, "w") as handle:
                handle.write(f"{point}@{batch_id}\n")
        time.sleep(3600)


def _relative(path: str, root: str) -> str:
    return posixpath.relpath(path, root) if not path.startswith(root + "/") else path[len(root) + 1 :]


def _names_features(current: dict[str, Any] | None, store: StreamStore) -> bool:
    return bool(current) and store.members["features"] in current.get("outputs", {})


def _spark_query_id(checkpoint: str) -> str | None:
    """The query id Spark keeps in the checkpoint's ``metadata`` file, or None before its first start."""
    import json

    import fsspec

    fs, root = fsspec.core.url_to_fs(checkpoint)
    fs.invalidate_cache()
    try:
        return json.loads(fs.cat_file(f"{root.rstrip('/')}/metadata").decode("utf-8")).get("id")
    except FileNotFoundError:
        return None


def _source_offset(checkpoint: str, batch_id: int) -> dict[str, Any] | None:
    """The source's end offset of ``batch_id``: the last line of Spark's offset log entry (a
    version, the batch's metadata, then one offset per source), None where it is not JSON."""
    import json

    import fsspec

    fs, root = fsspec.core.url_to_fs(checkpoint)
    lines = fs.cat_file(f"{root.rstrip('/')}/offsets/{batch_id}").decode("utf-8").splitlines()
    try:
        offset = json.loads(lines[-1])
    except (IndexError, ValueError):
        return None
    return offset if isinstance(offset, dict) and "through_ms" in offset else None


def _has_commits(checkpoint: str) -> bool:
    import fsspec

    fs, root = fsspec.core.url_to_fs(checkpoint)
    try:
        return any(not name.rsplit("/", 1)[-1].startswith(".") for name in fs.ls(f"{root}/commits", detail=False))
    except FileNotFoundError:
        return False
