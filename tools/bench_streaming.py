"""Streaming figures: how long a photo waits from its arrival to its readable row, and what an
``available_now`` run costs that finds a few new photos on top of many featurized ones.

1. **Latency.** ``kedro run --pipelines streaming`` with the ``processing_time`` trigger, in a
   throw-away copy of the project, while real distinct photos (:mod:`tools.bench_photos`) land
   in its folder at a steady rate (each written under a hidden name, then renamed). A reader
   polls what any reader opens (``current_outputs.json``, then the PCA table's ``_SUCCESS``)
   and notes when each photo's row appears; latency = that time - the file's mtime.
2. **New photos on top of old ones.** N tiny files and a synthetic ``image_features`` table of
   them (:mod:`tools.bench_features`, with the run's feature settings) are made current in two
   copies of the project; a first stream run starts from it (one-time: the listing, its
   moments, the PCA, the CSV); then 10 real photos land and the second ``available_now`` run
   and a batch ``feature_extraction.incremental`` run (in the other copy) are timed, start-up
   included, each featurizing the 10 photos and keeping the N rows.
3. **Checkpoint size.** The stream's source and query (``ImageStream``, the project's Spark
   settings) over N tiny files that landed before the source's allowed lateness (a backlog),
   in micro-batches of 1,000, the micro-batch itself doing nothing: the size of the checkpoint
   (offsets, commits) at the end.

    python -m tools.bench_streaming                          # 20 photos/s for 60 s; N = 20,000 and 71,000
    python -m tools.bench_streaming --rate 5 --seconds 20 --old 2000 --checkpoint-files 5000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tools.bench_project import make_project, subprocess_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FRUITS_KEDRO_CACHE_DIR", Path.home() / ".cache" / "fruits_kedro"))
PCA_MEMBER = "04_feature/image_features_pca.parquet"
LATENESS_SECONDS = 2


def _stream(project: Path, photos: Path, params: str, log: Path) -> subprocess.Popen:
    # FP32, as the synthetic old rows are: with auto, a cached INT8 model would make them stale.
    runtime = "" if "feature_extraction.runtime=" in params else "feature_extraction.runtime=onnx"
    given = ",".join(filter(None, [f"images_root={photos}", runtime, params]))
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", "streaming", "--params", given]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=project, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT)


def land(source: Path, photos: Path, relative: Path) -> float:
    """Copy a photo into the stream's folder as an uploader would; returns its mtime."""
    target = photos / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.part"
    shutil.copyfile(source, temp)
    temp.rename(target)
    return target.stat().st_mtime


class ReadableRows(threading.Thread):
    """Polls the current PCA table as a reader would: when each path's row became readable.

    ``data`` is the output set's folder, on ``fs`` (an fsspec filesystem; the local disk by
    default); ``member`` the PCA table's name in its ``current_outputs.json``."""

    def __init__(self, data: Path | str, every: float = 0.2, *, member: str = PCA_MEMBER, fs=None) -> None:
        import fsspec

        super().__init__(daemon=True)
        self.data, self.every, self.seen, self.parts = str(data), every, {}, set()
        self.member, self.fs = member, fs or fsspec.filesystem("file")
        self.done = threading.Event()

    def run(self) -> None:
        import pyarrow.parquet as pq

        while not self.done.wait(self.every):
            try:
                outputs = json.loads(self.fs.cat_file(f"{self.data}/current_outputs.json"))["outputs"]
                table = f"{self.data}/{outputs[self.member]}"
                files = json.loads(self.fs.cat_file(f"{table}/_SUCCESS"))["files"]
            except (FileNotFoundError, KeyError, json.JSONDecodeError):
                continue
            now = time.time()
            for name in files:
                if (table, name) in self.parts:
                    continue
                self.parts.add((table, name))
                part = pq.read_table(f"{table}/{name}", columns=["path"], filesystem=self.fs)
                for path in part.column("path").to_pylist():
                    self.seen.setdefault(path, now)

    def stop(self) -> None:
        self.done.set()
        self.join()


def measure_latency(rate: float, seconds: float, work: Path, params: str, interval: float) -> dict:
    """Photos landing at ``rate`` per second for ``seconds`` into a running processing-time stream."""
    from tools.bench_photos import photo_set

    n = int(rate * seconds)
    warm_up = 10
    source = photo_set(n + warm_up, CACHE / "bench_photos").root
    sources = sorted(p for p in source.rglob("*.jpg"))
    project = make_project(work / "latency")
    photos = work / "incoming"
    photos.mkdir()
    log = work / "latency.log"
    trigger = f"streaming.trigger=processing_time,streaming.interval_seconds={interval:g}"
    run = _stream(project, photos, ",".join(filter(None, [params, trigger])), log)
    reader = ReadableRows(project / "data")
    reader.start()
    try:
        for photo in sources[:warm_up]:  # the model's loading is not a photo's latency
            land(photo, photos, photo.relative_to(source))
        _wait(lambda: len(reader.seen) >= warm_up, run, log, 600)
        arrivals: dict[str, float] = {}
        start = time.monotonic()
        for i, photo in enumerate(sources[warm_up:]):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            arrivals[str(photos / photo.relative_to(source))] = land(photo, photos, photo.relative_to(source))
        _wait(lambda: all(path in reader.seen for path in arrivals), run, log, 600)
    finally:
        reader.stop()
        stop_stream(run)
    return latency_figures(reader.seen, arrivals, rate, interval)


