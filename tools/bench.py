"""Benchmark: the whole ``kedro run`` against the script a user would write instead.

For each N it times, interleaved (script, run, script, ...), each in a fresh process:

1. the user's alternative (:mod:`tools.plain_featurize`): OpenCV decodes the photos and ONNX
   Runtime runs the project's own exported backbone, one process per core, one thread each,
   model loading included, features saved to a ``.npy``;
2. the whole ``kedro run`` of the default pipeline (listing, features, PCA, CSV), Spark's and
   the JVM's start-up included, in a throw-away copy of the project (``data/`` untouched);

and reports their rates and ratio, the CNN stage's rate (the node whose save runs the CNN)
against the script's, every node's seconds, the peak memory of the run's driver (Python and
JVM) and Python workers, and the largest difference between the script's features and the
run's (the same work, to float rounding). The photos are real and distinct
(:mod:`tools.bench_photos`). Then PCA + CSV on a synthetic feature table of the full
dataset's size (:mod:`tools.bench_features`, ``kedro run --pipelines dimensionality_reduction``),
``fruits-kedro serve``'s start-up and latency, the INT8 runtime against FP32 on real photos
(:mod:`tools.bench_int8`), and the streaming pipeline's latency from a photo's arrival to its
readable row and its ``available_now`` run on 10 new photos over 20,000 and 71,000
featurized ones (:mod:`tools.bench_streaming`).

    python -m tools.bench                                  # N = 1000 5000 20000
    python -m tools.bench --n 1000 --pca-rows 0 --serve-requests 0
"""

from __future__ import annotations

import argparse
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

from tools.bench_project import PROJECT_ROOT, make_project, subprocess_env

CACHE = Path(os.environ.get("FRUITS_KEDRO_CACHE_DIR", Path.home() / ".cache" / "fruits_kedro"))
CNN_NODE = "merge_with_previous_features"  # its save of image_features is where the CNN runs
PCA_NODES = ("fit_pca", "export_pca_csv")  # with their saves: the PCA (and its scores), the CSV


@dataclass
class BenchRow:
    backbone: str
    runtime: str
    input_size: int
    weights: str | None
    n_images: int
    photos: str
    script_images_per_s: float
    run_images_per_s: float
    ratio: float  # whole run / script
    cnn_stage_images_per_s: float
    cnn_stage_ratio: float  # CNN stage / script
    peak_driver_mb: float
    peak_workers_mb: float
    script_peak_mb: float
    features_max_abs_diff: float  # script's features against the run's, same photos
    # Every measurement: the script's and the run's wall times, each run's nodes (their saves included).
    script_seconds: list[float] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)
    node_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class RunFigures:
    """One measured ``kedro run``: wall time (process start to exit), peak memory, node times."""

    seconds: float
    driver_mb: float
    workers_mb: float
    nodes: dict[str, float]


class PeakMemory:
    """Polls the peak resident memory of a process tree (this one by default): the driver
    (Python + JVM) and the PySpark Python workers (the daemon and its forks).

    Each process's own peak (Linux's ``VmHWM``; elsewhere its current size) is read, so a
    poll a second is enough to see it, and the poller costs the measured run little CPU."""

    def __init__(self, interval: float = 1.0, pid: int | None = None) -> None:
        import psutil

        self._me = psutil.Process(pid)
        self._interval = interval
        self.driver_mb = 0.0
        self.workers_mb = 0.0
        self._is_worker: dict[int, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._measure()  # the last peaks, before the processes are gone

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._measure()
            self._stop.wait(self._interval)

    def _measure(self) -> None:
        import psutil

        driver = workers = 0
        try:
            driver = _peak_rss(self._me)
            for child in self._me.children(recursive=True):
                try:
                    if child.pid not in self._is_worker:
                        # Workers are forks of `python -m <daemon module> pyspark.worker`
                        # (pyspark.daemon, or the project's fruits_kedro.pyspark_daemon);
                        # the JVM's command line also mentions pyspark (its jars).
                        command = " ".join(child.cmdline())
                        self._is_worker[child.pid] = "pyspark.worker" in command or "pyspark.daemon" in command
                    rss = _peak_rss(child)
                except psutil.Error:
                    continue
                if self._is_worker[child.pid]:
                    workers += rss
                else:
                    driver += rss
        except psutil.Error:
            pass
        self.driver_mb = max(self.driver_mb, driver / 2**20)
        self.workers_mb = max(self.workers_mb, workers / 2**20)


def _peak_rss(process) -> int:
    """The process's peak resident memory in bytes: ``VmHWM`` where /proc has it, else its RSS now."""
    try:
        with open(f"/proc/{process.pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return process.memory_info().rss


class NodeTimes(logging.Handler):
    """Collects the project's node timings (``fruits_kedro.hooks.timing`` records)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        name, seconds = record.args
        self.seconds[str(name)] = round(float(seconds), 2)


def run_script(photos: Path, output: Path, backbone: str, size: int, weights: str | None, batch_size: int):
    """The user's script in a fresh process: (seconds, peak MB of its processes)."""
    command = [sys.executable, "-m", "tools.plain_featurize", str(photos), str(output), "--backbone", backbone]
    command += ["--input-size", str(size), "--weights", str(weights), "--batch-size", str(batch_size)]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=subprocess_env())
    with PeakMemory(pid=child.pid) as memory:
        code = child.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"tools.plain_featurize failed on {photos} (exit status {code}); its log is above")
    return seconds, memory.driver_mb + memory.workers_mb


