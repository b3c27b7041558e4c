"""``kedro run --pipelines evaluation``, end to end: the generated sample (structure, runs
everywhere) and the real Fruits-360 photos with ImageNet weights (quality)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.extras import requires_torch
from tests.outputs import current_model
from tests.pipelines.evaluation.runs import GENERATED_PARAMS, REAL_INPUT_SIZE

EVALUATED_FIELDS = {
    "accuracy",
    "macro_f1",
    "n_train",
    "n_test",
    "n_features",
    "n_input_features",
    "featurization_seconds",
    "images_per_second",
}


def _metrics(project):
    return json.loads((project / "data/08_reporting/evaluation_metrics.json").read_text())


def test_evaluation_reports_every_field_for_every_feature_set(generated_evaluation, generated_sample):
    metrics = _metrics(generated_evaluation)
    sets = metrics["feature_sets"]
    assert list(sets) == GENERATED_PARAMS["evaluation"]["feature_sets"]
    n_train = len(list((generated_sample / "Training").rglob("*.jpg")))
    n_test = len(list((generated_sample / "Test").rglob("*.jpg")))
    for name, entry in sets.items():
        assert entry["status"] == "evaluated", (name, entry)
        assert EVALUATED_FIELDS <= set(entry), name
        assert 0.0 <= entry["macro_f1"] <= 1.0 and 0.0 <= entry["accuracy"] <= 1.0
        assert (entry["n_train"], entry["n_test"]) == (n_train, n_test)
        assert entry["featurization_seconds"] > 0 and entry["images_per_second"] > 0
    fp32, int8 = sets["mobilenet_v2"], sets["mobilenet_v2@onnx_int8"]
    assert (fp32["runtime"], int8["runtime"]) == ("onnx", "onnx_int8")
    assert (fp32["input_size"], int8["input_size"]) == (64, 64)
    assert int8["n_input_features"] == 1280 and 1 <= int8["n_features"] < n_train
    for entry in sets.values():
        low, high = entry["accuracy_interval_95"]
        assert low <= entry["accuracy"] <= high and entry["n_correct"] == round(entry["accuracy"] * n_test)
    assert set(metrics["frontier"]) <= set(sets) and metrics["frontier"]
    assert metrics["chosen_by_rule"]["feature_set"] in sets
    assert sets["mobilenet_v2"]["n_input_features"] == 1280
    assert 1 <= sets["mobilenet_v2"]["n_features"] < n_train
    assert sets["orb"]["n_features"] == GENERATED_PARAMS["orb_baseline"]["vocabulary_size"]
    assert sets["orb"]["n_images_without_keypoints"] >= 0
    assert metrics["n_classes"] == 10
    assert metrics["predict_backbone"] == "mobilenet_v2"
    # The generated fruits differ in shape and colour: even ORB words separate them.
    assert sets["orb"]["accuracy"] > 0.3


def test_orb_histograms_have_the_vocabulary_size_as_length(generated_evaluation, generated_sample):
    table = pd.read_parquet(generated_evaluation / "data/04_feature/orb_histograms.parquet")
    assert len(table) == len(list(generated_sample.rglob("*.jpg")))
    assert {len(h) for h in table["histogram"]} == {GENERATED_PARAMS["orb_baseline"]["vocabulary_size"]}
    report = json.loads((generated_evaluation / "data/08_reporting/orb_baseline_report.json").read_text())
    assert report["vocabulary_size"] == GENERATED_PARAMS["orb_baseline"]["vocabulary_size"]
    assert report["n_images"] == len(table)
    assert report["n_images_without_keypoints"] == int((table["n_keypoints"] == 0).sum())


def test_fp32_and_int8_of_one_backbone_are_featurized_in_one_pass(generated_evaluation, generated_sample):
    report = json.loads((generated_evaluation / "data/08_reporting/evaluation_metrics.json").read_text())
    sets = report["feature_sets"]
    n_photos = len(list(generated_sample.rglob("*.jpg")))
    # The evaluation run's own lines: later tests (predict, serve) log to the same project.
    log = (generated_evaluation / "logs/info.log").read_text().split("Pipeline execution completed", 1)[0]
    # One featurization job for both runtimes: one log line naming both, one pass timed.
    assert log.count("Feature extraction: mobilenet_v2 at 64x64 (onnx, onnx_int8)") == 1
    assert log.count("Feature extraction: mobilenet_v2 at 64x64") == 1
    fp32, int8 = sets["mobilenet_v2"], sets["mobilenet_v2@onnx_int8"]
    for entry in (fp32, int8):
        # Each rate is its runtime's share of this run's one pass over every photo.
        assert entry["n_train"] + entry["n_test"] == n_photos
        assert 0 < entry["featurization_seconds"] <= entry["pass_seconds"]
        assert entry["images_per_second"] == pytest.approx(n_photos / entry["featurization_seconds"], rel=0.01)
    assert fp32["pass_seconds"] == int8["pass_seconds"]
    assert fp32["pass_variants"] == int8["pass_variants"] == ["mobilenet_v2", "mobilenet_v2@onnx_int8"]


def test_the_results_table_shows_this_runs_figures(generated_evaluation):
    """Every number of the Markdown table is the JSON report's, of the same run."""
    reporting = generated_evaluation / "data/08_reporting"
    metrics = _metrics(generated_evaluation)
    rows = {}
    for line in (reporting / "evaluation_results.md").read_text().splitlines()[2:]:
        if not line.startswith("| "):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    assert list(rows) == list(metrics["feature_sets"])
    for name, entry in metrics["feature_sets"].items():
        cells = rows[name]
        low, high = entry["accuracy_interval_95"]
        assert cells[5] == f"{entry['accuracy']:.1%}" and cells[6] == f"{low:.1%}-{high:.1%}", name
        assert cells[8] == f"{entry['images_per_second']:.0f}", name
        assert cells[11] == ("yes" if name in metrics["frontier"] else "-"), name
    assert rows["mobilenet_v2@onnx_int8"][1:3] == ["onnx_int8", "64 px"]
    table = (reporting / "evaluation_results.md").read_text()
    assert f"**{metrics['chosen_by_rule']['feature_set']}**" in table


