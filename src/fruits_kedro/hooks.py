"""Project hooks: Spark configuration, the log file, up-front parameter validation, the
outputs' commit and node timings."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from fruits_kedro import spark
from fruits_kedro.cloud.s3_retries import use_s3_retry_settings

logger = logging.getLogger(__name__)
# Node timings get their own logger, so a reader (make bench) can listen to them alone.
timing_logger = logging.getLogger(f"{__name__}.timing")


class SparkHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        """Record this environment's ``spark*.yml``; the session starts only when needed."""
        try:
            conf = dict(context.config_loader["spark"])
        except KeyError:
            conf = {}
        event_logs = conf.get("spark.eventLog.dir")
        if event_logs and "://" not in str(event_logs):
            conf["spark.eventLog.dir"] = str(Path(context.project_path) / str(event_logs))  # not the cwd's
        spark.configure(conf)


class RunLogHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        """Log to the project's ``logs/info.log`` (:mod:`fruits_kedro.run_log`)."""
        from fruits_kedro import run_log

        run_log.attach(context.project_path)


class ParameterValidationHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        """Check every parameter's name and the environment's runtime parameters (``bucket``)
        as soon as the configuration is known: before the catalog resolves them."""
        from fruits_kedro.params import check_configuration

        check_configuration(context.config_loader, context.env)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """Check every setting the run uses before Spark starts, so mistakes cost seconds.

        Errors name the setting and say how to fix it. Spark starts here, after the checks, in
        the background (the first dataset that needs it waits), so that every dataset (ours
        and kedro-datasets') shares the configured session.
        """
        from fruits_kedro.params import parse_params, prepare_inference
        from fruits_kedro.verbosity import library_noise_hidden

        parameters = catalog.load("parameters")
        inputs = pipeline.inputs()
        used = {name.removeprefix("params:").split(".")[0] for name in inputs if name.startswith("params:")}
        params = parse_params(parameters)
        if IMAGE_FOLDER in inputs and IMAGE_FOLDER in catalog:
            _require_images(catalog[IMAGE_FOLDER], params.ingestion)  # before the weights: cheaper
        with library_noise_hidden():  # TensorFlow, when a model is converted
            prepare_inference(params, used_sections=used)
        require_java()
        spark.start_spark()


IMAGE_FOLDER = "raw_image_files"


