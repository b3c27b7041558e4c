"""Experiment tracking with kedro-mlflow (the optional extra ``[mlflow]``).

kedro-mlflow (registered by its own entry point) opens an MLflow run per ``kedro run``, with
the store and the experiment of ``conf/<env>/mlflow.yml``, and logs the parameters each node
takes (flattened: ``ingestion.seed``). :class:`TrackingHooks` adds the run's figures, read
from what the run saves, and files as artifacts:

- ``photos_listed``, ``photos_featurized``, ``photos_reused``, ``photos_rejected``,
  ``photos_skipped`` (``feature_extraction_report``); ``pca_k``, ``pca_explained_variance``
  (``pca_explained_variance``); ``node_seconds.<node>`` for every node;
- per evaluated feature set (``evaluation_metrics``): ``<set>.accuracy``, ``<set>.macro_f1``,
  ``<set>.k`` (the features the classifier takes), ``<set>.images_per_second``;
- every catalog entry whose metadata names an ``mlflow_artifact`` folder: the file it saved
  (the plots, the exported classifier).

Without the extra, runs are as they were, with one line saying how to turn tracking on.

The local store is an SQLite file, ``mlruns/mlflow.db`` at the project's root (artifacts
beside it, ``mlruns/<run id>/artifacts/``); ``MLFLOW_TRACKING_URI``, where set, wins: an MLflow server, or
Databricks. ``make mlflow`` opens the UI on the local store.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from fruits_kedro.verbosity import is_verbose

logger = logging.getLogger(__name__)

INSTALL_EXTRA = 'pip install -e ".[mlflow]"'
# In a catalog entry's metadata: the artifact folder that the file it saves is logged under.
ARTIFACT_KEY = "mlflow_artifact"
PHOTO_COUNTS = ("listed", "featurized", "reused", "rejected", "skipped")
EVALUATED_FIGURES = {"accuracy": "accuracy", "macro_f1": "macro_f1", "k": "n_features"}


def tracking_available() -> bool:
    """Whether the ``[mlflow]`` extra is installed (without importing MLflow: it is slow)."""
    return all(importlib.util.find_spec(module) is not None for module in ("mlflow", "kedro_mlflow"))


def tracking_uri(local_store: str = "mlruns/mlflow.db") -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an SQLite store at ``local_store`` under the project's
    root, wherever the command runs from (a notebook's kernel runs in ``notebooks/``).

    Registered as the configuration resolver ``${mlflow_tracking_uri:...}`` (``settings.py``).
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from kedro.utils import find_kedro_project

    root = find_kedro_project(Path.cwd()) or Path.cwd()  # a packaged project has no pyproject.toml
    return f"sqlite:///{(root / local_store).resolve()}"


def artifact_location() -> str | None:
    """Beside the SQLite store's file (``mlruns/<run id>/artifacts``); None (the MLflow
    server's own choice) for any other store. The resolver ``${mlflow_artifact_location:}``."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return str(Path(uri.removeprefix("sqlite:///")).parent)


def metric_name(feature_set: str) -> str:
    """A feature set's name as MLflow takes it in a metric's: ``mobilenet_v2@onnx_int8`` ->
    ``mobilenet_v2/onnx_int8`` (MLflow refuses ``@``)."""
    return feature_set.replace("@", "/")


def run_metrics(dataset_name: str, data: Any) -> dict[str, float]:
    """The figures that a saved report gives the run (none for other datasets)."""
    if not isinstance(data, dict):
        return {}
    if dataset_name == "feature_extraction_report":
        return {f"photos_{key}": float(data[key]) for key in PHOTO_COUNTS if key in data}
    if dataset_name == "pca_explained_variance":
        return {"pca_k": float(data["k"]), "pca_explained_variance": float(data["explained_variance_at_k"])}
    if dataset_name == "evaluation_metrics":
        metrics = {}
        for name, entry in data.get("feature_sets", {}).items():
            if entry.get("status") != "evaluated":
                continue
            name = metric_name(name)
            metrics.update({f"{name}.{key}": float(entry[field]) for key, field in EVALUATED_FIGURES.items()})
            metrics[f"{name}.images_per_second"] = float(entry["images_per_second"])
        return metrics
    return {}


class _NodeSeconds(logging.Handler):
    """Node timings, as :class:`fruits_kedro.hooks.NodeTimingHooks` logs them, to the run."""

    def __init__(self, log) -> None:
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        name, seconds = record.args
        try:
            self._log({f"node_seconds.{name}": round(float(seconds), 3)})
        except Exception as error:  # noqa: BLE001 - the record of a run never fails the run itself
            _not_logged(f"node {name}'s time", error)