def test_evaluation_writes_plots_and_the_classifier(generated_evaluation):
    reporting = generated_evaluation / "data/08_reporting"
    plots = ("confusion_matrix", "feature_sets", "projection_2d", "frontier")
    for plot in plots:
        assert (reporting / f"evaluation_{plot}.png").stat().st_size > 10_000, plot
    table = (reporting / "evaluation_results.md").read_text()
    assert "| mobilenet_v2 | onnx | 64 px | 1280 |" in table and "| orb |" in table
    settings = json.loads(current_model(generated_evaluation, "classifier_settings.json").read_text())
    assert settings["backbone"] == "mobilenet_v2" and settings["input_size"] == 64
    assert settings["variant"] == "mobilenet_v2"
    assert settings["weights"] is None
    assert len(settings["labels"]) == 10
    assert (current_model(generated_evaluation, "classifier_pipeline_model") / "metadata").is_dir()


@pytest.mark.real_photos
def test_mobilenet_imagenet_features_classify_real_photos(real_evaluation):
    metrics = _metrics(real_evaluation)
    sets = metrics["feature_sets"]
    mobilenet = sets["mobilenet_v2"]
    print(json.dumps(sets, indent=1))
    assert mobilenet["status"] == "evaluated"
    assert mobilenet["input_size"] == REAL_INPUT_SIZE
    assert (mobilenet["n_train"], mobilenet["n_test"]) == (1030, 515)
    assert mobilenet["accuracy"] >= 0.85
    assert metrics["n_classes"] == 103


@pytest.mark.real_photos
@requires_torch
def test_efficientnet_lite0_imagenet_features_classify_real_photos(real_evaluation):
    # The PyTorch backbone, listed by default: its packaged checkpoint through the ONNX export.
    lite0 = _metrics(real_evaluation)["feature_sets"]["efficientnet_lite0"]
    assert lite0["status"] == "evaluated", lite0
    assert (lite0["input_size"], lite0["n_input_features"]) == (REAL_INPUT_SIZE, 1280)
    assert 1 <= lite0["n_features"] < lite0["n_train"] and lite0["images_per_second"] > 0
    assert lite0["accuracy"] >= 0.85


@pytest.mark.real_photos
def test_backbone_without_weights_is_skipped_with_its_reason(real_evaluation):
    vgg16 = _metrics(real_evaluation)["feature_sets"]["vgg16"]
    assert vgg16["status"] == "skipped"
    assert "evaluation.weights" in vgg16["reason"] and "vgg16" in vgg16["reason"]


@pytest.mark.real_photos
def test_orb_accuracy_is_reported_on_real_photos(real_evaluation):
    orb = _metrics(real_evaluation)["feature_sets"]["orb"]
    assert orb["status"] == "evaluated"
    assert orb["n_features"] == 100
    # A weak baseline, but far above chance (1/103).
    assert orb["accuracy"] > 0.05
