"""``python -m fruits_kedro.predict``: the classifier saved by the evaluation pipeline, applied
to photos of any size."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fruits_kedro.predict import ClassifierUnavailableError, PhotoClassifier, load_classifier, main


def _resized_copy(photo, size: tuple[int, int], folder) -> str:
    """The same photo at another size and format, as a user's camera would give it."""
    target = folder / f"{photo.stem}_{size[0]}x{size[1]}.png"
    Image.open(photo).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target)
    return str(target)


def test_predict_prints_top3_labels_for_a_photo_of_another_size(
    generated_evaluation, generated_sample, tmp_path, capsys, monkeypatch
):
    photo = sorted((generated_sample / "Test" / "Banana").glob("*.jpg"))[0]
    odd_size = _resized_copy(photo, (240, 170), tmp_path)
    monkeypatch.chdir(generated_evaluation)
    assert main([odd_size, "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index(odd_size)  # Kedro's own log lines may come first
    lines = out[start : start + 4]
    probabilities = [float(line.rsplit(maxsplit=1)[1].rstrip("%")) / 100 for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    labels = json.loads((generated_evaluation / "data/06_models/classifier_settings.json").read_text())["labels"]
    assert all(line.split()[1] in labels for line in lines[1:])


def test_predict_explains_a_missing_classifier(tmp_path, capsys):
    from tests.conftest import make_project_copy

    project = make_project_copy(tmp_path / "untrained")
    assert main(["--project-path", str(project), str(project / "photo.jpg")]) == 1
    assert "kedro run --pipeline evaluation" in capsys.readouterr().err


def test_a_classifier_trained_without_backbone_says_why():
    with pytest.raises(ClassifierUnavailableError, match="every backbone was skipped"):
        PhotoClassifier(model=None, settings={"backbone": None, "reason": "every backbone was skipped: {}"})


def test_an_undecodable_photo_is_named(generated_evaluation, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    classifier = load_classifier(generated_evaluation)
    with pytest.raises(ValueError, match="broken.jpg"):
        classifier.predict([broken])


@pytest.mark.real_photos
def test_predict_labels_most_real_test_photos_right(real_evaluation, shared_photos, tmp_path):
    classifier = load_classifier(real_evaluation)
    photos = sorted((shared_photos / "Test").glob("*/*.jpg"))
    truth = [p.parent.name.replace(" ", "_") for p in photos]
    predictions = classifier.predict(photos, top=3)
    accuracy = float(np.mean([p.label == t for p, t in zip(predictions, truth)]))
    print(f"predict: {accuracy:.3f} of {len(photos)} Test photos right")
    assert accuracy >= 0.80
    assert all(len(p.top) == 3 and p.top[0][1] >= p.top[1][1] >= p.top[2][1] for p in predictions)
    # A photo that is not 100x100 (here 250x250 PNG) still gets its label.
    right = next(i for i, (p, t) in enumerate(zip(predictions, truth)) if p.label == t)
    odd = _resized_copy(photos[right], (250, 250), tmp_path)
    assert classifier.predict([odd])[0].label == truth[right]


def test_the_fruits_kedro_script_has_a_predict_command(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import make_project_copy

    project = make_project_copy(tmp_path / "untrained")
    script = Path(sys.executable).parent / "fruits-kedro"
    result = subprocess.run(
        [str(script), "predict", "--project-path", str(project), str(project / "photo.jpg")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "kedro run --pipeline evaluation" in result.stderr
