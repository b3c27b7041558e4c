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

from fruits_kedro.imaging.decode import TRUNCATED
from fruits_kedro.ml.exported_classifier import ExportedClassifier
from fruits_kedro.predict import ClassifierUnavailableError, load_classifier, main
from tests.conftest import make_project_copy
from tests.imaging.crafted import incomplete_jpegs
from tests.outputs import current_model

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
    labels = json.loads(current_model(generated_evaluation, "classifier_settings.json").read_text())["labels"]
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

    settings = json.loads(current_model(generated_evaluation, "classifier_settings.json").read_text())
    with np.load(current_model(generated_evaluation, "classifier_export.npz")) as npz:
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
    model = PipelineModel.load(str(current_model(generated_evaluation, "classifier_pipeline_model")))
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


def test_a_jpeg_with_less_data_than_its_header_says_is_an_error_line(
    generated_evaluation, generated_sample, tmp_path, capsys
):
    photos = []
    for name, data in incomplete_jpegs(sorted(generated_sample.rglob("*.jpg"))[0]).items():
        photos.append(tmp_path / name)
        photos[-1].write_bytes(data)
    assert main(["--project-path", str(generated_evaluation), *map(str, photos)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"{photo}\terror: {TRUNCATED}" for photo in photos]


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


def _classifier_part(project, name: str, run_id: str):
    """``name`` as a run ``run_id`` saves it (held: committed by the hooks at the run's end)."""
    from kedro.io.core import Version

    from fruits_kedro.datasets.output_set import OutputSetDataset
    from fruits_kedro.predict import classifier_datasets

    current = classifier_datasets(project)[name]  # its configuration: the output's name, not the current file
    dataset = OutputSetDataset(
        dataset={**current._config, "filepath": current._filepath},
        path=current._describe()["path"],
        version=Version(None, run_id),
    )
    dataset.hold()
    return dataset


def _save_classifier(project, run_id: str, labels: list[str], commit: bool = True) -> None:
    export = _classifier_part(project, "classifier_export", run_id)
    settings = _classifier_part(project, "classifier_settings", run_id)
    export.save({"labels": np.array(labels)})
    settings.save({"labels": labels})
    if commit:  # as OutputSetHooks do when the run succeeds: one write of current_outputs.json
        export.output_set.commit(
            run_id,
            {export.member: f"runs/{run_id}/{export.member}", settings.member: f"runs/{run_id}/{settings.member}"},
        )


def _labels(datasets) -> tuple[list[str], list[str]]:
    return [str(x) for x in datasets["classifier_export"].load()["labels"]], datasets["classifier_settings"].load()[
        "labels"
    ]


def test_predict_and_serve_read_only_a_whole_classifier_from_one_run(tmp_path):
    """The evaluation's export and settings become current together, when its run succeeds: a
    reader starting meanwhile gets the previous classifier, whole, never half of a new one."""
    from fruits_kedro.predict import classifier_datasets

    project = make_project_copy(tmp_path / "project")
    _save_classifier(project, "run-1", ["apple", "kiwi"])
    assert _labels(classifier_datasets(project)) == (["apple", "kiwi"], ["apple", "kiwi"])

    _save_classifier(project, "run-2", ["banana", "lime", "pear"], commit=False)  # the run is still going
    assert (project / "data/06_models/runs/run-2/classifier_export.npz").is_file()
    reader = classifier_datasets(project)  # e.g. serve starting now
    assert _labels(reader) == (["apple", "kiwi"], ["apple", "kiwi"])

    export = _classifier_part(project, "classifier_export", "run-2")
    export.output_set.commit(
        "run-2", {m: f"runs/run-2/{m}" for m in ("classifier_export.npz", "classifier_settings.json")}
    )
    assert _labels(reader) == (["apple", "kiwi"], ["apple", "kiwi"])  # pinned to the commit it started from
    assert _labels(classifier_datasets(project)) == (["banana", "lime", "pear"], ["banana", "lime", "pear"])
