"""Project hooks: Spark configuration and up-front parameter validation."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from fruits_kedro import spark

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


class ParameterValidationHooks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        """Check every setting the run uses before Spark starts, so mistakes cost seconds.

        Errors name the setting and say how to fix it. Spark is started here, after the
        checks, so that every dataset (ours and kedro-datasets') shares the configured session.
        """
        from fruits_kedro.params import validate_run

        parameters = catalog.load("parameters")
        inputs = pipeline.inputs()
        used = {name.removeprefix("params:").split(".")[0] for name in inputs if name.startswith("params:")}
        params = validate_run(parameters, used_sections=used)
        if IMAGE_FOLDER in inputs and IMAGE_FOLDER in catalog:
            _require_images(catalog[IMAGE_FOLDER], params.ingestion.extensions)
        require_java()
        spark.get_spark()


IMAGE_FOLDER = "raw_image_files"


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


def _require_images(dataset, extensions: list[str]) -> None:
    """A missing folder, or one without a single image, is a setting to fix, not a Spark job."""
    from kedro.io.core import DatasetError

    from fruits_kedro.datasets.image_folder import ImageFolderDataset

    if not isinstance(dataset, ImageFolderDataset):
        return
    listing = dataset.list_files()
    is_image = listing["relative_path"].str.lower().str.endswith(tuple(extensions)) & listing["skipped"].isna()
    if not is_image.any():
        raise DatasetError(
            f"No images ({', '.join(extensions)}) under {dataset.path} "
            f"({len(listing)} other files). Point 'images_root' (kedro run --params images_root=...) "
            "or the raw_image_files catalog entry at a folder of <Split>/<Class>/*.jpg."
        )


class NodeTimingHooks:
    """Log each node's wall time, the saving of its outputs included.

    Spark is lazy: a node returns a plan in milliseconds and the work (the CNN, for one)
    runs while Kedro saves the node's outputs, so a node's time ends with its last save.
    ``make bench`` reads these records to say where a run's time goes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[float, set[str]]] = {}  # node -> (start, outputs not saved yet)

    @hook_impl
    def before_node_run(self, node) -> None:
        with self._lock:
            self._running[node.name] = (time.perf_counter(), set(node.outputs))

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

    def _finish(self, name: str) -> None:
        with self._lock:
            started, _ = self._running.pop(name, (None, None))
        if started is not None:
            timing_logger.info("Node %s took %.2f s", name, time.perf_counter() - started)
