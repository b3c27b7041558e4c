import numpy as np
import pytest
from matplotlib.figure import Figure
from pyspark.ml import PipelineModel
from pyspark.ml.functions import array_to_vector

from fruits_kedro.datasets.spark_ml_model import SparkMLModelDataset
from fruits_kedro.pipelines.evaluation.nodes import (
    accuracy_and_macro_f1,
    classify_feature_sets,
    confusion_from_counts,
    featurize_with_backbones,
    fit_classifier,
    plot_confusion_matrices,
    plot_feature_projections,
    plot_feature_set_comparison,
    results_table,
    score_classifier,
)
from tests.params import params

LR = {"max_iter": 20, "reg_param": 0.01, "elastic_net_param": 0.0}


def _clusters(spark, n_per_class: int = 8, dim: int = 12, column: str = "features"):
    """Three well-separated classes in ``dim`` dimensions, in both splits."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(3, dim))
    rows = []
    for split in ("Training", "Test"):
        for c, centre in enumerate(centres):
            for i in range(n_per_class):
                vector = centre + rng.normal(scale=0.3, size=dim)
                rows.append((f"/{split}/{c}/{i}.jpg", f"class_{c}", split, [float(v) for v in vector]))
    return spark.createDataFrame(rows, f"path string, label string, split string, {column} array<float>")


def test_confusion_and_scores_match_a_hand_computed_example():
    labels, matrix = confusion_from_counts([("a", "a", 3), ("a", "b", 1), ("b", "b", 2), ("c", "b", 2)])
    assert labels == ["a", "b", "c"]
    assert matrix.tolist() == [[3, 1, 0], [0, 2, 0], [0, 2, 0]]
    accuracy, macro_f1 = accuracy_and_macro_f1(matrix)
    assert accuracy == pytest.approx(5 / 8)
    # F1: a = 2*3/(3+4) = 6/7; b = 2*2/(5+2) = 4/7; c never predicted = 0.
    assert macro_f1 == pytest.approx((6 / 7 + 4 / 7 + 0) / 3)


def test_fit_classifier_reduces_with_pca_and_classifies_separable_classes(spark):
    vectors = _clusters(spark).select("path", "label", "split", array_to_vector("features").alias("vector"))
    model, info = fit_classifier(vectors, LR, reduce_dimensions=True, variance_threshold=0.95)
    assert 1 <= info["n_features"] <= 3  # three centres span at most two directions, plus noise
    assert info["n_input_features"] == 12 and info["n_train"] == 24
    assert info["labels"] == ["class_0", "class_1", "class_2"]
    scores = score_classifier(model, vectors)
    assert scores["accuracy"] == 1.0 and scores["macro_f1"] == 1.0 and scores["n_test"] == 24


def test_a_backbone_without_weights_is_skipped_with_the_setting_to_fix(spark, tmp_path):
    raw = spark.createDataFrame(
        [("/a.jpg", "A", "Training", b"")], "path string, label string, split string, content binary"
    )
    missing = str(tmp_path / "missing.h5")
    features, report = featurize_with_backbones(
        raw,
        params("evaluation", feature_sets=["mobilenet_v2", "vgg16"], weights=missing),
        params("preprocessing"),
        params("feature_extraction"),
    )
    assert features == {}
    for name in ("mobilenet_v2", "vgg16"):
        assert report[name]["status"] == "skipped"
        assert missing in report[name]["reason"] and "evaluation.weights" in report[name]["reason"]


def test_a_pytorch_backbone_is_skipped_without_its_extra(spark, monkeypatch, tmp_path):
    import sys

    from fruits_kedro.inference import onnx_export

    raw = spark.createDataFrame(
        [("/a.jpg", "A", "Training", b"")], "path string, label string, split string, content binary"
    )
    settings = params("evaluation", feature_sets=["efficientnet_lite0", "efficientnet_lite0@onnx_int8"])
    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(onnx_export, "_onnx_models", {})
    monkeypatch.setitem(sys.modules, "torch", None)  # as where the [torch] extra is not installed
    features, report = featurize_with_backbones(raw, settings, params("preprocessing"), params("feature_extraction"))
    assert features == {}
    for name, runtime in (("efficientnet_lite0", "onnx"), ("efficientnet_lite0@onnx_int8", "onnx_int8")):
        reason = report[name]["reason"]
        assert report[name]["status"] == "skipped" and report[name]["runtime"] == runtime
        assert "evaluation.feature_sets" in reason and 'pip install -e ".[torch]"' in reason


def test_the_results_table_shows_runtime_interval_speed_frontier_and_the_rules_pick():
    common = {"status": "evaluated", "n_train": 10, "n_test": 500, "training_seconds": 12.0}
    cnn = {**common, "kind": "cnn", "backbone": "mobilenet_v2", "input_size": 224, "n_input_features": 1280}
    metrics = {
        "n_classes": 3,
        "feature_sets": {
            "mobilenet_v2": {
                **cnn,
                "runtime": "onnx",
                "n_features": 90,
                "accuracy": 0.95,
                "accuracy_interval_95": [0.927, 0.966],
                "macro_f1": 0.93,
                "featurization_seconds": 40.0,
                "images_per_second": 38.6,
            },
            "mobilenet_v2@onnx_int8": {
                **cnn,
                "runtime": "onnx_int8",
                "n_features": 91,
                "accuracy": 0.946,
                "accuracy_interval_95": [0.923, 0.963],
                "macro_f1": 0.92,
                "featurization_seconds": 20.0,
                "images_per_second": 77.2,
            },
            "vgg16": {
                "kind": "cnn",
                "status": "skipped",
                "runtime": "onnx",
                "input_size": 100,
                "reason": "Cannot load weights 'imagenet'\nHow to fix",
            },
            "orb": {
                **common,
                "kind": "orb_bag_of_words",
                "n_input_features": 100,
                "n_features": 100,
                "n_images_without_keypoints": 2,
                "accuracy": 0.5,
                "accuracy_interval_95": [0.456, 0.544],
                "macro_f1": 0.25,
                "featurization_seconds": 30.0,
                "images_per_second": 0.5,
            },
        },
        "best_feature_set": "mobilenet_v2",
        "frontier": ["mobilenet_v2", "mobilenet_v2@onnx_int8"],
        "chosen_by_rule": {"feature_set": "mobilenet_v2@onnx_int8", "why": "0.40 point behind", "rule": "R"},
    }
    table = results_table(metrics)
    assert table.startswith("| Feature set | Runtime | Input | Feature width | PCA k | Test accuracy | 95% interval ")
    fp32 = "| mobilenet_v2 | onnx | 224 px | 1280 | 90 | 95.0% | 92.7%-96.6% | 0.930 | 39 | 40 s | 12 s | yes |"
    assert fp32 in table
    assert "| mobilenet_v2@onnx_int8 | onnx_int8 | 224 px | 1280 | 91 | 94.6% | 92.3%-96.3% | 0.920 | 77 |" in table
    assert "| orb | OpenCV | ORB words (2 photos without keypoints) | 100 | - | 50.0% | 45.6%-54.4% |" in table
    assert "| 0 | 30 s | 12 s | - |" in table  # ORB: off the frontier
    assert "| vgg16 | onnx | 100 px | skipped | - | - | - | - | - | - | Cannot load weights 'imagenet' | - |" in table
    assert "By the rule (R): **mobilenet_v2@onnx_int8**: 0.40 point behind." in table
    assert "Not told apart from mobilenet_v2 on these Test photos (the intervals overlap): mobilenet_v2@onnx_int8." in (
        table
    )


def test_skipped_backbones_are_reported_and_the_run_goes_on(spark, tmp_path):
    orb = _clusters(spark, column="histogram")
    backbone_report = {"vgg16": {"status": "skipped", "reason": "no weights", "input_size": 100, "weights": "imagenet"}}
    orb_report = {"featurization_seconds": 1.5, "vocabulary_size": 12, "n_images_without_keypoints": 0}
    metrics, details, model, settings = classify_feature_sets(
        {},
        backbone_report,
        orb,
        orb_report,
        params("evaluation", feature_sets=["vgg16", "orb"], logistic_regression=LR),
        params("dimensionality_reduction"),
    )
    assert metrics["feature_sets"]["vgg16"] == {"kind": "cnn", **backbone_report["vgg16"]}
    assert metrics["feature_sets"]["orb"]["accuracy"] == 1.0
    assert metrics["feature_sets"]["orb"]["n_features"] == 12
    assert metrics["best_feature_set"] == "orb"
    # Nothing to predict with: an empty model, and settings that say why.
    assert isinstance(model, PipelineModel) and model.stages == []
    assert settings["backbone"] is None and "no weights" in settings["reason"]
    for plot in (
        plot_confusion_matrices(details, metrics),
        plot_feature_set_comparison(metrics),
        plot_feature_projections(details),
    ):
        assert isinstance(plot, Figure)
    # The empty model still round-trips through the catalog dataset.
    dataset = SparkMLModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(model)
    assert dataset.exists() and dataset.load().stages == []


def test_classifier_model_round_trips_through_the_dataset(spark, tmp_path):
    features = _clusters(spark)
    report = {
        "mobilenet_v2": {
            "status": "evaluated",
            "input_size": 64,
            "weights": None,
            "featurization_seconds": 2.0,
            "n_rejected": 0,
        }
    }
    orb = _clusters(spark, column="histogram")
    orb_report = {"featurization_seconds": 1.0, "vocabulary_size": 12, "n_images_without_keypoints": 0}
    metrics, details, model, settings = classify_feature_sets(
        {"mobilenet_v2": features},
        report,
        orb,
        orb_report,
        params("evaluation", feature_sets=["mobilenet_v2", "orb"], logistic_regression=LR),
        params("dimensionality_reduction"),
    )
    assert metrics["feature_sets"]["mobilenet_v2"]["accuracy"] == 1.0
    assert (
        settings["backbone"] == "mobilenet_v2"
        and settings["n_components"] == metrics["feature_sets"]["mobilenet_v2"]["n_features"]
    )
    assert set(details["projection"]) == {"mobilenet_v2", "orb"}
    dataset = SparkMLModelDataset(filepath=str(tmp_path / "model"))
    assert not dataset.exists()
    dataset.save(model)
    dataset.save(model)  # overwrite, as a rerun does
    loaded = dataset.load()
    vectors = features.select("path", "label", "split", array_to_vector("features").alias("vector"))
    assert score_classifier(loaded, vectors)["accuracy"] == 1.0


def test_the_model_dataset_refuses_what_it_cannot_save(tmp_path):
    from kedro.io.core import DatasetError

    with pytest.raises(DatasetError, match="PipelineModel"):
        SparkMLModelDataset(filepath=str(tmp_path / "model")).save({"not": "a model"})
    with pytest.raises(DatasetError, match="kedro run --pipelines evaluation"):
        SparkMLModelDataset(filepath=str(tmp_path / "never_saved")).load()


def test_orb_left_out_of_the_feature_sets_describes_no_photo_and_is_not_reported(spark):
    from fruits_kedro.pipelines.evaluation.nodes import images_for_orb
    from fruits_kedro.pipelines.orb_baseline.nodes import (
        build_word_histograms,
        detect_orb_descriptors,
        fit_visual_vocabulary,
    )

    raw = spark.createDataFrame(
        [("/Training/a/1.jpg", "a", "Training", b"x")], "path string, label string, split string, content binary"
    )
    settings = params("evaluation", feature_sets=["mobilenet_v2"], logistic_regression=LR)
    assert images_for_orb(raw, params("evaluation")).count() == 1  # orb is a default feature set
    none = images_for_orb(raw, settings)
    descriptors, detection = detect_orb_descriptors(none, params("orb_baseline"))
    vocabulary = fit_visual_vocabulary(descriptors, params("orb_baseline"))
    histograms, orb_report = build_word_histograms(descriptors, vocabulary, detection)
    assert vocabulary["vocabulary_size"] == 0 and histograms.count() == 0

    report = {"mobilenet_v2": {"status": "evaluated", "input_size": 64, "weights": None, "featurization_seconds": 1.0}}
    metrics, *_ = classify_feature_sets(
        {"mobilenet_v2": _clusters(spark)}, report, histograms, orb_report, settings, params("dimensionality_reduction")
    )
    assert list(metrics["feature_sets"]) == ["mobilenet_v2"]


def test_the_classifier_is_the_same_whatever_the_partitioning(spark):
    """Overlapping classes (L-BFGS runs all its iterations): the coefficients, to the last bit,
    do not depend on how the Training rows were split into partitions."""
    rng = np.random.default_rng(5)
    rows = [
        (f"/{split}/{i}.jpg", f"class_{i % 5}", split, [float(v) for v in rng.normal(i % 5 * 0.2, 1.0, 16)])
        for split in ("Training", "Test")
        for i in range(200)
    ]
    frame = spark.createDataFrame(rows, "path string, label string, split string, features array<float>")
    vectors = frame.select("path", "label", "split", array_to_vector("features").alias("vector"))
    models = [fit_classifier(vectors.repartition(n), LR, reduce_dimensions=False)[0] for n in (1, 6)]
    coefficients = [m.stages[0].coefficientMatrix.toArray() for m in models]
    assert np.array_equal(coefficients[0], coefficients[1])
    assert np.array_equal(models[0].stages[0].interceptVector.toArray(), models[1].stages[0].interceptVector.toArray())


def test_variants_of_one_backbone_and_size_share_one_featurization(spark, tmp_path, monkeypatch):
    from fruits_kedro.inference.featurize import featurize_with_runtimes
    from fruits_kedro.pipelines.evaluation import nodes
    from tests.inference.raw_images import random_images

    calls = []

    def counted(raw_images, backbone_params, preprocessing_params, params, columns, **options):
        calls.append((backbone_params["name"], backbone_params["input_size"], dict(columns)))
        return featurize_with_runtimes(raw_images, backbone_params, preprocessing_params, params, columns, **options)

    monkeypatch.setattr(nodes, "featurize_with_runtimes", counted)
    # The sizes and calibration of the featurization tests: their ONNX and INT8 models are in the session's cache.
    images = random_images(spark, tmp_path, n=4, size=64)
    settings = params(
        "evaluation",
        feature_sets=["mobilenet_v2", "mobilenet_v2@onnx_int8", "mobilenet_v2@32", "orb"],
        input_size=64,
        weights=None,
    )
    features, report = featurize_with_backbones(
        images, settings, params("preprocessing"), params("feature_extraction", int8_calibration_photos=4)
    )
    assert calls == [
        ("mobilenet_v2", 64, {"onnx": "features_onnx", "onnx_int8": "features_onnx_int8"}),
        ("mobilenet_v2", 32, {"onnx": "features_onnx"}),
    ]
    assert features["mobilenet_v2"] is features["mobilenet_v2@onnx_int8"]  # one persisted frame, two columns
    fp32, int8, small = (report[name] for name in ("mobilenet_v2", "mobilenet_v2@onnx_int8", "mobilenet_v2@32"))
    assert (fp32["runtime"], int8["runtime"], small["runtime"]) == ("onnx", "onnx_int8", "onnx")
    assert (fp32["input_size"], int8["input_size"], small["input_size"]) == (64, 64, 32)
    assert fp32["pass_variants"] == int8["pass_variants"] == ["mobilenet_v2", "mobilenet_v2@onnx_int8"]
    assert fp32["pass_seconds"] == int8["pass_seconds"] and small["pass_variants"] == ["mobilenet_v2@32"]
    for entry in (fp32, int8):  # each runtime's share of the one pass, and its rate from it
        assert 0 < entry["featurization_seconds"] <= entry["pass_seconds"]
        assert entry["images_per_second"] == pytest.approx(4 / entry["featurization_seconds"], rel=0.01, abs=0.1)
    assert small["featurization_seconds"] == small["pass_seconds"]
    for name, entry in report.items():
        frame = features[name].select(entry["features_column"]).collect()
        assert len(frame) == 4 and {len(row[0]) for row in frame} == {1280}, name
    for frame in features.values():
        frame.unpersist()
