import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fruits_kedro.datasets import SparkParquetFsspecDataset
from fruits_kedro.datasets.arrow_source import map_in_arrow
from fruits_kedro.datasets.spark_parquet import row_count
from fruits_kedro.feature_settings import SETTINGS_COLUMN
from fruits_kedro.imaging.decode import ImageDecoder
from fruits_kedro.inference.featurize import RejectedImages, featurize_images
from tests.extras import requires_torch
from tests.inference.raw_images import FEATURE_EXTRACTION, PREPROCESSING, RAW_SCHEMA, png, random_images, raw_images


@pytest.mark.parametrize(
    ("backbone", "size", "dim"),
    # VGG16 at 100x100: 3x3x512, as in the study; EfficientNet-Lite0 through its PyTorch export.
    [
        ("mobilenet_v2", 64, 1280),
        ("vgg16", 100, 4608),
        pytest.param("efficientnet_lite0", 64, 1280, marks=requires_torch),
    ],
)
def test_featurize_images_gives_one_vector_per_image(spark, tmp_path, backbone, size, dim):
    images = random_images(spark, tmp_path, n=5, size=size)
    backbone_params = {"name": backbone, "input_size": size, "weights": None}
    features, rejected = featurize_images(
        images, backbone_params, PREPROCESSING, {**FEATURE_EXTRACTION, "batch_size": 2}
    )
    rows = features.collect()
    assert len(rows) == 5
    assert {len(r.features) for r in rows} == {dim}
    assert rejected.reasons == {}
    matrix = np.array([r.features for r in rows])
    assert np.all(np.isfinite(matrix))
    # Different images give different features (the batches were not mixed up or repeated).
    # Random weights shrink activations by orders of magnitude: compare relative to the largest.
    scaled = matrix / np.abs(matrix).max()
    assert len({tuple(np.round(v, 4)) for v in scaled}) == 5


def test_the_default_batch_size_gives_the_same_features_as_a_large_one(spark, tmp_path):
    """``batch_size: null`` (the default) infers a few images per call on the CPU: each image's
    features are those a batch of 64 gives."""
    assert FEATURE_EXTRACTION["batch_size"] is None
    images = random_images(spark, tmp_path, n=7, size=64)
    backbone_params = {"name": "mobilenet_v2", "input_size": 64, "weights": None}
    by_default, _ = featurize_images(images, backbone_params, PREPROCESSING, FEATURE_EXTRACTION)
    by_64, _ = featurize_images(images, backbone_params, PREPROCESSING, {**FEATURE_EXTRACTION, "batch_size": 64})
    expected = {row.path: row.features for row in by_64.collect()}
    got = {row.path: row.features for row in by_default.collect()}
    assert len(got) == 7 and got.keys() == expected.keys()
    for path, features in got.items():
        np.testing.assert_array_equal(features, expected[path])


def test_a_null_batch_size_is_the_devices_own():
    from fruits_kedro.inference.onnx_export import inference_payload
    from fruits_kedro.inference.registry import get_backbone
    from fruits_kedro.inference.runtime import CPU_BATCH_SIZE, GPU_BATCH_SIZE, inference_batch_size, onnx_features

    infer = onnx_features(inference_payload(get_backbone("mobilenet_v2"), 32, None, "onnx"), 1, "cpu")
    assert infer.on_gpu is False
    assert inference_batch_size(infer, None) == CPU_BATCH_SIZE == 2
    assert inference_batch_size(infer, 16) == 16

    def on_a_gpu(pixels):
        return pixels

    on_a_gpu.on_gpu = True  # what onnx_features marks when its session's first provider is a GPU's
    assert inference_batch_size(on_a_gpu, None) == GPU_BATCH_SIZE == 64


def test_saving_features_runs_network_and_parquet_writer_in_one_python_function(spark, tmp_path):
    """The features go from the network to the Parquet writer inside one Python worker per
    task (never JVM rows in between, one model per task's worker), and are saved as computed."""
    images = random_images(spark, tmp_path / "photos", n=6, size=64)
    backbone_params = {"name": "mobilenet_v2", "input_size": 64, "weights": None}
    features, rejected = featurize_images(
        images, backbone_params, PREPROCESSING, {**FEATURE_EXTRACTION, "batch_size": 2}
    )

    def passthrough(batches):  # stands for the dataset's writer, which map_in_arrow composes alike
        yield from batches

    plan = map_in_arrow(features, passthrough, features.schema)._jdf.queryExecution().executedPlan().toString()
    assert plan.count("MapInArrow") == 1, plan
    assert features.rdd.getNumPartitions() == images.rdd.getNumPartitions()  # the waves are kept

    target = tmp_path / "features.parquet"
    SparkParquetFsspecDataset(filepath=str(target)).save(features)
    saved = SparkParquetFsspecDataset(filepath=str(target)).load()
    assert row_count(saved) == 6
    assert rejected.reasons == {}
    expected = {row.path: (row.features, row[SETTINGS_COLUMN]) for row in features.collect()}
    assert {row.path for row in saved.collect()} == set(expected)
    for row in saved.collect():
        np.testing.assert_allclose(row.features, expected[row.path][0], rtol=1e-6)
        assert row[SETTINGS_COLUMN] == expected[row.path][1]


