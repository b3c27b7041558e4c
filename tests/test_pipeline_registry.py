"""The whole default pipeline on the generated sample, and the project-level guarantees."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import make_project_copy
from tests.outputs import current_output


def test_default_pipeline_chains_the_four_core_pipelines():
    from fruits_kedro.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    for name in ("ingestion", "preprocessing", "feature_extraction", "dimensionality_reduction"):
        assert {n.name for n in pipelines[name].nodes} <= default_nodes


def test_default_run_writes_one_csv_row_per_image(default_run, generated_sample):
    table = pd.read_csv(current_output(default_run, "04_feature/image_features_pca.csv"))
    images = sorted(generated_sample.rglob("*.jpg"))
    assert len(table) == len(images)
    assert set(table["split"]) == {"Training", "Test"}
    assert not table["label"].str.contains(r"\s").any()
    assert "Apple_Red" in set(table["label"])
    assert not table.isna().any().any()


def test_default_run_keeps_k_components_reaching_the_threshold(default_run):
    report = json.loads(current_output(default_run, "08_reporting/pca_explained_variance.json").read_text())
    table = pd.read_csv(current_output(default_run, "04_feature/image_features_pca.csv"))
    pcs = [c for c in table.columns if c.startswith("pc_")]
    assert len(pcs) == report["k"]
    assert report["threshold"] == 0.95
    assert report["cumulative"][report["k"] - 1] >= report["threshold"]
    assert report["k"] == 1 or report["cumulative"][report["k"] - 2] < report["threshold"]
    assert report["n_input_features"] == 1280
    assert current_output(default_run, "04_feature/image_features_pca.parquet").is_dir()
    assert current_output(default_run, "08_reporting/pca_scree_plot.png").stat().st_size > 10_000


def _kedro(project: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "kedro"), *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


def test_missing_imagenet_weights_stop_the_run_before_spark(tmp_path, generated_sample):
    project = make_project_copy(tmp_path / "project")
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "empty_keras_home")}
    result = _kedro(project, "run", "--params", f"images_root={generated_sample}", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "backbone.weights" in output and "KERAS_HOME" in output and "weights=null" in output
    assert "Starting SparkSession" not in output


def test_kedro_viz_build_shows_the_current_outputs_previews_and_needs_no_jvm(tmp_path, default_run):
    # No java on PATH and a JAVA_HOME that does not exist: starting Spark would fail.
    python_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME",)}
    env.update(JAVA_HOME=str(tmp_path / "no-java"), PATH=f"{python_bin}:/usr/local/bin:/bin")
    if any((Path(p) / "java").exists() for p in env["PATH"].split(":") if p != python_bin):
        env["PATH"] = python_bin + ":/bin"
    result = _kedro(default_run, "viz", "build", "--include-previews", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    previews = {}
    for path in (default_run / "build" / "api" / "nodes").iterdir():
        node = json.loads(path.read_text())
        if node.get("preview") is not None:
            previews[Path(node.get("filepath") or "").name] = (node["preview_type"], node["preview"])
    scree_type, scree = previews["pca_scree_plot.png"]
    assert scree_type == "ImagePreview" and base64.b64decode(scree).startswith(b"\x89PNG")
    variance_type, variance = previews["pca_explained_variance.json"]
    report = json.loads(current_output(default_run, "08_reporting/pca_explained_variance.json").read_text())
    assert variance_type == "JSONPreview" and json.loads(variance)["k"] == report["k"]
