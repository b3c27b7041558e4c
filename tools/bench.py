"""Featurization benchmark: how close does the Spark + Kedro path come to the machine's limit?

For each backbone and inference runtime it measures, in one run:

1. the ceiling: the inference call alone, on pre-decoded batches, in this process, using
   every core (images/s), timed in windows right before and right after each end-to-end run
   (their median): on a shared machine whose speed drifts between minutes, a ceiling measured
   at another time than the run would make the ratio a measure of the drift;
2. the whole ``feature_extraction`` path through Kedro and Spark (ingestion, decoding,
   inference, Parquet), from image files to features, on N images (images/s), each run in a
   fresh process as ``kedro run`` is (its Spark session started before the clock: model
   loading, worker start-up and the JVM's warm-up are counted);
3. the ratio of 2 to 1,

and the peak resident memory of the run's Spark driver (its Python process and JVM) and of
its Python workers. Real photos from ``../shared/fruits360-sample`` are repeated (hard links)
to reach N when present; the generated sample is used otherwise.

    python -m tools.bench                       # N = 1000 5000 20000, both runtimes
    python -m tools.bench --n 1000 --runtimes onnx --backbones mobilenet_v2
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # a tool of this repository, run from it
SHARED_PHOTOS = PROJECT_ROOT.parent / "shared" / "fruits360-sample"


@dataclass
class BenchRow:
    backbone: str
    runtime: str
    input_size: int
    weights: str | None
    n_images: int
    ceiling_images_per_s: float
    end_to_end_images_per_s: float
    ratio: float
    end_to_end_seconds: float
    peak_driver_mb: float
    peak_workers_mb: float
    # The node that runs the CNN (image bytes -> saved features): decode, inference, Parquet.
    cnn_stage_images_per_s: float = 0.0
    cnn_stage_ratio: float = 0.0
    # Each node's wall time, its saves included (NodeTimingHooks): where the rest goes.
    node_seconds: dict[str, float] = field(default_factory=dict)
    # Every ceiling window (images/s), before and after the run; the ceiling is their median.
    ceiling_windows: list[float] = field(default_factory=list)


@dataclass
class RunFigures:
    """What one measured run reports: its wall time, peak memory, and each node's time."""

    seconds: float
    driver_mb: float
    workers_mb: float
    nodes: dict[str, float]


