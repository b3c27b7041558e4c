"""``fruits-kedro predict``: the classifier the evaluation pipeline exported, applied to photos
of any size without a JVM; one line per photo on stdout, errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fruits_kedro.ml.exported_classifier import ExportedClassifier
from fruits_kedro.predict import ClassifierUnavailableError, load_classifier, main
from tests.conftest import make_project_copy

SCRIPT = Path(sys.executable).parent / "fruits-kedro"


def _resized_copy(photo, size: tuple[int, int], folder) -> str:
    """The same photo at another size and format, as a user's camera would give it."""
    target = folder / f"{photo.stem}_{size[0]}x{size[1]}.png"
    Image.open(photo).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target)
    return str(target)


def test_predict_prints_one_line_per_photo_and_an_error_line_for_a_bad_one(
    generated_evaluation, generated_sample, tmp_path
):
    photo = sorted((generated_sample / "Test" / "Banana").glob("*.jpg"))[0]
    odd_size = _resized_copy(photo, (240, 170), tmp_path)
    done = subprocess.run(
        [str(SCRIPT), "predict", odd_size, str(tmp_path / "missing.jpg"), str(photo)],
        cwd=generated_evaluation,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1  # one photo failed
    lines = done.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [odd_size, str(photo)]  # results only on stdout
    labels = json.loads((generated_evaluation / "data/06_models/classifier_settings.json").read_text())["labels"]
    for line in lines:
        top = [field.rsplit(" ", 1) for field in line.split("\t")[1:]]
        probabilities = [float(p.rstrip("%")) / 100 for _, p in top]
        assert len(top) == 3 and all(label in labels for label, _ in top)
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.001
    assert done.stderr.strip().splitlines()[-1] == f"{tmp_path / 'missing.jpg'}\terror: No such file or directory"


def test_the_exported_classifier_gives_the_spark_models_probabilities(generated_evaluation, generated_sample):
    """The arrays (centring, axes, logistic regression) are the saved PipelineModel, minus the JVM."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.linalg import Vectors

    from fruits_kedro.inference.runtime import onnx_features

    models = generated_evaluation / "data/06_models"
    settings = json.loads((models / "classifier_settings.json").read_text())
    with np.load(models / "classifier_export.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    classifier = ExportedClassifier(arrays, settings)
    photos = sorted((generated_sample / "Test").glob("*/*.jpg"))[:12]
    pixels = np.stack([classifier.decode(p.read_bytes()) for p in photos])
    features = onnx_features(arrays["onnx_model"].tobytes(), 1)(pixels)
    from fruits_kedro.spark import get_spark

    spark = get_spark()
    frame = spark.createDataFrame(
        [(i, Vectors.dense(v.astype(float))) for i, v in enumerate(features)], ["row", "vector"]
    )
    model = PipelineModel.load(str(models / "classifier_pipeline_model"))
    spark_probabilities = np.array([r.probability.toArray() for r in model.transform(frame).orderBy("row").collect()])
    np.testing.assert_allclose(classifier.probabilities(pixels), spark_probabilities, atol=1e-6)


def test_predict_explains_a_missing_classifier(tmp_path, capsys):
    project = make_project_copy(tmp_path / "untrained")
    assert main(["--project-path", str(project), str(project / "photo.jpg")]) == 1
    assert "kedro run --pipelines evaluation" in capsys.readouterr().err


def test_a_classifier_trained_without_backbone_says_why():
    with pytest.raises(ClassifierUnavailableError, match="every backbone was skipped"):
        ExportedClassifier({}, {"backbone": None, "reason": "every backbone was skipped: {}"})


def test_an_undecodable_photo_is_an_error_of_that_photo(generated_evaluation, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    assert main(["--project-path", str(generated_evaluation), str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"{broken}\terror: not a decodable image")


@pytest.mark.real_photos
def test_predict_labels_most_real_test_photos_right(real_evaluation, shared_photos, tmp_path):
    classifier = load_classifier(real_evaluation)
    photos = sorted((shared_photos / "Test").glob("*/*.jpg"))
    truth = [p.parent.name.replace(" ", "_") for p in photos]
    predictions = [classifier.predict([p.read_bytes()], top=3)[0] for p in photos]
    accuracy = float(np.mean([p.label == t for p, t in zip(predictions, truth)]))
    print(f"predict: {accuracy:.3f} of {len(photos)} Test photos right")
    assert accuracy >= 0.80
    assert all(len(p.top) == 3 and p.top[0][1] >= p.top[1][1] >= p.top[2][1] for p in predictions)
    # A photo that is not 100x100 (here 250x250 PNG) still gets its label.
    right = next(i for i, (p, t) in enumerate(zip(predictions, truth)) if p.label == t)
    odd = Path(_resized_copy(photos[right], (250, 250), tmp_path)).read_bytes()
    assert classifier.predict([odd])[0].label == truth[right]
