"""The benchmark command runs end to end and reports the pipeline's and the service's figures."""

import json
import statistics

from tools import bench


def test_bench_writes_ceiling_end_to_end_ratio_memory_and_node_times(tmp_path):
    output = tmp_path / "benchmark.json"
    rows = bench.main(
        [
            "--n",
            "40",
            "--runtimes",
            "onnx",
            "--weights",
            "none",
            "--input-size",
            "32",
            "--ceiling-windows",
            "1",
            "--ceiling-seconds",
            "0.3",
            "--serve-requests",
            "5",
            "--output",
            str(output),
        ]
    )
    [row] = json.loads(output.read_text())["rows"]
    assert row["n_images"] == 40 and row["input_size"] == 32 and row["runtime"] == "onnx"
    # The ceiling was timed right before and right after the run; it is their median.
    assert len(row["ceiling_windows"]) == 2 and min(row["ceiling_windows"]) > 0
    assert row["ceiling_images_per_s"] == statistics.median(row["ceiling_windows"])
    assert row["end_to_end_images_per_s"] > 0
    assert abs(row["ratio"] - row["end_to_end_images_per_s"] / row["ceiling_images_per_s"]) < 1e-9
    assert row["peak_driver_mb"] > 100 and row["peak_workers_mb"] > 0
    # Every node of the measured run was timed, the CNN's (with its save) among them.
    assert {"attach_image_bytes", "extract_features", "merge_with_previous_features"} <= set(row["node_seconds"])
    assert row["cnn_stage_images_per_s"] > row["end_to_end_images_per_s"]
    assert rows[0].n_images == 40
    # fruits-kedro serve, started as a process and sent real photo uploads.
    serving = json.loads(output.read_text())["serve"]
    assert serving["requests"] == 5 and serving["input_size"] == 32
    assert 0 < serving["median_ms"] <= serving["p90_ms"] and serving["startup_s"] > 0
