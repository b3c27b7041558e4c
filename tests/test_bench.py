"""The benchmark command runs end to end: the user's script against the whole kedro run on
the same distinct photos, PCA + CSV on a synthetic feature table, and the service."""

import hashlib
import json

import numpy as np

from tests.extras import MISSING_TORCH
from tools import bench
from tools.bench_photos import photo_set
from tools.plain_featurize import list_photos


def test_bench_compares_the_whole_run_with_the_plain_script(tmp_path):
    output = tmp_path / "benchmark.json"
    rows = bench.main(
        [
            "--n",
            "40",
            "--weights",
            "none",
            "--input-size",
            "32",
            "--pca-rows",
            "2000",
            "--pca-width",
            "48",
            "--serve-requests",
            "5",
            "--photos-cache",
            str(tmp_path / "photos"),
            "--int8-photos",
            "none",
            "--compare-backbones",
            "mobilenet_v2",
            "efficientnet_lite0",
            "--stream-rate",
            "0",
            "--stream-old",
            "--stream-checkpoint-files",
            "0",
            "--stream-s3-rate",
            "0",
            "--output",
            str(output),
        ]
    )
    report = json.loads(output.read_text())
    [row] = report["rows"]
    # Without the [torch] extra, efficientnet_lite0 is reported as skipped, not compared.
    compared = {"mobilenet_v2"} | (set() if MISSING_TORCH else {"efficientnet_lite0"})
    assert set(report["backbone_images_per_s"]) == compared
    assert all(rate > 0 for rate in report["backbone_images_per_s"].values())
    assert row["n_images"] == 40 and row["input_size"] == 32 and row["runtime"] == "onnx"
    assert "distinct" in report["photos"]["40"]
    # Interleaved: script, run, script; the ratio is of their medians.
    assert len(row["script_seconds"]) == 2 and len(row["run_seconds"]) == 1
    assert abs(row["ratio"] - row["run_images_per_s"] / row["script_images_per_s"]) < 1e-9
    # The script did the pipeline's work: the same features for the same photos.
    assert row["features_max_abs_diff"] <= 1e-4
    # Every node of the default pipeline was timed, the CNN's and the PCA's among them.
    assert {"merge_with_previous_features", "fit_pca", "export_pca_csv"} <= set(row["node_seconds"])
    assert row["cnn_stage_images_per_s"] > row["run_images_per_s"] > 0
    assert row["peak_driver_mb"] > 100 and row["peak_workers_mb"] > 0 and row["script_peak_mb"] > 0
    assert rows[0].n_images == 40
    # PCA + CSV on the synthetic table, through kedro run --pipelines dimensionality_reduction.
    pca = report["pca"]
    assert pca["rows"] == 2000 and pca["width"] == 48 and 1 <= pca["k"] <= 48
    assert pca["pca_and_csv_s"] == round(pca["fit_pca_s"] + pca["export_pca_csv_s"], 2) > 0
    # fruits-kedro serve, started as a process and sent real photo uploads.
    serving = report["serve"]
    assert serving["requests"] == 5 and serving["input_size"] == 32
    assert 0 < serving["median_ms"] <= serving["p90_ms"] and serving["startup_s"] > 0


def test_the_photo_set_is_distinct_files_real_first_then_augmentations(tmp_path):
    small = photo_set(30, tmp_path)
    photos = list_photos(small.root)
    assert len(photos) == 30 and small.real + small.generated + small.augmented == 30
    # More photos than the originals: augmentations, each its own content and its own file.
    from tools.bench_photos import _sources

    large_n = len(_sources(tmp_path)) + 25
    large = photo_set(large_n, tmp_path)
    photos = list_photos(large.root)
    assert len(photos) == large_n and large.augmented == 25
    digests = {hashlib.sha1(p.read_bytes()).hexdigest() for p in photos}
    inodes = {p.stat().st_ino for p in photos}
    assert len(digests) == len(inodes) == large_n
    assert "augmentations" in large.describe()
    # Layout <Split>/<Class>/<file>, as the pipeline lists it.
    assert all(p.relative_to(large.root).parts[0] in ("Training", "Test") for p in photos)


def test_augmentations_are_the_dihedral_group_and_small_changes():
    from tools.bench_photos import _variants, augment

    rgb = np.random.default_rng(0).integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    outputs = {augment(rgb, *variant).tobytes() for variant in _variants()}
    assert len(outputs) == len(_variants())
    assert np.array_equal(augment(rgb, 0, 0, None), rgb)


def test_the_int8_comparison_runs_the_evaluation_on_each_runtime(tmp_path, generated_sample, monkeypatch):

    from tests.conftest import run_kedro
    from tools.bench_int8 import compare, format_comparison

    runs = []

    def in_this_process(project, params):  # the parameters as kedro run --config passes them, without a new JVM
        runs.append(params)
        run_kedro(project, monkeypatch, pipeline="evaluation", **params)

    extra = "evaluation.input_size=32,evaluation.weights=null"
    result = compare(generated_sample, tmp_path, "mobilenet_v2", extra, run=in_this_process)
    assert len(runs) == 1 and runs[0]["evaluation"]["feature_sets"] == ["mobilenet_v2", "mobilenet_v2@onnx_int8"]
    assert runs[0]["evaluation"]["input_size"] == 32
    fp32, int8 = result["runtimes"]["onnx"], result["runtimes"]["onnx_int8"]
    assert 0 < fp32["accuracy"] <= 1 and 0 < int8["accuracy"] <= 1
    assert fp32["images_per_second"] > 0 and int8["images_per_second"] > 0
    assert result["accuracy_change_points"] == round(100 * (int8["accuracy"] - fp32["accuracy"]), 2)
    assert result["int8_could_be_default"] == (result["accuracy_change_points"] >= -0.5 and result["speed_up"] >= 1.5)
    assert "| onnx_int8 |" in format_comparison(result)