def stop_stream(run: subprocess.Popen) -> None:
    run.send_signal(signal.SIGINT)  # the query stops after the micro-batch under way
    try:
        run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()


def latency_figures(seen: dict[str, float], arrivals: dict[str, float], rate: float, interval: float) -> dict:
    """Percentiles of the time from each photo's arrival to its readable row."""
    latencies = np.array([seen[path] - arrived for path, arrived in arrivals.items()])
    return {
        "rate_per_s": rate,
        "photos": len(arrivals),
        "interval_s": interval,
        "p50_s": round(float(np.percentile(latencies, 50)), 2),
        "p95_s": round(float(np.percentile(latencies, 95)), 2),
        "max_s": round(float(latencies.max()), 2),
    }


def _wait(condition, run: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if run.poll() is not None:
            raise RuntimeError(f"the stream stopped (exit status {run.returncode}): {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no readable rows after {timeout:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.1)


def measure_new_photos(old: int, new: int, work: Path, params: str, width: int) -> dict:
    """``new`` photos landing in a folder of ``old`` featurized ones: the ``available_now`` stream
    run that featurizes them, and the batch ``incremental`` run doing the same, side by side."""
    from tools.bench_photos import photo_set

    source = photo_set(new, CACHE / "bench_photos").root
    log = work / f"new_on_{old}.log"
    photos = work / f"photos_{old}"
    stream, batch = make_project(work / f"stream_on_{old}"), make_project(work / f"batch_on_{old}")
    _make_featurized([stream, batch], old, width, params, photos)
    # Once: the stream lists the folder's photos, finds them featurized and starts from their rows.
    started = time.perf_counter()
    _run(_stream(stream, photos, f"{params},streaming.max_files_per_trigger={old + new}".strip(","), log), log)
    first = time.perf_counter() - started
    for photo in sorted(source.rglob("*.jpg"))[:new]:
        land(photo, photos, photo.relative_to(source))
    started = time.perf_counter()
    _run(_stream(stream, photos, params, log), log)
    seconds = time.perf_counter() - started
    state = json.loads((stream / "data" / "04_feature" / "stream" / "state.json").read_text())
    if (state["tables"]["features"]["rows"], state["totals"]["featurized"]) != (old + new, new):
        raise RuntimeError(f"stream: {state['tables']['features']['rows']} feature rows, {state['totals']}")
    started = time.perf_counter()
    _run(_batch_incremental(batch, photos, params, log), log)
    batch_seconds = time.perf_counter() - started
    report = _current_json(batch / "data", "08_reporting/feature_extraction_report.json")
    if (report["featurized"], report["reused"]) != (new, old):
        raise RuntimeError(f"batch incremental run: {report['featurized']} featurized, {report['reused']} reused")
    return {
        "old": old,
        "new": new,
        "k": state["k"],
        "run_s": round(seconds, 1),
        "first_run_s": round(first, 1),
        "batch_incremental_s": round(batch_seconds, 1),
    }


def _make_featurized(projects: list[Path], old: int, width: int, params: str, photos: Path) -> None:
    """A synthetic features table of ``old`` rows, current in each of ``projects`` (with the
    run's feature settings, so that the runs take them as featurized), and the tiny files the
    rows stand for, in ``photos``."""
    from fruits_kedro.datasets.output_set import OutputSet

    relative = Path("04_feature") / "runs" / "bench" / "image_features.parquet"
    table = projects[0] / "data" / relative
    command = [sys.executable, "-m", "tools.bench_features", str(table), "--n", str(old), "--d", str(width)]
    command += ["--settings", _feature_settings(params), "--photos", str(photos)]
    subprocess.run(command, cwd=PROJECT_ROOT, env=subprocess_env(), check=True)
    for project in projects:
        if project != projects[0]:
            shutil.copytree(table, project / "data" / relative)
        OutputSet(str(project / "data")).commit("bench", {"04_feature/image_features.parquet": str(relative)})


def _batch_incremental(project: Path, photos: Path, params: str, log: Path) -> subprocess.Popen:
    settings = [f"images_root={photos}", "feature_extraction.runtime=onnx", params]
    settings.append("feature_extraction.incremental=true")
    given = ",".join(filter(None, settings))
    command = [sys.executable, "-m", "kedro", "run", "--params", given]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=project, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT)


def _run(run: subprocess.Popen, log: Path) -> None:
    if run.wait() != 0:
        raise RuntimeError(f"the run failed: {log.read_text()[-3000:]}")


def _current_json(data: Path, member: str) -> dict:
    outputs = json.loads((data / "current_outputs.json").read_text())["outputs"]
    return json.loads((data / outputs[member]).read_text())


def _feature_settings(params: str) -> str:
    """The feature settings of a run with ``params`` (backbone.* only), as its rows carry them."""
    from kedro.config import OmegaConfigLoader

    from fruits_kedro.feature_settings import feature_settings
    from fruits_kedro.settings import CONFIG_LOADER_ARGS

    base = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    backbone = dict(base["backbone"])
    for item in filter(None, params.split(",")):
        key, _, value = item.partition("=")
        if key.startswith("backbone."):
            backbone[key.split(".", 1)[1]] = None if value == "null" else int(value) if value.isdigit() else value
    return feature_settings(backbone, dict(base["preprocessing"]), "onnx")


def measure_checkpoint(files: int, work: Path) -> dict:
    """The checkpoint's size after ``files`` tiny files, in a fresh process with the project's Spark."""
    result = work / "checkpoint.json"
    command = [sys.executable, "-m", "tools.bench_streaming", "--checkpoint-run", str(files), str(work), str(result)]
    subprocess.run(command, cwd=PROJECT_ROOT, env=subprocess_env(), check=True)
    return json.loads(result.read_text())


def _checkpoint_run(files: int, work: Path, result: Path) -> None:
    from fruits_kedro.datasets.image_stream import ImageStream
    from tools.bench_features import configure_local_spark

    configure_local_spark()
    photos = work / "tiny"
    for i in range(files):
        folder = photos / "Training" / f"Class {i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    checkpoint = work / "checkpoint"
    # A backlog: files that landed before the allowed lateness, as a day's photos have.
    time.sleep(LATENESS_SECONDS + 1)
    frame = ImageStream(str(photos), {"allowedLatenessSeconds": str(LATENESS_SECONDS)}).read(1000)
    started = time.perf_counter()
    query = (
        frame.writeStream.foreachBatch(lambda batch, batch_id: None)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    sizes = [p.stat().st_size for p in checkpoint.rglob("*") if p.is_file()]
    figures = {
        "files": files,
        "batches": int(query.lastProgress["batchId"]) + 1,
        "checkpoint_kb": round(sum(sizes) / 1024, 1),
        "checkpoint_files": len(sizes),
        "seconds": round(time.perf_counter() - started, 1),
    }
    result.write_text(json.dumps(figures))


def format_figures(latency: dict | None, new_photos: list[dict], checkpoint: dict | None = None) -> str:
    lines = []
    if latency:
        lines.append(
            f"Streaming latency ({latency['photos']} photos at {latency['rate_per_s']:g}/s, processing_time "
            f"every {latency['interval_s']:g} s): p50 {latency['p50_s']:.1f} s, p95 {latency['p95_s']:.1f} s, "
            f"max {latency['max_s']:.1f} s from arrival to readable row"
        )
    for row in new_photos:
        lines.append(
            f"{row['new']} new photos on {row['old']:,} featurized, start-up included: available_now stream run "
            f"{row['run_s']:.1f} s, batch incremental run {row['batch_incremental_s']:.1f} s; the first stream "
            f"run on them, once: {row['first_run_s']:.1f} s"
        )
    if checkpoint:
        lines.append(
            f"Checkpoint after {checkpoint['files']:,} files in {checkpoint['batches']} micro-batches: "
            f"{checkpoint['checkpoint_kb']:,.0f} KB in {checkpoint['checkpoint_files']} files"
        )
    return "\n".join(lines)


def measure(
    rate: float,
    seconds: float,
    old: list[int],
    interval: float,
    params: str,
    width: int = 1280,
    checkpoint_files: int = 0,
) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fruits_bench_streaming_"))
    try:
        latency = measure_latency(rate, seconds, work, params, interval) if rate and seconds else None
        new_photos = [measure_new_photos(n, 10, work, params, width) for n in old]
        checkpoint = measure_checkpoint(checkpoint_files, work) if checkpoint_files else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"latency": latency, "new_photos": new_photos, "checkpoint": checkpoint}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="photos landing per second (0: no latency figure)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they land")
    parser.add_argument("--interval", type=float, default=2.0, help="streaming.interval_seconds")
    parser.add_argument("--old", type=int, nargs="*", default=[20_000, 71_000], help="featurized rows already there")
    parser.add_argument("--params", default="", help="more --params for the stream's runs")
    parser.add_argument("--checkpoint-files", type=int, default=100_000, help="tiny files for the checkpoint's size")
    parser.add_argument("--checkpoint-run", nargs=3, help=argparse.SUPPRESS)  # internal: that measurement's process
    args = parser.parse_args(argv)
    if args.checkpoint_run:
        files, work, result = args.checkpoint_run
        _checkpoint_run(int(files), Path(work), Path(result))
        return {}
    figures = measure(
        args.rate, args.seconds, args.old, args.interval, args.params.strip(","), checkpoint_files=args.checkpoint_files
    )
    print(format_figures(figures["latency"], figures["new_photos"], figures["checkpoint"]))
    return figures


if __name__ == "__main__":
    main()