def _not_logged(what: str, error: Exception) -> None:
    logger.warning("MLflow: %s not logged (%s: %s); the run goes on.", what, type(error).__name__, error)


class TrackingHooks:
    """The run's figures and files in its MLflow run; see the module's docstring."""

    def __init__(self) -> None:
        self._client = None
        self._run_id: str | None = None
        self._artifacts: dict[str, tuple[str, dict[str, Any]]] = {}
        self._config_loader = None
        self._timings: _NodeSeconds | None = None

    # Before kedro-mlflow's own hook, which opens the store.
    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        """Make the local store's folder (SQLite makes its file, not the folder); note the
        catalog entries to log as artifacts."""
        self._artifacts = {}
        if not tracking_available():
            return
        if not is_verbose():  # its notices (resolvers, the run); kedro-mlflow sets INFO when imported
            logging.getLogger("kedro_mlflow").setLevel(logging.WARNING)
        self._config_loader = context.config_loader  # the catalog is read once the parameters are checked
        try:
            uri = str(context.config_loader["mlflow"].get("server", {}).get("mlflow_tracking_uri") or "")
        except MissingConfigException:  # no mlflow.yml: kedro-mlflow warns and uses its defaults
            return
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    # After kedro-mlflow's own hook (an installed plugin's hooks run before the project's),
    # which has opened the run by then.
    @hook_impl(trylast=True)
    def before_pipeline_run(self) -> None:
        self._stop()
        if not tracking_available():
            logger.info("MLflow tracking is off: the [mlflow] extra is not installed (%s).", INSTALL_EXTRA)
            return
        import mlflow

        run = mlflow.active_run()
        if run is None:  # tracking disabled for this pipeline in mlflow.yml
            return
        self._client = mlflow.MlflowClient(mlflow.get_tracking_uri())
        self._run_id = run.info.run_id
        if self._config_loader is not None:
            self._artifacts = _artifact_entries(self._config_loader["catalog"])
        self._timings = _NodeSeconds(self._log_metrics)
        logging.getLogger("fruits_kedro.hooks.timing").addHandler(self._timings)
        logger.info("MLflow run %s in %s (make mlflow: the UI)", self._run_id, mlflow.get_tracking_uri())

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if self._run_id is None:
            return
        try:
            self._log_metrics(run_metrics(dataset_name, data))
            if dataset_name in self._artifacts:
                self._log_artifact(dataset_name, data)
        except Exception as error:  # noqa: BLE001 - the record of a run never fails the run itself
            _not_logged(dataset_name, error)

    # The figures of the run's last nodes are in before its run ends (kedro-mlflow ends it).
    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._stop()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._timings is not None:
            logging.getLogger("fruits_kedro.hooks.timing").removeHandler(self._timings)
        self._client, self._run_id, self._timings = None, None, None

    def _log_metrics(self, metrics: dict[str, float]) -> None:
        if not metrics or self._run_id is None:
            return
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        self._client.log_batch(self._run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])

    def _log_artifact(self, dataset_name: str, data: Any) -> None:
        """The saved data, written once more by the same dataset type into a local file (the
        output itself may be on S3), logged under the entry's ``mlflow_artifact`` folder."""
        from kedro.io.core import AbstractDataset

        folder, config = self._artifacts[dataset_name]
        local = {k: v for k, v in config.items() if k not in ("credentials", "fs_args", "metadata", "versioned")}
        with tempfile.TemporaryDirectory(prefix="fruits_kedro_mlflow_") as temporary:
            path = Path(temporary) / PurePosixPath(str(config["filepath"])).name
            AbstractDataset.from_config(dataset_name, {**local, "filepath": str(path)}).save(data)
            self._client.log_artifact(self._run_id, str(path), folder)


def _artifact_entries(catalog_config: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (artifact folder, the configuration of the dataset that writes its file: an
    ``OutputSetDataset``'s wrapped one), for the catalog entries whose metadata names a folder.
    From the configuration: the catalog's own (``to_config``) has no uniform shape."""
    found = {}
    for name, entry in catalog_config.items():
        if not isinstance(entry, dict) or ARTIFACT_KEY not in (entry.get("metadata") or {}):
            continue
        dataset = entry["dataset"] if isinstance(entry.get("dataset"), dict) else entry
        found[name] = (entry["metadata"][ARTIFACT_KEY], dataset)
    return found
