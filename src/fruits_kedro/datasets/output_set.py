"""``OutputSetDataset``: the outputs of one run, replaced together or not at all.

A run's outputs (features, PCA table, CSV, reports, plot) are saved one after the other;
a run killed between two saves must not leave the CSV of one run beside the Parquet of
another. So each output of the set is saved where nothing reads it yet, under a folder of
its run::

    <folder>/runs/<run id>/<name>        e.g. data/04_feature/runs/2026-12-01T09.30.00.123Z/image_features_pca.csv

and when the run succeeds, one write of ``<path>/current_outputs.json`` (a rename on disk,
one PUT on S3) makes the whole set current. Loads go by that file; so does anyone else::

    {"format": "fruits_kedro.outputs/1", "run_id": "2026-12-01T09.30.00.123Z",
     "outputs": {"04_feature/image_features_pca.csv":
                 "04_feature/runs/2026-12-01T09.30.00.123Z/image_features_pca.csv", ...}}

The run id is Kedro's session id (the save version Kedro hands every versioned dataset of a
run). ``kedro run --load-versions name:<run id>`` loads an older run's output while its folder
is kept. Folders of runs that the current set does not name (killed or failed runs, sets
replaced before) are removed when the next run starts; the set it replaces stays readable
until then. One run at a time writes a set: it holds the set's lock, beside
``current_outputs.json``, for the whole run (:mod:`fruits_kedro.datasets.run_lock`).
"""

from __future__ import annotations

import inspect
import json
import logging
import posixpath
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError, Version, generate_timestamp, parse_dataset_definition

from fruits_kedro.datasets.aws import storage_options

logger = logging.getLogger(__name__)

MANIFEST_NAME = "current_outputs.json"
MANIFEST_FORMAT = "fruits_kedro.outputs/1"
RUNS_FOLDER = "runs"