def run_kedro(project: Path, params: dict, pipeline: str | None = None) -> RunFigures:
    """``kedro run`` of ``pipeline`` in ``project``, in a fresh process, timed from its start to its exit."""
    result = project / "bench_result.json"
    request = {"project": str(project), "params": params, "pipeline": pipeline, "result": str(result)}
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--run", json.dumps(request)], cwd=project, env=subprocess_env()
    )
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"kedro run in {project} failed (exit status {completed.returncode}); its log is above")
    figures = json.loads(result.read_text())
    return RunFigures(seconds, figures["driver_mb"], figures["workers_mb"], figures["nodes"])


def _run_and_report(request: dict) -> None:
    """The fresh process of :func:`run_kedro`: the run as ``kedro run`` does it, with its figures."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = Path(request["project"])
    os.chdir(project)
    timing_logger = logging.getLogger("fruits_kedro.hooks.timing")
    node_times = NodeTimes()
    timing_logger.addHandler(node_times)
    timing_logger.setLevel(logging.INFO)
    with PeakMemory() as memory:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, runtime_params=request["params"]) as session:
            session.run(pipeline_name=request["pipeline"])
    figures = {"driver_mb": memory.driver_mb, "workers_mb": memory.workers_mb, "nodes": node_times.seconds}
    Path(request["result"]).write_text(json.dumps(figures))


def current_output(project: Path, member: str) -> Path:
    outputs = json.loads((project / "data" / "current_outputs.json").read_text())["outputs"]
    return project / "data" / outputs[member]


def read_parquet_dataset(folder: Path):
    import pandas as pd

    manifest = json.loads((folder / "_SUCCESS").read_text())
    return pd.concat([pd.read_parquet(folder / name) for name in manifest["files"]], ignore_index=True)


def features_difference(project: Path, script_output: Path) -> float:
    """Largest |script - run| over every feature of every photo both featurized."""
    run = read_parquet_dataset(current_output(project, "04_feature/image_features.parquet"))
    run_features = dict(zip(run["path"], run["features"]))
    paths = Path(f"{script_output}.paths.txt").read_text().splitlines()
    script = np.load(script_output)
    if set(paths) != set(run_features):
        raise RuntimeError(f"the script featurized {len(paths)} photos, the run {len(run_features)}: not the same set")
    return float(max(np.abs(script[i] - np.asarray(run_features[p])).max() for i, p in enumerate(paths)))


def measure_pca(rows: int, width: int, work: Path) -> dict:
    """``kedro run --pipelines dimensionality_reduction`` on a synthetic ``image_features`` of
    ``rows`` x ``width`` (made once, in the cache): the PCA's and the CSV's node times."""
    table = CACHE / "bench_features" / f"{rows}x{width}.parquet"
    if not (table / "_SUCCESS").exists():
        command = [sys.executable, "-m", "tools.bench_features", str(table), "--n", str(rows), "--d", str(width)]
        subprocess.run(command, cwd=PROJECT_ROOT, env=subprocess_env(), check=True)
    project = make_project(work / "pca_project")
    (project / "data" / "04_feature" / "image_features.parquet").symlink_to(table, target_is_directory=True)
    run = run_kedro(project, {}, "dimensionality_reduction")
    report = json.loads(current_output(project, "08_reporting/pca_explained_variance.json").read_text())
    csv = current_output(project, "04_feature/image_features_pca.csv")
    nodes = {name: run.nodes.get(name, 0.0) for name in PCA_NODES}
    return {
        "rows": rows,
        "width": width,
        "k": report["k"],
        "csv_mb": round(csv.stat().st_size / 2**20, 1),
        **{f"{name}_s": seconds for name, seconds in nodes.items()},
        "pca_and_csv_s": round(sum(nodes.values()), 2),
        "run_s": round(run.seconds, 2),
        "peak_driver_mb": round(run.driver_mb),
        "peak_workers_mb": round(run.workers_mb),
    }


def measure_serving(
    source: Path, backbone_name: str, input_size: int | None, weights: str | None, requests: int, work: Path
) -> dict:
    """``fruits-kedro serve`` as the app meets it: start-up (a fresh process, until /health
    answers) and the latency of ``requests`` photo uploads, one at a time. The classifier has
    the real backbone (ONNX) and the shapes of a real one (1280 -> 300 components -> 103 classes);
    its coefficients are random, which changes no timing."""
    import httpx

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
        "script img/s",
        "kedro run img/s",
        "ratio",
        "CNN stage img/s",
        "stage ratio",
        "other nodes s",
        "driver MB",
        "workers MB",
        "script MB",
    )
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rows:
        other = sum(s for name, s in r.node_seconds.items() if name != CNN_NODE)
        lines.append(
            " | ".join(
                [
                    r.backbone,
                    r.runtime,
                    str(r.input_size),
                    f"{r.n_images:,}",
                    f"{r.script_images_per_s:.1f}",
                    f"{r.run_images_per_s:.1f}",
                    f"{r.ratio:.2f}",
                    f"{r.cnn_stage_images_per_s:.1f}",
                    f"{r.cnn_stage_ratio:.2f}",
                    f"{other:.1f}",
                    f"{r.peak_driver_mb:.0f}",
                    f"{r.peak_workers_mb:.0f}",
                    f"{r.script_peak_mb:.0f}",
                ]
            )
        )
    return "\n".join("| " + line + " |" for line in lines)


def available_backbones(names: list[str], size: int | None, weights: str | None) -> tuple[list[str], dict[str, str]]:
    """The backbones whose ONNX model can be made here, and why each other one is skipped."""
    from fruits_kedro.inference.onnx_export import inference_payload
    from fruits_kedro.inference.registry import get_backbone, resolve_input_size

    usable, skipped = [], {}
    for name in names:
        try:
            backbone = get_backbone(name)
            inference_payload(backbone, resolve_input_size(backbone, size), weights, "onnx")
        except Exception as exc:  # noqa: BLE001 - any reason a backbone cannot run is reported, not fatal
            skipped[name] = f"{type(exc).__name__}: {exc}"
            print(f"Skipped {name}: {skipped[name]}")
            continue
        usable.append(name)
    return usable, skipped


def main(argv: list[str] | None = None) -> list[BenchRow]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one measured run, in a fresh process
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000], help="photo counts")
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2"])
    parser.add_argument("--runtimes", nargs="+", default=["onnx"], help="the run's runtime (the script: onnx)")
    parser.add_argument("--input-size", type=int, default=None, help="default: each backbone's own")
    parser.add_argument("--weights", default="imagenet", help="imagenet | path | none (speed does not depend on it)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per inference call, run and script (default: the run's own)",
    )
    parser.add_argument("--pairs", type=int, default=1, help="kedro runs per N, each followed by a script run")
    parser.add_argument("--pca-rows", type=int, default=71_000, help="synthetic features for PCA + CSV (0: skip)")
    parser.add_argument("--pca-width", type=int, default=1280)
    parser.add_argument("--serve-requests", type=int, default=50, help="photo uploads to time (0: no serve figures)")
    parser.add_argument("--photos-cache", type=Path, default=CACHE / "bench_photos")
    parser.add_argument(
        "--int8-photos",
        default=None,
        help="real photos (Training and Test) to compare the INT8 runtime with FP32 on (default: the shared "
        "sample where it is beside the checkout; 'none': skip)",
    )
    parser.add_argument("--int8-params", default="", help="more --params for those evaluation runs")
    parser.add_argument(
        "--compare-backbones",
        nargs="*",
        default=["mobilenet_v2", "efficientnet_lite0"],
        help="backbones whose plain-script throughput is compared at the smallest N (none: skip)",
    )
    parser.add_argument("--stream-rate", type=float, default=20.0, help="photos/s landing in the stream (0: skip)")
    parser.add_argument("--stream-seconds", type=float, default=60.0, help="how long they land")
    parser.add_argument(
        "--stream-old", type=int, nargs="*", default=[20_000, 71_000], help="featurized rows under 10 new photos"
    )
    parser.add_argument("--stream-checkpoint-files", type=int, default=100_000, help="tiny files (0: skip)")
    parser.add_argument(
        "--stream-s3-rate", type=float, default=20.0, help="photos/s uploaded to the stream on moto S3 (0: skip)"
    )
    parser.add_argument("--output", default=str(PROJECT_ROOT / "data/08_reporting/benchmark.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    if args.run:
        _run_and_report(json.loads(args.run))
        return []
    from fruits_kedro.inference.registry import get_backbone, resolve_input_size
    from fruits_kedro.inference.runtime import CPU_BATCH_SIZE
    from tools.bench_int8 import compare as compare_int8
    from tools.bench_int8 import format_comparison
    from tools.bench_photos import SHARED_PHOTOS, photo_set

    weights = None if str(args.weights).lower() in ("none", "null") else args.weights
    print(f"{os.cpu_count()} cores; {platform.processor() or platform.machine()}")
    # The script runs on the CPU with the batch size the run uses there.
    script_batch = args.batch_size or CPU_BATCH_SIZE
    print(f"{script_batch} images per inference call, in the run and in the script")
    backbones, skipped = available_backbones(args.backbones, args.input_size, weights)
    rows: list[BenchRow] = []
    photo_sets: dict[int, str] = {}
    pca = serving = int8 = streaming = streaming_s3 = None
    backbone_rates: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="fruits_bench_"))
    try:
        for n in args.n if backbones else []:
            photos = photo_set(n, args.photos_cache)
            photo_sets[n] = photos.describe()
            print(f"N={n}: {photo_sets[n]}")
            for backbone_name in backbones:
                size = resolve_input_size(get_backbone(backbone_name), args.input_size)
                script_out = work / f"script_{backbone_name}_{n}.npy"
                script_args = (photos.root, script_out, backbone_name, size, weights, script_batch)
                script_runs = [run_script(*script_args)]
                for runtime in args.runtimes:
                    runs = []
                    for pair in range(args.pairs):
                        project = make_project(work / f"project_{backbone_name}_{runtime}_{n}_{pair}")
                        params = {
                            "images_root": str(photos.root),
                            "backbone": {"name": backbone_name, "input_size": size, "weights": weights},
                            "feature_extraction": {"runtime": runtime, "batch_size": args.batch_size},
                        }
                        runs.append((project, run_kedro(project, params)))
                        script_runs.append(run_script(*script_args))
                    row = _row(backbone_name, runtime, size, weights, n, photo_sets[n], script_runs, runs, script_out)
                    rows.append(row)
                    print(
                        f"{backbone_name}/{runtime} at {size}px, N={n}: script {row.script_images_per_s:.1f} images/s, "
                        f"kedro run {row.run_images_per_s:.1f} images/s ({row.ratio:.2f}); CNN stage "
                        f"{row.cnn_stage_images_per_s:.1f} images/s ({row.cnn_stage_ratio:.2f}); driver "
                        f"{row.peak_driver_mb:.0f} MB, workers {row.peak_workers_mb:.0f} MB; features within "
                        f"{row.features_max_abs_diff:.1e}; nodes (s): {row.node_seconds}"
                    )
        if args.pca_rows:
            pca = measure_pca(args.pca_rows, args.pca_width, work)
        if args.serve_requests and backbones:
            source = photo_set(min(args.n), args.photos_cache).root
            serving = measure_serving(source, backbones[0], args.input_size, weights, args.serve_requests, work)
        compared, _ = available_backbones(args.compare_backbones, args.input_size, weights)
        for name in compared:  # the network's own speed, decode included, without Spark
            size = resolve_input_size(get_backbone(name), args.input_size)
            photos = photo_set(min(args.n), args.photos_cache)
            seconds, _ = run_script(photos.root, work / f"compare_{name}.npy", name, size, weights, script_batch)
            backbone_rates[name] = round(min(args.n) / seconds, 1)
        int8_photos = args.int8_photos or (str(SHARED_PHOTOS) if SHARED_PHOTOS.is_dir() else "none")
        if int8_photos.lower() != "none" and backbones:
            int8 = compare_int8(Path(int8_photos).resolve(), work, backbones[0], args.int8_params)
        if backbones:  # the streams run the first backbone, in FP32 (as the synthetic old rows are)
            backbone = get_backbone(backbones[0])
            size = resolve_input_size(backbone, args.input_size)
            stream_params = f"backbone.name={backbone.name},backbone.input_size={size}"
            stream_params += f",backbone.weights={weights or 'null'},feature_extraction.runtime=onnx"
            width = backbone.feature_dim(size)
        if (args.stream_rate or args.stream_old or args.stream_checkpoint_files) and backbones:
            from tools.bench_streaming import measure as measure_streaming

            streaming = measure_streaming(
                args.stream_rate,
                args.stream_seconds,
                args.stream_old,
                2.0,
                stream_params,
                width,
                args.stream_checkpoint_files,
            )
        if args.stream_s3_rate and backbones:
            from tools.bench_streaming_s3 import measure as measure_streaming_s3

            streaming_s3 = measure_streaming_s3(args.stream_s3_rate, args.stream_seconds, 2.0, stream_params)
    finally:
        os.chdir(PROJECT_ROOT)
        shutil.rmtree(work, ignore_errors=True)
    print()
    for n, description in photo_sets.items():
        print(f"Photos, N={n:,}: {description}")
    print(format_table(rows))
    if pca:
        print(
            f"\nPCA + CSV on {pca['rows']:,} x {pca['width']:,} synthetic features (k={pca['k']}): fit_pca "
            f"{pca['fit_pca_s']:.1f} s + export_pca_csv {pca['export_pca_csv_s']:.1f} s = {pca['pca_and_csv_s']:.1f} s "
            f"(CSV {pca['csv_mb']:.0f} MB; whole kedro run {pca['run_s']:.1f} s, driver {pca['peak_driver_mb']} MB, "
            f"workers {pca['peak_workers_mb']} MB)"
        )
    if serving:
        print(
            f"\nfruits-kedro serve ({backbones[0]}): start-up {serving['startup_s']:.1f} s; "
            f"{serving['requests']} photo uploads, median {serving['median_ms']:.0f} ms, p90 {serving['p90_ms']:.0f} ms"
        )
    if backbone_rates:
        rates = ", ".join(f"{name} {rate:.1f}" for name, rate in backbone_rates.items())
        print(f"\nBackbones, plain script at N={min(args.n):,} (images/s, model loading included): {rates}")
    if int8:
        print(f"\n{format_comparison(int8)}")
    if streaming:
        from tools.bench_streaming import format_figures

        print(f"\n{format_figures(streaming['latency'], streaming['new_photos'], streaming['checkpoint'])}")
    if streaming_s3:
        from tools.bench_streaming_s3 import format_latency

        print(format_latency(streaming_s3))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "cores": os.cpu_count(),
        "photos": photo_sets,
        "skipped_backbones": skipped,
        "rows": [asdict(r) for r in rows],
        "pca": pca,
        "serve": serving,
        "backbone_images_per_s": backbone_rates,
        "int8": int8,
        "streaming": streaming,
        "streaming_s3": streaming_s3,
    }
    output.write_text(json.dumps(report, indent=2))
    print(f"\nWritten to {output}")
    return rows


def _row(backbone, runtime, size, weights, n, photos, script_runs, runs, script_out) -> BenchRow:
    """One table row: medians over the interleaved runs."""
    script_seconds = [seconds for seconds, _ in script_runs]
    run_seconds = [run.seconds for _, run in runs]
    script_rate = n / statistics.median(script_seconds)
    run_rate = n / statistics.median(run_seconds)
    nodes = {name: statistics.median(run.nodes.get(name, 0.0) for _, run in runs) for name in runs[0][1].nodes}
    stage_rate = n / nodes[CNN_NODE] if nodes.get(CNN_NODE) else 0.0
    return BenchRow(
        backbone,
        runtime,
        size,
        weights,
        n,
        photos,
        script_rate,
        run_rate,
        run_rate / script_rate,
        stage_rate,
        stage_rate / script_rate,
        max(run.driver_mb for _, run in runs),
        max(run.workers_mb for _, run in runs),
        max(mb for _, mb in script_runs),
        max(features_difference(project, script_out) for project, _ in runs),
        script_seconds,
        run_seconds,
        nodes,
    )


if __name__ == "__main__":
    main()