class PeakMemory:
    """Polls the resident memory of this process tree: the driver (Python + JVM) and the
    PySpark Python workers (the daemon and its forks)."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self.driver_mb = 0.0
        self.workers_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            driver = workers = 0
            try:
                driver = self._me.memory_info().rss
                for child in self._me.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                        # Workers are forks of `python -m <daemon module> pyspark.worker`
                        # (pyspark.daemon, or the project's fruits_kedro.pyspark_daemon);
                        # the JVM's command line also mentions pyspark (its jars).
                        command = " ".join(child.cmdline())
                        is_worker = "pyspark.worker" in command or "pyspark.daemon" in command
                    except psutil.Error:
                        continue
                    if is_worker:
                        workers += rss
                    else:
                        driver += rss
            except psutil.Error:
                pass
            self.driver_mb = max(self.driver_mb, driver / 2**20)
            self.workers_mb = max(self.workers_mb, workers / 2**20)
            self._stop.wait(self._interval)


def photo_source() -> tuple[Path, str]:
    if SHARED_PHOTOS.is_dir():
        return SHARED_PHOTOS, "real Fruits-360 photos (../shared/fruits360-sample)"
    from tools.sample import generate_sample

    root = Path(tempfile.mkdtemp(prefix="fruits_bench_sample_")) / "fruits"
    generate_sample(root)
    return root, "the generated sample"


def replicate_photos(source: Path, n: int, destination: Path) -> Path:
    """A Fruits-360-shaped folder of exactly n images, repeating the source photos (hard links)."""
    if destination.is_dir():  # made for an earlier runtime of this benchmark: same images
        return destination
    photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for i in range(n):
        original = photos[i % len(photos)]
        relative = original.relative_to(source)
        target = destination / relative.parent / f"r{i // len(photos):04d}_{relative.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(original, target)
        except OSError:
            shutil.copyfile(original, target)
    return destination


class CeilingProbe:
    """Inference alone, one process, all cores: the most the machine gives this model.

    Holds the model bytes and one decoded batch; each call to :meth:`windows` builds the
    inference session, warms it up, times the loop for ``count`` windows of ``seconds``, and
    frees it again, so that it holds no memory while a run is measured.
    """

    def __init__(
        self, backbone_name: str, input_size: int, weights: str | None, runtime: str, photos: Path, batch_size: int
    ) -> None:
        from fruits_kedro.imaging.decode import decode_image
        from fruits_kedro.inference.onnx_export import inference_payload
        from fruits_kedro.inference.registry import get_backbone
        from fruits_kedro.inference.runtime import _WORKER_BUILDERS

        self._backbone = get_backbone(backbone_name)
        self._input_size = input_size
        files = sorted(photos.rglob("*.jpg"))[:batch_size]
        self._batch = np.stack([decode_image(f.read_bytes(), input_size) for f in files])
        self._payload = inference_payload(self._backbone, input_size, weights, runtime)
        self._build = _WORKER_BUILDERS[runtime]

    def windows(self, count: int, seconds: float) -> list[float]:
        infer = self._build(self._backbone, self._input_size, self._payload, os.cpu_count() or 1)
        infer(self._batch)  # warm-up: tracing, allocation
        rates = []
        for _ in range(count):
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                infer(self._batch)
                done += len(self._batch)
            rates.append(round(done / (time.perf_counter() - start), 2))
        del infer
        gc.collect()
        return rates


class NodeTimes(logging.Handler):
    """Collects the project's node timings (``fruits_kedro.hooks.timing`` records)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        name, seconds = record.args
        self.seconds[str(name)] = round(float(seconds), 2)


CNN_NODE = "merge_with_previous_features"  # its save of image_features is where the CNN runs


def measure_end_to_end(
    project: Path,
    images_root: Path,
    backbone_name: str,
    input_size: int,
    weights: str | None,
    runtime: str,
    batch_size: int,
) -> RunFigures:
    """Time one ``kedro run`` of the featurization in a fresh process, as a user runs it.

    Nothing of this process (the ceiling's model, TensorFlow, an earlier run's warm JVM)
    helps the run: model loading, Python worker start-up and the JVM's warm-up are part of
    its time. Only the SparkSession is started before the clock (a cluster is up before a job
    arrives).
    """
    with tempfile.TemporaryDirectory(prefix="fruits_bench_run_") as folder:
        result_file = Path(folder) / "result.json"
        request = {
            "project": str(project),
            "images_root": str(images_root),
            "backbone": backbone_name,
            "input_size": input_size,
            "weights": weights,
            "runtime": runtime,
            "batch_size": batch_size,
            "result": str(result_file),
        }
        completed = subprocess.run(
            [sys.executable, "-m", "tools.bench", "--run", json.dumps(request)],
            cwd=project,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            },
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"The benchmark run of {backbone_name}/{runtime} on {images_root} failed "
                f"(exit status {completed.returncode}); its log is above."
            )
        return RunFigures(**json.loads(result_file.read_text()))