@pytest.mark.parametrize("runtime", ["keras", "onnx"])
def test_featurize_images_matches_the_keras_model_on_the_driver(spark, tmp_path, runtime):
    """The Spark path (read and decode in the task, broadcast model, batching) equals plain Keras."""
    from fruits_kedro.inference.registry import get_backbone
    from fruits_kedro.inference.weights import load_weights

    size = 64
    images = random_images(spark, tmp_path, n=3, size=size)
    params = {"name": "mobilenet_v2", "input_size": size, "weights": None}
    features, _ = featurize_images(
        images, params, PREPROCESSING, {**FEATURE_EXTRACTION, "batch_size": 2, "runtime": runtime}
    )
    by_path = {r.path: np.array(r.features) for r in features.collect()}
    backbone = get_backbone("mobilenet_v2")
    model = backbone.build(size, None)
    model.set_weights(load_weights(backbone, size, None))
    rows = images.orderBy("path").collect()
    pixels = ImageDecoder(size).decode_batch([r.path for r in rows], [open(r.path, "rb").read() for r in rows])
    expected = model.predict(backbone.preprocess(pixels), verbose=0)
    got = np.stack([by_path[p] for p in sorted(by_path)])
    scale = np.abs(expected).max()
    assert scale > 0  # a real comparison, not of two zero matrices
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