class OutputSetDataset(AbstractDataset[Any, Any]):
    """Wraps a dataset that belongs to a run's set of outputs; see the module's docstring.

    Inside ``kedro run`` a save stays invisible until the run succeeds (the project's
    ``OutputSetHooks`` commit the set); a save outside a run (a notebook) is committed at once.

    Args:
        dataset: The wrapped dataset's configuration (``type``, ``filepath`` and its other
            arguments), as in a catalog entry. ``filepath`` is where the output is known by:
            its key in ``current_outputs.json``; it must lie under ``path``.
        path: The set's folder, which holds ``current_outputs.json``.
        run_id_field: If set, saved data names its run: a column of that name (Spark or
            pandas DataFrame) or a key (dict, e.g. a JSON report).
        credentials: fsspec credentials for ``path`` (the AWS chain when not given).
        fs_args: Other fsspec arguments for ``path``.
        version: Given by Kedro: its save version is the run id.
        metadata: Free-form metadata, ignored by Kedro.

    Examples:
        In ``catalog.yml``::

            image_features_pca_csv:
              type: fruits_kedro.datasets.OutputSetDataset
              path: data
              run_id_field: run_id
              dataset:
                type: fruits_kedro.datasets.SparkCSVFileDataset
                filepath: data/04_feature/image_features_pca.csv

        In Python::

            >>> from fruits_kedro.datasets import OutputSetDataset
            >>> report = OutputSetDataset(
            ...     path=str(tmp_path),
            ...     dataset={"type": "json.JSONDataset", "filepath": f"{tmp_path}/report.json"},
            ...     run_id_field="run_id",
            ... )
            >>> report.save({"k": 3})
            >>> report.load()["k"]
            3
    """

    # Kedro hands a versioned dataset the run's save version: that is the run id.
    versioned = True

    def __init__(
        self,
        *,
        dataset: dict[str, Any],
        path: str,
        run_id_field: str | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(dataset, dict) or not dataset.get("type") or not dataset.get("filepath"):
            raise DatasetError("OutputSetDataset: 'dataset' must be a dataset configuration with a type and a filepath")
        self._config = dict(dataset)
        self._filepath = str(dataset["filepath"]).rstrip("/")
        self._set = OutputSet(path, storage_options(credentials, fs_args))
        self.member = self._set.member_of(self._filepath)
        self._run_id_field = run_id_field
        self._version = version or Version(None, None)
        self._own_run_id: str | None = None
        self._datasets: dict[str, AbstractDataset] = {}
        self.saved_run: str | None = None
        self.held = False
        self.metadata = metadata

    def __getattr__(self, name: str) -> Any:
        # kedro-viz shows a dataset's preview if it has one: the wrapped type is looked up only
        # then, so that a run does not import every wrapped dataset's module (matplotlib) up front.
        if name != "preview" or "_config" not in self.__dict__:
            raise AttributeError(name)
        inner_preview = getattr(parse_dataset_definition(dict(self._config))[0], "preview", None)
        if inner_preview is None:
            raise AttributeError(name)
        self.preview = self._current_preview(inspect.signature(inner_preview).return_annotation)
        return self.preview

    @property
    def output_set(self) -> OutputSet:
        return self._set

    @property
    def run_id(self) -> str:
        """The id of the run that saves through this dataset (Kedro's session id)."""
        if self._version.save:
            return self._version.save
        if self._own_run_id is None:  # created outside a Kedro session
            self._own_run_id = generate_timestamp()
        return self._own_run_id

    def hold(self) -> None:
        """Leave the commit to the end of the run (the hooks call this as a run starts)."""
        self.held = True

    def save(self, data: Any) -> None:
        run_id = self.run_id
        if self._run_id_field:
            data = _stamp(data, self._run_id_field, run_id)
        self._dataset(self._set.path(run_folder(self.member, run_id))).save(data)
        self.saved_run = run_id
        if not self.held:
            self._set.commit(run_id, {self.member: run_folder(self.member, run_id)})

    def load(self) -> Any:
        return self._dataset(self._load_path()).load()

    def pinned(self, manifest: dict[str, Any] | None) -> OutputSetDataset:
        """This output as ``manifest`` (one read of ``current_outputs.json``) lists it, whatever
        is committed later: outputs loaded through one manifest come from one commit."""
        listed = (manifest or {}).get("outputs", {}).get(self.member)
        if listed is None:
            return self
        run_id = posixpath.basename(posixpath.dirname(listed))
        return type(self)(
            dataset=self._config,
            path=self._set.root,
            run_id_field=self._run_id_field,
            version=Version(run_id, None),
            metadata=self.metadata,
            **self._set.storage_arguments(),
        )

    def _current_preview(self, kind: Any):
        def preview(**preview_args):
            """The wrapped dataset's preview of the current output (Kedro-Viz); None before
            a run has made one."""
            current = self._dataset(self._load_path())
            return current.preview(**preview_args) if current.exists() else None

        preview.__annotations__ = {"return": kind}  # kedro-viz picks the preview's kind by it
        return preview

    def _load_path(self) -> str:
        run_id = self._version.load or self.saved_run  # a run reads what it saved itself
        if run_id:
            return self._set.path(run_folder(self.member, run_id))
        current = self._set.read()
        if current is not None and self.member in current["outputs"]:
            return self._set.path(current["outputs"][self.member])
        return self._filepath  # nothing committed yet: the single-file layout of earlier versions

    def _current_filepath(self) -> str:
        """The file a load reads now (the path Kedro-Viz shows). Kedro describes a dataset at
        each load and save: for a set on remote storage, the output's name, not a request."""
        if not self._set.is_local:
            return self._filepath
        try:
            return self._load_path()
        except DatasetError:  # a damaged commit file: named by the load itself
            return self._filepath

    def _dataset(self, filepath: str) -> AbstractDataset:
        if filepath not in self._datasets:
            config = {**self._config, "filepath": filepath}
            self._datasets[filepath] = AbstractDataset.from_config(self.member, config)
        return self._datasets[filepath]

    def _exists(self) -> bool:
        return self._dataset(self._load_path()).exists()

    def _release(self) -> None:
        for dataset in self._datasets.values():
            dataset.release()

    def _describe(self) -> dict[str, Any]:
        return {
            "dataset": self._config["type"],
            "filepath": self._current_filepath(),
            "path": self._set.root,
            "run_id_field": self._run_id_field,
        }


class OutputSet:
    """The commit file of a set of outputs and the run folders under its root."""

    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        self.root = str(root).rstrip("/")
        self._options = dict(options or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputSet) and (self.root, self._options) == (other.root, other._options)

    def __hash__(self) -> int:
        return hash(self.root)

    def storage_arguments(self) -> dict[str, Any]:
        """``credentials`` and ``fs_args`` that make an equal set."""
        return {"fs_args": dict(self._options)} if self._options else {}

    @property
    def is_local(self) -> bool:
        return fsspec.utils.get_protocol(self.root) in ("file", "local")

    @property
    def manifest_path(self) -> str:
        return f"{self.root}/{MANIFEST_NAME}"

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def member_of(self, filepath: str) -> str:
        """``filepath`` relative to the root: the output's key in the commit file."""
        prefix = f"{self.root}/"
        if not filepath.startswith(prefix) or len(filepath) == len(prefix):
            raise DatasetError(f"OutputSetDataset: filepath {filepath} is not under the set's path {self.root}")
        return filepath[len(prefix) :]

    def _fs(self):
        fs, path = fsspec.core.url_to_fs(self.root, **self._options)
        fs.invalidate_cache()
        return fs, path.rstrip("/")

    def lock(self, run_id: str):
        """Hold this set's run lock for ``run_id`` (:mod:`fruits_kedro.datasets.run_lock`): a
        :class:`~fruits_kedro.datasets.run_lock.RunLock` to release, or ``RunLockedError``."""
        from fruits_kedro.datasets import run_lock

        return run_lock.acquire(self.root, run_id, self._options)

    def read(self) -> dict[str, Any] | None:
        """The current set, or None when no run has committed one yet."""
        fs, root = self._fs()
        text = read_text(fs, f"{root}/{MANIFEST_NAME}")
        if text is None:
            return None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError:
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise DatasetError(f"{self.manifest_path} is not a fruits_kedro outputs file ({MANIFEST_FORMAT})")
        return manifest

    def commit(self, run_id: str, saved: dict[str, str], stale: Iterable[str] = ()) -> dict[str, Any]:
        """Make ``saved`` (output -> file, relative to the root) current, in one write; the
        outputs named in ``stale`` (derived from what was replaced) leave the set."""
        from fruits_kedro.datasets.spark_parquet import write_text_atomically

        current = self.read()
        outputs = dict(current["outputs"]) if current else {}
        for member in stale:
            outputs.pop(member, None)
        outputs.update(saved)
        manifest = {
            "format": MANIFEST_FORMAT,
            "run_id": run_id,
            "committed_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "outputs": dict(sorted(outputs.items())),
        }
        fs, root = self._fs()
        write_text_atomically(fs, f"{root}/{MANIFEST_NAME}", json.dumps(manifest, indent=2) + "\n")
        self._remove_single_file_layout(fs, root, saved)
        logger.info("Run %s: %d output(s) now current, listed in %s", run_id, len(saved), self.manifest_path)
        return manifest

    def _remove_single_file_layout(self, fs, root: str, saved: dict[str, str]) -> None:
        """Outputs saved in place by earlier versions of the project: replaced now, and a
        reader must not take them for current."""
        for member in saved:
            old = f"{root}/{member}"
            if fs.exists(old):
                fs.rm(old, recursive=True)
                logger.info("Removed %s: replaced by the run folders listed in %s", self.path(member), MANIFEST_NAME)

    def has_run_folders(self, members: Iterable[str]) -> bool:
        """Whether any run has saved beside ``members`` (a ``runs/`` folder exists)."""
        fs, root = self._fs()
        return any(fs.exists(f"{root}/{posixpath.join(posixpath.dirname(m), RUNS_FOLDER)}") for m in members)

    def remove_runs(self, members: Iterable[str], keep: Iterable[str] = (), only: str | None = None) -> list[str]:
        """Remove the run folders beside ``members`` that the current set does not name,
        except the runs in ``keep``; with ``only``, just that run's folders. Returns them."""
        current = self.read()
        named = {posixpath.dirname(p) for p in (current or {}).get("outputs", {}).values()}
        keep = set(keep)
        fs, root = self._fs()
        removed = []
        for folder in sorted({posixpath.join(posixpath.dirname(m), RUNS_FOLDER) for m in members}):
            try:
                entries = fs.ls(f"{root}/{folder}", detail=False)
            except FileNotFoundError:  # no run has saved there yet
                continue
            for entry in entries:
                run_id = entry.rstrip("/").rsplit("/", 1)[-1]
                relative = f"{folder}/{run_id}"
                if relative in named or run_id in keep or (only is not None and run_id != only):
                    continue
                fs.rm(entry, recursive=True)
                removed.append(self.path(relative))
        if removed:
            logger.info("Removed %d run folder(s) that no current output names: %s", len(removed), ", ".join(removed))
        return removed


def run_folder(member: str, run_id: str) -> str:
    """Where run ``run_id`` saves ``member`` (both relative to the set's root)."""
    return posixpath.join(posixpath.dirname(member), RUNS_FOLDER, run_id, posixpath.basename(member))


def _stamp(data: Any, field: str, run_id: str) -> Any:
    if isinstance(data, dict):
        return {**data, field: run_id}
    if hasattr(data, "withColumn"):  # a Spark DataFrame
        from fruits_kedro.datasets.arrow_source import with_constant_column

        return with_constant_column(data, field, run_id)
    if hasattr(data, "assign"):  # a pandas DataFrame
        return data.assign(**{field: run_id})
    raise DatasetError(f"run_id_field: cannot add {field!r} to a {type(data).__name__}")


def read_text(fs, path: str) -> str | None:
    """A small file's text (a manifest, a state), or None when it does not exist."""
    try:
        return fs.cat_file(path).decode("utf-8")
    except FileNotFoundError:
        return None