def _run_and_report(request: dict) -> None:
    """The fresh process of :func:`measure_end_to_end`: run the pipeline, write the figures."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = Path(request["project"])
    os.chdir(project)
    bootstrap_project(project)
    params = {
        "images_root": request["images_root"],
        "backbone": {"name": request["backbone"], "input_size": request["input_size"], "weights": request["weights"]},
        "feature_extraction": {"runtime": request["runtime"], "batch_size": request["batch_size"]},
    }
    timing_logger = logging.getLogger("fruits_kedro.hooks.timing")
    node_times = NodeTimes()
    timing_logger.addHandler(node_times)
    timing_logger.setLevel(logging.INFO)
    with PeakMemory() as memory, KedroSession.create(project_path=project, runtime_params=params) as session:
        session.load_context()
        from fruits_kedro.spark import get_spark

        get_spark()  # a cluster is up before a job arrives: its start-up is not featurization time
        start = time.perf_counter()
        session.run(to_outputs=["image_features"])  # ingestion, preprocessing, feature extraction
        seconds = time.perf_counter() - start
    figures = RunFigures(seconds, memory.driver_mb, memory.workers_mb, node_times.seconds)
    Path(request["result"]).write_text(json.dumps(asdict(figures)))


def make_project(destination: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("credentials*.yml"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    (destination / "src").mkdir()
    for layer in ("01_raw", "02_intermediate", "04_feature", "08_reporting"):
        (destination / "data" / layer).mkdir(parents=True)
    return destination


def measure_serving(
    source: Path, backbone_name: str, input_size: int | None, weights: str | None, requests: int, work: Path
) -> dict:
    """``fruits-kedro serve`` as the app meets it: start-up (a fresh process, until /health
    answers) and the latency of ``requests`` photo uploads, one at a time. The classifier has
    the real backbone (ONNX) and the shapes of a real one (1280 -> 300 components -> 103 classes);
    its coefficients are random, which changes no timing."""
    import httpx
    import numpy as np

    from fruits_kedro.inference.onnx_export import inference_payload
    from fruits_kedro.inference.registry import get_backbone, resolve_input_size

    backbone = get_backbone(backbone_name)
    size = resolve_input_size(backbone, input_size)
    project = make_project(work / "serve_project")
    models = project / "data" / "06_models"
    models.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    width, k, classes = backbone.feature_dim(size), 300, 103
    labels = [f"class_{i}" for i in range(classes)]
    np.savez_compressed(
        models / "classifier_export.npz",
        mean=rng.normal(size=width),
        axes=rng.normal(size=(width, k)),
        coefficients=rng.normal(size=(classes, k)),
        intercepts=rng.normal(size=classes),
        labels=np.asarray(labels),
        onnx_model=np.frombuffer(inference_payload(backbone, size, weights, "onnx"), dtype=np.uint8),
    )
    settings = {"backbone": backbone_name, "input_size": size, "weights": weights, "labels": labels}
    (models / "classifier_settings.json").write_text(json.dumps(settings))
    port = _free_port()
    script = Path(sys.executable).parent / "fruits-kedro"
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--project-path", str(project)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError("fruits-kedro serve stopped during start-up")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        startup = time.perf_counter() - started
        photos = sorted(source.rglob("*.jpg"))[: max(requests, 1)]
        latencies = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(requests):
                photo = photos[i % len(photos)]
                begin = time.perf_counter()
                client.post(
                    "/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}
                ).raise_for_status()
                latencies.append(time.perf_counter() - begin)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    return {
        "input_size": size,
        "startup_s": startup,
        "requests": requests,
        "median_ms": 1000 * statistics.median(latencies),
        "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))],
    }


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def format_table(rows: list[BenchRow]) -> str:
    header = (
        "backbone",
        "runtime",
        "input",
        "N",
        "ceiling img/s",
        "ceiling windows",
        "end-to-end img/s",
        "ratio",
        "CNN stage img/s",
        "stage ratio",
        "other s",
        "driver MB",
        "workers MB",
    )
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rows:
        lines.append(
            " | ".join(
                [
                    r.backbone,
                    r.runtime,
                    str(r.input_size),
                    str(r.n_images),
                    f"{r.ceiling_images_per_s:.1f}",
                    f"{min(r.ceiling_windows, default=0):.0f}-{max(r.ceiling_windows, default=0):.0f}",
                    f"{r.end_to_end_images_per_s:.1f}",
                    f"{r.ratio:.2f}",
                    f"{r.cnn_stage_images_per_s:.1f}",
                    f"{r.cnn_stage_ratio:.2f}",
                    f"{r.end_to_end_seconds - r.node_seconds.get(CNN_NODE, 0.0):.1f}",
                    f"{r.peak_driver_mb:.0f}",
                    f"{r.peak_workers_mb:.0f}",
                ]
            )
        )
    return "\n".join("| " + line + " |" for line in lines)


def main(argv: list[str] | None = None) -> list[BenchRow]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one measured run, in a fresh process
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000], help="image counts")
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2"])
    parser.add_argument("--runtimes", nargs="+", default=["keras", "onnx"])
    parser.add_argument("--input-size", type=int, default=None, help="default: each backbone's own")
    parser.add_argument("--weights", default="imagenet", help="imagenet | path | none (speed does not depend on it)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ceiling-windows", type=int, default=3, help="ceiling windows before and after each run")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0, help="length of one ceiling window")
    parser.add_argument("--serve-requests", type=int, default=50, help="photo uploads to time (0: no serve figures)")
    parser.add_argument("--output", default=str(PROJECT_ROOT / "data/08_reporting/benchmark.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    if args.run:
        _run_and_report(json.loads(args.run))
        return []
    from fruits_kedro.inference.registry import get_backbone, resolve_input_size

    weights = None if str(args.weights).lower() in ("none", "null") else args.weights
    source, source_name = photo_source()
    print(f"Photos: {source_name}; {os.cpu_count()} cores; {platform.processor() or platform.machine()}")
    rows: list[BenchRow] = []
    work = Path(tempfile.mkdtemp(prefix="fruits_bench_"))
    try:
        for backbone_name in args.backbones:
            size = resolve_input_size(get_backbone(backbone_name), args.input_size)
            for runtime in args.runtimes:
                probe = CeilingProbe(backbone_name, size, weights, runtime, source, args.batch_size)
                for n in args.n:
                    images = replicate_photos(source, n, work / f"photos_{n}")
                    project = make_project(work / f"project_{backbone_name}_{runtime}_{n}")
                    windows = probe.windows(args.ceiling_windows, args.ceiling_seconds)
                    run = measure_end_to_end(project, images, backbone_name, size, weights, runtime, args.batch_size)
                    seconds, nodes = run.seconds, run.nodes
                    windows += probe.windows(args.ceiling_windows, args.ceiling_seconds)
                    ceiling = statistics.median(windows)
                    stage = n / nodes[CNN_NODE] if nodes.get(CNN_NODE) else 0.0
                    row = BenchRow(
                        backbone_name,
                        runtime,
                        size,
                        weights,
                        n,
                        ceiling,
                        n / seconds,
                        (n / seconds) / ceiling,
                        seconds,
                        run.driver_mb,
                        run.workers_mb,
                        stage,
                        stage / ceiling,
                        nodes,
                        windows,
                    )
                    rows.append(row)
                    print(
                        f"{backbone_name}/{runtime} at {size}px, N={n}: ceiling {ceiling:.1f} images/s "
                        f"(windows {min(windows):.0f}-{max(windows):.0f}); "
                        f"{row.end_to_end_images_per_s:.1f} images/s end to end "
                        f"({row.ratio:.2f} of the ceiling; CNN stage {stage:.1f} images/s, "
                        f"{row.cnn_stage_ratio:.2f}), driver {row.peak_driver_mb:.0f} MB, "
                        f"workers {row.peak_workers_mb:.0f} MB; nodes (s): {nodes}"
                    )
        serving = (
            measure_serving(source, args.backbones[0], args.input_size, weights, args.serve_requests, work)
            if args.serve_requests
            else None
        )
    finally:
        os.chdir(PROJECT_ROOT)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(format_table(rows))
    if serving:
        print(
            f"\nfruits-kedro serve ({args.backbones[0]}): start-up {serving['startup_s']:.1f} s; "
            f"{serving['requests']} photo uploads, median {serving['median_ms']:.0f} ms, p90 {serving['p90_ms']:.0f} ms"
        )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {"source": source_name, "cores": os.cpu_count(), "rows": [asdict(r) for r in rows], "serve": serving},
            indent=2,
        )
    )
    print(f"\nWritten to {output}")
    return rows


if __name__ == "__main__":
    main()