def test_bad_files_get_a_reason_and_cost_no_valid_image_its_features(spark, tmp_path):
    # Several Arrow batches, so that reading ahead (batch k+1 while k is inferred) is exercised.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "3")
    try:
        rng = np.random.default_rng(1)
        files = {f"A/{i}.png": png(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for i in range(7)}
        files |= {"A/truncated.png": files["A/3.png"][:100], "A/notes.jpg": b"shopping list", "A/empty.jpg": b""}
        images = raw_images(spark, tmp_path, files)
        vanished = tmp_path / "A/vanished.jpg"  # listed, then deleted before the run read it
        images = images.unionByName(
            spark.createDataFrame([(str(vanished), "A/vanished.jpg", "A", "T", 1, "0")], RAW_SCHEMA)
        )
        featurized, rejected = featurize_images(
            images.repartition(1),
            {"name": "mobilenet_v2", "input_size": 32, "weights": None},
            PREPROCESSING,
            {**FEATURE_EXTRACTION, "batch_size": 2},
        )
        rows = {r.relative_path: r for r in featurized.collect()}
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    valid = {f"A/{i}.png" for i in range(7)}
    assert set(rows) == valid and all(r.features is not None for r in rows.values())
    reasons = {str(Path(p).relative_to(tmp_path)): reason for p, reason in rejected.reasons.items()}
    assert set(reasons) == {"A/truncated.png", "A/notes.jpg", "A/empty.jpg", "A/vanished.jpg"}
    assert (
        reasons["A/empty.jpg"] == "empty file"
        and reasons["A/vanished.jpg"] == "file is gone: listed, then removed before it was read"
    )
    assert reasons["A/notes.jpg"].startswith("not a decodable image")
    assert reasons["A/truncated.png"].startswith("not a decodable image")
    # Each rejected file is listed once with its folder's label, whatever its batch was.
    table = rejected.to_frame(images).orderBy("path").collect()
    assert [(Path(r.path).name, r.label, r.reason) for r in table] == sorted(
        (Path(p).name, "A", reason) for p, reason in rejected.reasons.items()
    )
    # Each valid image kept its own features: the same as when featurized alone.
    alone = (
        featurize_images(
            raw_images(spark, tmp_path / "alone", {"A/5.png": files["A/5.png"]}),
            {"name": "mobilenet_v2", "input_size": 32, "weights": None},
            PREPROCESSING,
            FEATURE_EXTRACTION,
        )[0]
        .collect()[0]
        .features
    )
    np.testing.assert_allclose(rows["A/5.png"].features, alone, rtol=1e-5, atol=1e-12)


def _real_photos(spark, photos_root, n: int):
    paths = sorted(photos_root.glob("Test/*/*.jpg"))[::10][:n]
    rows = [(str(p), p.name, p.parent.name, "Test", p.stat().st_size, None) for p in paths]
    return spark.createDataFrame(rows, RAW_SCHEMA)


@pytest.mark.real_photos
def test_onnx_runtime_matches_keras_on_real_photos(spark, shared_photos, imagenet_keras_home):
    images = _real_photos(spark, shared_photos, n=24)
    backbone = {"name": "mobilenet_v2", "input_size": 100, "weights": "imagenet"}
    by_runtime = {}
    for runtime in ("keras", "onnx"):
        features, _ = featurize_images(
            images, backbone, PREPROCESSING, {**FEATURE_EXTRACTION, "batch_size": 8, "runtime": runtime}
        )
        by_runtime[runtime] = np.array([r.features for r in features.orderBy("path").collect()])
    keras_features, onnx_features = by_runtime["keras"], by_runtime["onnx"]
    assert keras_features.shape == (24, 1280) and np.abs(keras_features).max() > 0.1
    relative = np.abs(onnx_features - keras_features).max() / np.abs(keras_features).max()
    assert relative <= 1e-4


def test_inference_and_parquet_tasks_do_not_import_pandas():
    """A Python worker imports the modules of the functions its tasks run, as it starts,
    while the first tasks wait: pandas alone would add ~0.5 s to each."""
    code = (
        "import sys, fruits_kedro.inference.featurize, fruits_kedro.inference.runtime, "
        "fruits_kedro.imaging.decode, fruits_kedro.datasets.files, fruits_kedro.datasets.spark_parquet; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas')[:3])"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_auto_infers_on_the_gpu_only_where_onnx_runtime_offers_one_and_cuda_insists():
    import onnxruntime as ort

    from fruits_kedro.inference.runtime import ProviderUnavailableError, execution_providers

    available = ort.get_available_providers()
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        assert execution_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        assert execution_providers("cuda")[0] == "CUDAExecutionProvider"
    else:
        assert execution_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(ProviderUnavailableError, match="execution_provider = 'cuda'.*onnxruntime-gpu"):
            execution_providers("cuda")


def test_rejected_images_have_the_same_columns_whether_there_are_any_or_not(spark):
    images = spark.createDataFrame(
        [("/a.jpg", "A", "Training"), ("/b.jpg", "B", None)], "path string, label string, split string"
    )
    none, some = RejectedImages(spark.sparkContext), RejectedImages(spark.sparkContext)
    some.accumulator.add({"/b.jpg": "empty file"})  # as an inference task does
    assert none.to_frame(images).schema == some.to_frame(images).schema
    assert none.to_frame(images).collect() == []
    assert [tuple(row) for row in some.to_frame(images).collect()] == [("/b.jpg", "B", None, "empty file")]


def test_several_runtimes_share_one_pass_and_each_gives_its_own_features(spark, tmp_path):
    """FP32 and INT8 in one pass: the same rows as each runtime alone, one decode per photo,
    and the tasks' seconds split between decoding and each session."""
    from fruits_kedro.inference.featurize import TaskSeconds, featurize_with_runtimes

    images = random_images(spark, tmp_path, n=6, size=64)
    backbone = {"name": "mobilenet_v2", "input_size": 64, "weights": None}
    settings = {**FEATURE_EXTRACTION, "batch_size": 2, "int8_calibration_photos": 4}
    both, rejected, seconds = featurize_with_runtimes(
        images, backbone, PREPROCESSING, settings, {"onnx": "fp32", "onnx_int8": "int8"}
    )
    rows = {r.path: r for r in both.collect()}
    alone = {
        runtime: {
            r.path: np.array(r.features)
            for r in featurize_images(images, backbone, PREPROCESSING, {**settings, "runtime": runtime})[0].collect()
        }
        for runtime in ("onnx", "onnx_int8")
    }
    assert sorted(rows) == sorted(alone["onnx"]) and rejected.reasons == {}
    for path, row in rows.items():
        np.testing.assert_allclose(row.fp32, alone["onnx"][path], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row.int8, alone["onnx_int8"][path], rtol=1e-5, atol=1e-6)
    differences = [np.abs(np.array(r.fp32) - np.array(r.int8)).max() / np.abs(r.fp32).max() for r in rows.values()]
    assert max(differences) > 1e-3  # two models ran
    spent = seconds.seconds
    assert set(spent) == {TaskSeconds.DECODE, "onnx", "onnx_int8"} and all(v > 0 for v in spent.values())
    # A runtime's share: the pass less the other session's time, in proportion.
    total = sum(spent.values())
    assert seconds.wall_seconds_alone("onnx", 10.0) == pytest.approx(10.0 * (total - spent["onnx_int8"]) / total)
