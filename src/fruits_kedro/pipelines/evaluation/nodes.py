"""Evaluation: how well does each feature set classify the photos?

Each configured variant (a backbone, its runtime and input size:
:func:`fruits_kedro.inference.registry.parse_variant`) is featurized on the shared raw images
by the main pipelines' code (:func:`fruits_kedro.inference.featurize.featurize_with_runtimes`:
the decode at that input size, then the network), one pass per (backbone, size) whatever the
runtimes, inside this one node, so that a variant whose weights cannot be had is *reported*
as skipped instead of failing the run, as a separate Kedro node would. The ORB histograms
come from the orb_baseline pipeline. The report's accuracies carry their 95% interval, and
the frontier and the rule's pick come from :mod:`fruits_kedro.ml.frontier`.

Each feature set gets a Spark ML multinomial logistic regression trained on the Training
split and scored on Test. CNN features are first centred and reduced by PCA fitted on the
Training split only (:mod:`fruits_kedro.ml.pca`, k chosen by the same :func:`choose_k` rule
as the dimensionality_reduction pipeline), so nothing of the Test photos leaks into the
classifier. The fitted transformations and classifier of one
backbone form a single PipelineModel, persisted for :mod:`fruits_kedro.predict`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_kedro.inference.featurize import TaskSeconds, featurize_with_runtimes
from fruits_kedro.inference.onnx_export import inference_payload
from fruits_kedro.inference.registry import UnsupportedRuntimeError, Variant, get_backbone, parse_variants
from fruits_kedro.inference.runtime import INT8_RUNTIME
from fruits_kedro.inference.weights import WeightsUnavailableError
from fruits_kedro.ml.exported_classifier import export_arrays
from fruits_kedro.ml.frontier import choose_by_rule, pareto_optimal, wilson_interval
from fruits_kedro.ml.pca import CentredProjection, choose_k, fit_principal_components
from fruits_kedro.params import section

logger = logging.getLogger(__name__)

ORB_FEATURE_SET = "orb"
TRAIN_SPLIT, TEST_SPLIT = "Training", "Test"
# Column names of the persisted PipelineModel (input vector, output label).
VECTOR_COLUMN = "vector"
PREDICTED_LABEL_COLUMN = "predicted_label"
# The classifier's training partitions: a constant, so the metrics are the same on any cluster.
CLASSIFIER_PARTITIONS = 2
RULE = "the most accurate, unless another is within 0.5 point and at least 1.5x faster"


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    return section("evaluation", params).model_dump()


def variants_of(settings: dict[str, Any]) -> list[Variant]:
    """The CNN feature sets of ``evaluation.feature_sets``, in their order: a backbone alone runs
    on FP32 ONNX at ``evaluation.input_size`` (or its own size); ``@runtime`` and ``@size`` say otherwise."""
    specs = [name for name in settings["feature_sets"] if name != ORB_FEATURE_SET]
    return parse_variants(specs, default_runtime="onnx", default_input_size=settings["input_size"])


def _with_orb(settings: dict[str, Any]) -> bool:
    return settings["include_orb"] and ORB_FEATURE_SET in settings["feature_sets"]


def images_for_orb(raw_images: DataFrame, params: dict[str, Any]) -> DataFrame:
    """The photos the ORB baseline describes: all of them, or none when ``evaluation.feature_sets``
    leaves ``orb`` out or ``evaluation.include_orb`` is false (its nodes then run on nothing, in milliseconds)."""
    return raw_images if _with_orb(_settings(params)) else raw_images.limit(0)


# --------------------------------------------------------------------------------------
# Featurization
# --------------------------------------------------------------------------------------
def featurize_with_backbones(
    raw_images: DataFrame,
    params: dict[str, Any],
    preprocessing_params: dict[str, Any],
    feature_extraction_params: dict[str, Any],
    ingestion_params: dict[str, Any] | None = None,
) -> tuple[dict[str, DataFrame], dict[str, dict[str, Any]]]:
    """CNN features of every photo for each variant of ``evaluation.feature_sets``.

    Returns ({variant: DataFrame(path, label, split, <features_column>)}, {variant: report}).
    Variants of one (backbone, input size) share one pass: each photo is read and decoded
    once and goes through each runtime's session (the FP32 and INT8 models of one backbone
    see the same pixels). A variant whose weights are unavailable gets ``status: skipped``
    and the reason. Timed on the driver: ``model_seconds`` prepares what the executors run
    (weights, ONNX model, INT8 calibration), ``pass_seconds`` the pass over every photo, and
    a variant's ``featurization_seconds`` that pass less the other runtimes' share of the
    tasks' time (:class:`~fruits_kedro.inference.featurize.TaskSeconds`): ``images_per_second``
    is the photos per second of it.
    """
    settings = _settings(params)
    passes: dict[tuple[str, int], list[Variant]] = {}
    for variant in variants_of(settings):
        passes.setdefault(variant.pass_key, []).append(variant)
    features: dict[str, DataFrame] = {}
    reports: dict[str, dict[str, Any]] = {}
    for (name, size), variants in passes.items():
        backbone_params = {"name": name, "input_size": size, "weights": settings["weights"]}
        ready: dict[str, float] = {}
        for variant in variants:
            started = time.perf_counter()
            try:
                # Before decoding, so that a skip costs seconds; the featurization finds it in the process cache.
                inference_payload(variant.backbone, size, settings["weights"], variant.runtime)
            except (WeightsUnavailableError, UnsupportedRuntimeError) as exc:
                reason = str(exc).replace("backbone.weights", "evaluation.weights")
                reason = reason.replace("backbone.name", "evaluation.feature_sets")
                logger.warning("Evaluation skips %s: %s", variant.spec, reason.splitlines()[0])
                reports[variant.spec] = {**_variant_fields(variant, settings), "status": "skipped", "reason": reason}
                continue
            ready[variant.spec] = time.perf_counter() - started
        runnable = [variant for variant in variants if variant.spec in ready]
        if not runnable:
            continue
        columns = {variant.runtime: f"features_{variant.runtime}" for variant in runnable}
        started = time.perf_counter()
        featurized, rejected, task_seconds = featurize_with_runtimes(
            raw_images,
            backbone_params,
            preprocessing_params,
            feature_extraction_params,
            columns,
            max_file_bytes=(ingestion_params or {}).get("max_file_bytes"),
        )
        preparation = time.perf_counter() - started  # the INT8 calibration, where there is one
        extracted = featurized.persist(StorageLevel.MEMORY_AND_DISK)
        started = time.perf_counter()
        n_images = extracted.count()  # runs the CNNs, which gathers the rejected images and the timings
        wall = time.perf_counter() - started
        n_rejected = len(rejected.reasons)
        seconds = task_seconds.seconds
        for variant in runnable:
            alone = task_seconds.wall_seconds_alone(variant.runtime, wall)
            quantized = variant.runtime == INT8_RUNTIME
            features[variant.spec] = extracted  # the persisted frame itself, so that classification can unpersist it
            reports[variant.spec] = {
                **_variant_fields(variant, settings),
                "status": "evaluated",
                "features_column": columns[variant.runtime],
                "n_images": int(n_images),
                "n_rejected": int(n_rejected),
                "n_input_features": variant.backbone.feature_dim(size),
                "model_seconds": round(ready[variant.spec] + (preparation if quantized else 0.0), 3),
                "pass_variants": [v.spec for v in runnable],
                "pass_seconds": round(wall, 3),
                "decode_task_seconds": round(seconds.get(TaskSeconds.DECODE, 0.0), 3),
                "session_task_seconds": round(seconds.get(variant.runtime, 0.0), 3),
                "featurization_seconds": round(alone, 3),
                "images_per_second": _rate(n_images + n_rejected, alone),
            }
            logger.info(
                "Evaluation: %s features of %d images, %.1f images/s (%.1f s of the %.1f s pass)",
                variant.spec,
                n_images,
                reports[variant.spec]["images_per_second"],
                alone,
                wall,
            )
    return features, reports


_PASS_FIELDS = ("pass_variants", "pass_seconds", "decode_task_seconds", "session_task_seconds", "model_seconds")


def _variant_fields(variant: Variant, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "backbone": variant.backbone.name,
        "runtime": variant.runtime,
        "input_size": variant.input_size,
        "weights": settings["weights"],
    }


def _rate(n_images: int, seconds: float) -> float:
    return round(n_images / seconds, 1) if seconds > 0 else 0.0


# --------------------------------------------------------------------------------------
# Metrics (pure numpy: unit-tested without Spark)
# --------------------------------------------------------------------------------------
def confusion_from_counts(counts: list[tuple[str, str, int]]) -> tuple[list[str], np.ndarray]:
    """(true label, predicted label, count) triples -> (sorted labels, confusion matrix [true, predicted])."""
    labels = sorted({t for t, _, _ in counts} | {p for _, p, _ in counts})
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true, predicted, count in counts:
        matrix[index[true], index[predicted]] += int(count)
    return labels, matrix


def accuracy_and_macro_f1(matrix: np.ndarray) -> tuple[float, float]:
    """Accuracy, and the unweighted mean F1 over every label seen as truth or prediction.

    A label never predicted (or never true) has F1 = 0, as in scikit-learn's ``average="macro"``.
    """
    total = matrix.sum()
    if total == 0:
        raise ValueError("No test predictions to score")
    true_positives = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    denominator = predicted + actual
    f1 = np.divide(2 * true_positives, denominator, out=np.zeros_like(true_positives), where=denominator > 0)
    return float(true_positives.sum() / total), float(f1.mean())


# --------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------
def _split(vectors: DataFrame) -> tuple[DataFrame, DataFrame]:
    train = vectors.where(F.col("split") == TRAIN_SPLIT)
    test = vectors.where(F.col("split") == TEST_SPLIT)
    return train, test


def _logistic_regression(params: dict[str, Any], features_column: str) -> LogisticRegression:
    return LogisticRegression(
        featuresCol=features_column,
        labelCol="label_index",
        predictionCol="prediction",
        family="multinomial",
        maxIter=int(params["max_iter"]),
        regParam=float(params["reg_param"]),
        elasticNetParam=float(params["elastic_net_param"]),
    )


def fit_classifier(
    vectors: DataFrame,
    lr_params: dict[str, Any],
    reduce_dimensions: bool,
    variance_threshold: float = 0.95,
    max_components: int | None = None,
) -> tuple[PipelineModel, dict[str, Any]]:
    """Fit [centre -> PCA (k components) ->] logistic regression on Training.

    ``vectors``: path, label, split, ``vector``. Returns the PipelineModel (input ``vector``,
    output ``probability`` and ``predicted_label``) and what was chosen (k, labels).
    """
    train, _ = _split(vectors)
    indexer = StringIndexer(inputCol="label", outputCol="label_index", stringOrderType="alphabetAsc").fit(train)
    train = indexer.transform(train).persist(StorageLevel.MEMORY_AND_DISK)
    n_train = train.count()
    n_input = len(train.select(VECTOR_COLUMN).first()[0])
    stages: list = []
    info: dict[str, Any] = {"n_input_features": int(n_input)}
    features_column = VECTOR_COLUMN
    if reduce_dimensions:
        # The dimensionality_reduction pipeline's method (Spark covariance, driver eigh; see fit_principal_components).
        mean, ratios, axes = fit_principal_components(train, VECTOR_COLUMN)
        if not np.all(np.isfinite(ratios)):
            raise ValueError(f"The {n_train} Training feature vectors have no variance: PCA is undefined")
        k_max = max(1, min(n_input, n_train - 1 if n_train > 1 else 1, max_components or n_input))
        ratios = ratios[:k_max]
        k = choose_k(ratios, variance_threshold)
        stages = [CentredProjection.of(mean, axes[:, :k], VECTOR_COLUMN, "classifier_features")]
        features_column = "classifier_features"
        info.update(n_features=int(k), explained_variance_at_k=float(np.cumsum(ratios)[k - 1]))
    else:
        info.update(n_features=int(n_input))
    # In a fixed partitioning and order: L-BFGS adds up per-partition gradients, and the rounding
    # of those sums must not depend on the cluster's cores (two partial sums add up the same in
    # either order). Persisted: otherwise every iteration would recompute the PCA projection.
    prepared = (PipelineModel(stages).transform(train) if stages else train).repartition(CLASSIFIER_PARTITIONS, "path")
    prepared = prepared.sortWithinPartitions("path").persist(StorageLevel.MEMORY_AND_DISK)
    prepared.count()
    classifier = _logistic_regression(lr_params, features_column).fit(prepared)
    prepared.unpersist()
    train.unpersist()
    to_label = IndexToString(inputCol="prediction", outputCol=PREDICTED_LABEL_COLUMN, labels=indexer.labels)
    model = PipelineModel([*stages, classifier, to_label])
    info.update(labels=list(indexer.labels), n_train=int(n_train))
    return model, info


def score_classifier(model: PipelineModel, vectors: DataFrame) -> dict[str, Any]:
    """Accuracy, macro F1 and the confusion matrix of ``model`` on the Test split."""
    _, test = _split(vectors)
    counts = model.transform(test).groupBy("label", PREDICTED_LABEL_COLUMN).count().collect()
    labels, matrix = confusion_from_counts([(r["label"], r[PREDICTED_LABEL_COLUMN], r["count"]) for r in counts])
    accuracy, macro_f1 = accuracy_and_macro_f1(matrix)
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "n_test": int(matrix.sum()),
        "n_correct": int(np.trace(matrix)),
        "labels": labels,
        "matrix": matrix,
    }


def project_2d(vectors: DataFrame) -> pd.DataFrame:
    """First two principal components of every image (centred), for the scatter plot."""
    mean, _, axes = fit_principal_components(vectors, VECTOR_COLUMN)
    xy = vector_to_array(F.col("xy"))
    rows = (
        CentredProjection.of(mean, axes[:, :2], VECTOR_COLUMN, "xy")
        .transform(vectors)
        .select("label", "split", xy[0].alias("x"), xy[1].alias("y"))
    )
    return rows.toPandas()


def _check_splits(vectors: DataFrame, name: str) -> None:
    counts = {r["split"]: r["count"] for r in vectors.groupBy("split").count().collect()}
    if not counts.get(TRAIN_SPLIT) or not counts.get(TEST_SPLIT):
        raise ValueError(
            f"Feature set {name!r} has splits {counts}: evaluation needs photos under both "
            f"<images_root>/{TRAIN_SPLIT}/<class>/ and <images_root>/{TEST_SPLIT}/<class>/ (setting images_root)."
        )


def classify_feature_sets(
    backbone_features: dict[str, DataFrame],
    backbone_report: dict[str, dict[str, Any]],
    orb_histograms: DataFrame,
    orb_report: dict[str, Any],
    params: dict[str, Any],
    dimensionality_reduction_params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], PipelineModel, dict[str, Any]]:
    """Train and score one classifier per feature set.

    Returns (metrics for the JSON report, confusion matrices and 2-D points for the plots,
    the predict backbone's PipelineModel, the settings predict needs to feed it).
    """
    settings = _settings(params)
    reduction = section("dimensionality_reduction", dimensionality_reduction_params)
    threshold, max_components = reduction.variance_threshold, reduction.max_components
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {"confusion": {}, "projection": {}}
    models: dict[str, tuple[PipelineModel, dict[str, Any]]] = {}

    feature_sets: list[tuple[str, DataFrame | None, bool]] = []
    for variant in variants_of(settings):
        name = variant.spec
        frame = backbone_features.get(name)
        column = backbone_report.get(name, {}).get("features_column", "features")
        vectors = (
            None
            if frame is None
            else frame.select("path", "label", "split", array_to_vector(column).alias(VECTOR_COLUMN))
        )
        feature_sets.append((name, vectors, True))
    if _with_orb(settings):
        orb_vectors = orb_histograms.select("path", "label", "split", array_to_vector("histogram").alias(VECTOR_COLUMN))
        feature_sets.append((ORB_FEATURE_SET, orb_vectors, False))

    for name, vectors, is_backbone in feature_sets:
        featurization = backbone_report.get(name, {}) if is_backbone else orb_report
        if vectors is None:
            metrics[name] = {"kind": "cnn", "status": "skipped", **featurization}
            continue
        _check_splits(vectors, name)
        started = time.perf_counter()
        model, info = fit_classifier(
            vectors,
            settings["logistic_regression"],
            reduce_dimensions=is_backbone,
            variance_threshold=threshold,
            max_components=max_components,
        )
        training_seconds = time.perf_counter() - started
        scores = score_classifier(model, vectors)
        rate = featurization.get("images_per_second")
        if rate is None:  # ORB's report has its photos and seconds
            rate = _rate(featurization.get("n_images", 0), float(featurization["featurization_seconds"]))
        low, high = wilson_interval(scores["n_correct"], scores["n_test"])
        entry = {
            "kind": "cnn" if is_backbone else "orb_bag_of_words",
            "status": "evaluated",
            "accuracy": scores["accuracy"],
            "accuracy_interval_95": [low, high],
            "n_correct": scores["n_correct"],
            "macro_f1": scores["macro_f1"],
            "n_train": info["n_train"],
            "n_test": scores["n_test"],
            "n_features": info["n_features"],
            "n_input_features": info["n_input_features"],
            "featurization_seconds": float(featurization["featurization_seconds"]),
            "images_per_second": float(rate),
            "training_seconds": round(training_seconds, 3),
        }
        if is_backbone:
            entry.update(
                backbone=featurization.get("backbone", name),
                runtime=featurization.get("runtime", "onnx"),
                input_size=featurization["input_size"],
                weights=featurization["weights"],
                explained_variance_at_k=info["explained_variance_at_k"],
                n_rejected=featurization.get("n_rejected", 0),
                # The one pass this variant shared with others of its backbone and size, and its share.
                **{key: featurization[key] for key in _PASS_FIELDS if key in featurization},
            )
            models[name] = (model, info)
            # The classifier's own PCA (Training fit): its first two components, for every image.
            points = model.stages[0].transform(vectors)  # the projection stage alone
            xy = vector_to_array(F.col("classifier_features"))
            details["projection"][name] = points.select("label", "split", xy[0].alias("x"), xy[1].alias("y")).toPandas()
        else:
            entry.update(
                vocabulary_size=orb_report["vocabulary_size"],
                n_images_without_keypoints=orb_report["n_images_without_keypoints"],
                n_undecodable=orb_report.get("n_undecodable", 0),
            )
            details["projection"][name] = project_2d(vectors)
        details["confusion"][name] = {"labels": scores["labels"], "matrix": scores["matrix"]}
        metrics[name] = entry
        logger.info(
            "Evaluation: %s -> accuracy %.3f, macro F1 %.3f (%d features, %d train / %d test)",
            name,
            entry["accuracy"],
            entry["macro_f1"],
            entry["n_features"],
            entry["n_train"],
            entry["n_test"],
        )

    for frame in backbone_features.values():
        frame.unpersist()
    model, classifier_settings = _classifier_for_predict(settings, models, backbone_report, threshold)
    evaluated = {k: v for k, v in metrics.items() if v["status"] == "evaluated"}
    points = {k: (v["accuracy"], v["images_per_second"]) for k, v in evaluated.items()}
    chosen, why = choose_by_rule(points)
    report = {
        "feature_sets": metrics,
        # Ties in accuracy go to the faster, as in the rule.
        "best_feature_set": max(evaluated, key=lambda k: points[k]) if evaluated else None,
        "frontier": pareto_optimal(points),
        "chosen_by_rule": {"feature_set": chosen, "why": why, "rule": RULE},
        "n_classes": len({label for c in details["confusion"].values() for label in c["labels"]}),
        "classifier": {"type": "pyspark.ml LogisticRegression (multinomial)", **settings["logistic_regression"]},
        "predict_backbone": classifier_settings["backbone"],
    }
    return report, details, model, classifier_settings


def _classifier_for_predict(
    settings: dict[str, Any],
    models: dict[str, tuple[PipelineModel, dict[str, Any]]],
    backbone_report: dict[str, dict[str, Any]],
    threshold: float,
) -> tuple[PipelineModel, dict[str, Any]]:
    """The PipelineModel of the variant ``evaluation.predict_backbone`` (or, if it was skipped,
    of the first evaluated FP32 one: predict and serve run the FP32 model), and the settings to feed it."""
    wanted = settings["predict_backbone"]
    fp32 = [name for name in models if backbone_report[name].get("runtime") != INT8_RUNTIME]
    chosen = wanted if wanted in models else next(iter(fp32), None)
    if chosen is None:
        reasons = {name: r.get("reason", "") for name, r in backbone_report.items()}
        # An empty PipelineModel keeps the catalog entry valid; predict explains the reason.
        return PipelineModel([]), {"backbone": None, "reason": f"no FP32 variant was evaluated: {reasons}"}
    if chosen != wanted:
        logger.warning("evaluation.predict_backbone %r was not evaluated; predict will use %r", wanted, chosen)
    _, info = models[chosen]
    featurization = backbone_report[chosen]
    return models[chosen][0], {
        "backbone": featurization.get("backbone", chosen),
        "variant": chosen,
        "input_size": featurization["input_size"],
        "weights": featurization["weights"],
        "n_components": info["n_features"],
        "variance_threshold": threshold,
        "labels": info["labels"],
        "input_column": VECTOR_COLUMN,
        "output_column": PREDICTED_LABEL_COLUMN,
    }


def results_table(metrics: dict[str, Any]) -> str:
    """The metrics as a Markdown table, for the README: per feature set its runtime, input, feature
    width, the classifier's input width (PCA k; ORB: no PCA), Test accuracy with its 95% interval,
    macro F1, featurization speed, and whether it is on the accuracy/speed frontier; then the
    variant the rule picks, and those the Test photos cannot tell apart from the most accurate."""
    lines = [
        "| Feature set | Runtime | Input | Feature width | PCA k | Test accuracy | 95% interval | Macro F1 "
        "| Images/s | Featurization | Classifier time | Frontier |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    frontier = set(metrics.get("frontier", []))
    for name, entry in metrics["feature_sets"].items():
        if entry["status"] != "evaluated":
            first_line = str(entry.get("reason", "")).splitlines()[0] if entry.get("reason") else ""
            runtime = entry.get("runtime", "-")
            size = f"{entry['input_size']} px" if entry.get("input_size") else "-"
            lines.append(f"| {name} | {runtime} | {size} | skipped | - | - | - | - | - | - | {first_line[:80]} | - |")
            continue
        if entry["kind"] == "cnn":
            runtime, source, k = entry["runtime"], f"{entry['input_size']} px", str(entry["n_features"])
        else:
            missing = entry["n_images_without_keypoints"]
            runtime, k = "OpenCV", "-"
            source = f"ORB words ({missing} photo{'' if missing == 1 else 's'} without keypoints)"
        low, high = entry["accuracy_interval_95"]
        lines.append(
            f"| {name} | {runtime} | {source} | {entry['n_input_features']} | {k} | {entry['accuracy']:.1%} "
            f"| {low:.1%}-{high:.1%} | {entry['macro_f1']:.3f} | {entry['images_per_second']:.0f} "
            f"| {entry['featurization_seconds']:.0f} s | {entry['training_seconds']:.0f} s "
            f"| {'yes' if name in frontier else '-'} |"
        )
    evaluated = {name: e for name, e in metrics["feature_sets"].items() if e["status"] == "evaluated"}
    if evaluated:
        any_entry = next(iter(evaluated.values()))
        lines.append("")
        lines.append(
            f"{any_entry['n_train']} Training / {any_entry['n_test']} Test photos, {metrics['n_classes']} classes; "
            "Spark ML multinomial logistic regression trained on Training, scored on Test; 95% interval: Wilson's. "
            "Images/s: decode + CNN over every photo, timed on the driver in this run (variants of one backbone and "
            "size share one pass: each gets the pass less the other runtimes' share of the tasks' time; ORB: "
            "detection, vocabulary and histograms). Frontier: no other variant is both as accurate and as fast."
        )
        chosen = metrics.get("chosen_by_rule") or {}
        if chosen.get("feature_set"):
            lines.append("")
            lines.append(f"By the rule ({chosen['rule']}): **{chosen['feature_set']}**: {chosen['why']}.")
        best = metrics.get("best_feature_set")
        if best in evaluated:
            best_low = evaluated[best]["accuracy_interval_95"][0]
            close = [n for n, e in evaluated.items() if n != best and e["accuracy_interval_95"][1] >= best_low]
            if close:
                lines.append("")
                lines.append(
                    f"Not told apart from {best} on these Test photos (the intervals overlap): {', '.join(close)}."
                )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------
_MAX_TICK_LABELS = 30  # beyond this many classes, tick labels overlap into a black band


def _panels_per_feature_set(per_set: dict[str, Any], width: float, height: float):
    """A figure with one panel per evaluated feature set, side by side, and the (axes, name)
    pairs to draw; with nothing evaluated, one panel that says so (and no pairs)."""
    import matplotlib.pyplot as plt

    names = list(per_set)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(width * max(1, len(names)), height), squeeze=False)
    if not names:
        axes[0][0].text(0.5, 0.5, "no feature set was evaluated", ha="center", va="center")
        axes[0][0].set_axis_off()
    return fig, list(zip(axes[0], names))


def plot_confusion_matrices(details: dict[str, Any], metrics: dict[str, Any]):
    """One row-normalised confusion matrix per evaluated feature set, side by side."""
    confusion = details["confusion"]
    fig, panels = _panels_per_feature_set(confusion, width=6.5, height=6.2)
    for ax, name in panels:
        labels, matrix = confusion[name]["labels"], np.asarray(confusion[name]["matrix"], dtype=float)
        rows = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        if len(labels) <= _MAX_TICK_LABELS:
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel(f"predicted class ({len(labels)})")
        ax.set_ylabel("true class")
        entry = metrics["feature_sets"][name]
        ax.set_title(f"{name}: accuracy {entry['accuracy']:.1%}, macro F1 {entry['macro_f1']:.2f}")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.suptitle("Test-split confusion matrices (logistic regression)")
    fig.tight_layout()
    return fig


def plot_feature_set_comparison(metrics: dict[str, Any]):
    """Accuracy and macro F1 per feature set; skipped ones are shown with their status."""
    import matplotlib.pyplot as plt

    sets = metrics["feature_sets"]
    names = list(sets)
    x = np.arange(len(names))
    accuracy = [sets[n].get("accuracy", 0.0) if sets[n]["status"] == "evaluated" else 0.0 for n in names]
    macro_f1 = [sets[n].get("macro_f1", 0.0) if sets[n]["status"] == "evaluated" else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(names)), 4.5))
    ax.bar(x - 0.2, accuracy, width=0.4, label="accuracy", color="#2e86c1")
    ax.bar(x + 0.2, macro_f1, width=0.4, label="macro F1", color="#f39c12")
    for i, name in enumerate(names):
        entry = sets[name]
        if entry["status"] == "evaluated":
            text = f"{entry['n_features']} feat.\n{entry['images_per_second']:.0f} img/s"
            ax.text(i, max(accuracy[i], macro_f1[i]) + 0.02, text, ha="center", va="bottom", fontsize=8)
        else:
            ax.text(i, 0.05, "skipped\n(reason in\nthe report)", ha="center", va="bottom", fontsize=8, color="#c0392b")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("Test split score")
    ax.set_title(
        "Feature sets, logistic regression on Test\n(above bars: classifier features, featurization speed)", fontsize=10
    )
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_frontier(metrics: dict[str, Any]):
    """Test accuracy (its 95% interval as an error bar) against featurization images/s, one
    point per evaluated feature set: the frontier's points filled and joined, the rule's pick starred."""
    import matplotlib.pyplot as plt

    sets = {name: e for name, e in metrics["feature_sets"].items() if e["status"] == "evaluated"}
    frontier = [name for name in metrics.get("frontier", []) if name in sets]
    chosen = (metrics.get("chosen_by_rule") or {}).get("feature_set")
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    if not sets:
        ax.text(0.5, 0.5, "no feature set was evaluated", ha="center", va="center")
        ax.set_axis_off()
        return fig
    for name, entry in sets.items():
        x, y = entry["images_per_second"], entry["accuracy"]
        low, high = entry["accuracy_interval_95"]
        on_frontier = name in frontier
        colour = "#2e86c1" if on_frontier else "#7f8c8d"
        ax.errorbar(
            x,
            y,
            yerr=[[y - low], [high - y]],
            fmt="o",
            color=colour,
            markerfacecolor=colour if on_frontier else "white",
            capsize=3,
            markersize=7,
        )
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(7, 5), fontsize=8)
    if frontier:
        ordered = sorted(frontier, key=lambda name: sets[name]["images_per_second"])
        ax.plot(
            [sets[n]["images_per_second"] for n in ordered],
            [sets[n]["accuracy"] for n in ordered],
            "--",
            color="#2e86c1",
            linewidth=1,
            label="frontier (no other is as accurate and as fast)",
        )
    if chosen in sets:
        ax.plot(
            sets[chosen]["images_per_second"],
            sets[chosen]["accuracy"],
            "*",
            color="#e67e22",
            markersize=16,
            label=f"the rule's pick: {chosen}",
        )
    speeds = [e["images_per_second"] for e in sets.values() if e["images_per_second"] > 0]
    if speeds and max(speeds) / min(speeds) > 5:  # ORB beside the CNNs: a log scale keeps both readable
        ax.set_xscale("log")
    n_test = next(iter(sets.values()))["n_test"]
    ax.margins(x=0.2)  # room for the names right of the points
    ax.set_xlabel("featurization images/s (this run)")
    ax.set_ylabel(f"Test accuracy ({n_test} photos; bars: 95% interval)")
    ax.set_title("Accuracy against speed, logistic regression on each feature set", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_feature_projections(details: dict[str, Any]):
    """Every image in the plane of its feature set's first two principal components."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    projection = details["projection"]
    fig, panels = _panels_per_feature_set(projection, width=6.0, height=5.5)
    for ax, name in panels:
        points: pd.DataFrame = projection[name]
        labels = sorted(points["label"].unique())
        colour_of = {label: i for i, label in enumerate(labels)}
        colours = plt.get_cmap("gist_ncar" if len(labels) > 20 else "tab20")
        handles = []
        for split, marker in ((TRAIN_SPLIT, "o"), (TEST_SPLIT, "x")):
            part = points[points["split"] == split]
            ax.scatter(
                part["x"],
                part["y"],
                s=12,
                marker=marker,
                linewidths=0.8,
                c=[colours(colour_of[label] / max(1, len(labels) - 1)) for label in part["label"]],
            )
            # Grey legend markers: the colours are the classes, the marker is the split.
            handles.append(Line2D([], [], color="grey", marker=marker, linestyle="", label=f"{split} ({len(part)})"))
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.set_title(f"{name}: {len(points)} images, {len(labels)} classes (colour = class)")
        ax.legend(handles=handles, loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def export_classifier(classifier_model: PipelineModel, classifier_settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """The saved classifier as arrays with its backbone as ONNX, for predict and serve (no JVM).
    Nothing to export when every backbone was skipped: the settings say why."""
    if not classifier_settings.get("backbone"):
        return {}
    backbone = get_backbone(classifier_settings["backbone"])
    onnx_model = inference_payload(backbone, classifier_settings["input_size"], classifier_settings["weights"], "onnx")
    return export_arrays(classifier_model, onnx_model)