class OutputSetHooks:
    """A run's outputs become current together, when the run succeeds
    (:mod:`fruits_kedro.datasets.output_set`)."""

    # Reports summed up at the end of a run, kept as they are saved (not read back).
    SUMMARISED = ("feature_extraction_report", "pca_explained_variance")

    def __init__(self) -> None:
        self._reports: dict[str, Any] = {}
        self._locks: list[Any] = []

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog):
        """Lock the sets this run writes before any other start-up work, so that a second run
        is refused at once; once the parameters are checked, hold the commits of this run's
        outputs and remove the folders of runs no set names."""
        run_id = run_params["run_id"]
        self._reports.clear()
        writing = _by_set(_output_set_members(catalog, pipeline.datasets()))
        if writing:  # the driver's S3 calls retry as the workers' do (no URL would import s3fs)
            use_s3_retry_settings(*(output_set.root for output_set in writing))
        self._release_locks()
        for output_set in writing:
            try:
                self._locks.append(output_set.lock(run_id))
            except BaseException:
                self._release_locks()
                raise
        try:
            result = yield
        except BaseException:
            self._release_locks()
            raise
        for members in writing.values():
            for _, dataset in members:
                dataset.hold()
        for output_set, members in _by_set(_output_set_members(catalog, catalog.keys())).items():
            _remove_old_runs(output_set, [d.member for _, d in members], run_id, locked=output_set in writing)
        return result

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if dataset_name in self.SUMMARISED:
            self._reports[dataset_name] = data

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """Commit what the run saved; outputs derived from what it replaced leave the set."""
        try:
            members = _output_set_members(catalog, catalog.keys())
            saved = {name for name, dataset in members if dataset.saved_run}
            if not saved:
                return
            stale = _derived_from(saved) - saved
            for output_set, in_set in _by_set(members).items():
                written = {d.member: _run_folder(d) for n, d in in_set if n in saved}
                if written:
                    output_set.commit(run_params["run_id"], written, stale=[d.member for n, d in in_set if n in stale])
            _log_summary(self._reports)
        finally:
            self._release_locks()

    @hook_impl
    def on_pipeline_error(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """A failed run's outputs are never current: remove them now (best effort)."""
        try:
            for output_set, members in _by_set(_output_set_members(catalog, pipeline.datasets())).items():
                try:
                    output_set.remove_runs([d.member for _, d in members], only=run_params["run_id"])
                except Exception as error:  # noqa: BLE001 - the run's own error is the one to report
                    # One line: a traceback here would bury the run's own error (S3 is often down for both).
                    logger.warning(
                        "Could not remove the failed run's outputs under %s (%s: %s); the next run removes them.",
                        output_set.root,
                        type(error).__name__,
                        error,
                    )
        finally:
            self._release_locks()

    def _release_locks(self) -> None:
        locks, self._locks = self._locks, []
        for lock in locks:
            lock.release()


def _remove_old_runs(output_set, members: list[str], run_id: str, locked: bool) -> None:
    """Remove the run folders no current output names; a set this run does not write is
    cleaned only if no other run holds its lock (that run's folder is in use)."""
    from fruits_kedro.datasets.run_lock import RunLockedError

    lock = None
    if not locked:
        if not output_set.has_run_folders(members):
            return  # nothing to remove: no lock taken, no lock file left where nothing was saved
        try:
            lock = output_set.lock(run_id)
        except RunLockedError as busy:
            logger.info("Old run folders under %s kept: %s", output_set.root, busy)
            return
        except Exception:  # noqa: BLE001 - as below: cleaning up is never worth failing the run
            logger.warning("Could not lock %s to remove old run folders", output_set.root, exc_info=True)
            return
    try:
        output_set.remove_runs(members, keep=[run_id])
    except Exception:  # noqa: BLE001 - leftovers cost space, never correctness: the run goes on
        logger.warning("Could not remove old run folders under %s", output_set.root, exc_info=True)
    finally:
        if lock is not None:
            lock.release()


def _log_summary(reports: dict[str, Any]) -> None:
    """What the run made, in two lines: the photos' account and the PCA's k."""
    if "feature_extraction_report" in reports:
        report = reports["feature_extraction_report"]
        logger.info(
            "Photos: %d listed, %d featurized, %d reused, %d rejected, %d skipped",
            *(report.get(key, 0) for key in ("listed", "featurized", "reused", "rejected", "skipped")),
        )
    if "pca_explained_variance" in reports:
        variance = reports["pca_explained_variance"]
        logger.info(
            "PCA: k = %d components of %d explain %.3f of the variance (threshold %.2f)",
            variance["k"],
            variance["n_input_features"],
            variance["explained_variance_at_k"],
            variance["threshold"],
        )


def _output_set_members(catalog, names) -> list[tuple[str, Any]]:
    from fruits_kedro.datasets.output_set import OutputSetDataset

    # Types read from the configuration: creating every dataset would import each one's
    # libraries (matplotlib, Spark ML...) before the run's first node.
    configured = catalog.to_config()[0]
    found = []
    for name in sorted(set(names)):
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            continue
        if name in configured and not str(configured[name].get("type", "")).endswith(OutputSetDataset.__name__):
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, OutputSetDataset):
            found.append((name, dataset))
    return found


def _by_set(members: list[tuple[str, Any]]) -> dict[Any, list[tuple[str, Any]]]:
    """The (name, dataset) members grouped by their set."""
    grouped: dict[Any, list[tuple[str, Any]]] = {}
    for name, dataset in members:
        grouped.setdefault(dataset.output_set, []).append((name, dataset))
    return grouped


def _run_folder(dataset) -> str:
    from fruits_kedro.datasets.output_set import run_folder

    return run_folder(dataset.member, dataset.saved_run)


def _derived_from(names: set[str]) -> set[str]:
    """Every dataset that the default pipeline (which makes the whole set) derives from ``names``."""
    from kedro.framework.project import pipelines

    whole = pipelines["__default__"]
    sources = [n for n in names if n in whole.all_inputs()]
    return set(whole.from_inputs(*sources).all_outputs()) if sources else set()


class JavaNotFoundError(RuntimeError):
    """PySpark cannot start: no Java runtime."""


def require_java(environ: dict[str, str] | None = None) -> str:
    """The java that Spark will start, or a clear error instead of PySpark's JAVA_GATEWAY_EXITED."""
    import os
    import shutil

    environ = os.environ if environ is None else environ
    home = environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java", path=environ.get("PATH"))
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise JavaNotFoundError(
            f"PySpark needs a Java 17 (or 21) runtime, and {where}. Debian/Ubuntu: "
            "apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17; or set JAVA_HOME."
        )
    return java


def _require_images(dataset, ingestion) -> None:
    """A missing folder, one without a single image, or class folders whose labels collide
    are a setting or a name to fix, not a Spark job."""
    from kedro.io.core import DatasetError

    from fruits_kedro.datasets.image_folder import ImageFolderDataset
    from fruits_kedro.labels import check_class_folders

    if not isinstance(dataset, ImageFolderDataset):
        return
    listing = dataset.list_files()
    extensions = ingestion.extensions
    is_image = listing["relative_path"].str.lower().str.endswith(tuple(extensions)) & listing["skipped"].isna()
    if not is_image.any():
        raise DatasetError(
            f"No images ({', '.join(extensions)}) under {dataset.path} "
            f"({len(listing)} other files). Point 'images_root' (kedro run --params images_root=...) "
            "or the raw_image_files catalog entry at a folder of <Split>/<Class>/*.jpg."
        )
    check_class_folders(listing.loc[is_image, "relative_path"], unsplit_excluded=ingestion.unsplit_folders == "exclude")


class NodeTimingHooks:
    """Log each node's wall time, the saving of its outputs included, and, while it runs Spark
    work, its progress about every 10 s (:mod:`fruits_kedro.progress`).

    Spark is lazy: a node returns a plan in milliseconds and the work (the CNN, for one)
    runs while Kedro saves the node's outputs, so a node's time ends with its last save.
    ``make bench`` reads these records to say where a run's time goes.
    """

    # Nodes whose Spark work featurizes the run's images (the CNN runs as the features are
    # saved, i.e. with merge_with_previous_features' outputs): their progress counts images.
    FEATURIZING = frozenset({"extract_features", "merge_with_previous_features"})

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[float, set[str]]] = {}  # node -> (start, outputs not saved yet)
        self._progress: dict[str, Any] = {}
        self._seconds: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node) -> None:
        with self._lock:
            self._running[node.name] = (time.perf_counter(), set(node.outputs))
        reporter = _progress_for(node.name, node.name in self.FEATURIZING)
        if reporter is not None:
            with self._lock:
                self._progress[node.name] = reporter
            reporter.start()

    @hook_impl
    def after_node_run(self, node) -> None:
        if not node.outputs:
            self._finish(node.name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node) -> None:
        with self._lock:
            started, pending = self._running.get(node.name, (None, set()))
            pending.discard(dataset_name)
            done = started is not None and not pending
        if done:
            self._finish(node.name)

    @hook_impl
    def on_node_error(self, node) -> None:
        with self._lock:
            self._running.pop(node.name, None)
            reporter = self._progress.pop(node.name, None)
        if reporter is not None:
            reporter.stop()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._stop_all()
        with self._lock:
            slowest = sorted(self._seconds.items(), key=lambda item: -item[1])[:5]
            self._seconds.clear()
        if slowest:
            logger.info("Slowest nodes: %s", ", ".join(f"{name} {seconds:.1f} s" for name, seconds in slowest))

    @hook_impl
    def on_pipeline_error(self) -> None:
        """A failed save ends the run without on_node_error: no reporter may outlive it."""
        self._stop_all()
        with self._lock:
            self._seconds.clear()

    def _stop_all(self) -> None:
        with self._lock:
            reporters = list(self._progress.values())
            self._progress.clear()
            self._running.clear()
        for reporter in reporters:
            reporter.stop()

    def _finish(self, name: str) -> None:
        with self._lock:
            started, _ = self._running.pop(name, (None, None))
            reporter = self._progress.pop(name, None)
        if reporter is not None:
            reporter.stop()
        if started is not None:
            seconds = time.perf_counter() - started
            with self._lock:
                self._seconds[name] = seconds
            timing_logger.info("Node %s took %.2f s", name, seconds)


def _progress_for(name: str, featurizes: bool):
    """A progress reporter for the node, if Spark runs (a hook never starts a session)."""
    from fruits_kedro import progress

    session = spark.started_session()
    return progress.for_node(session.sparkContext, name, featurizes) if session is not None else None
