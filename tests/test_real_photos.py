"""The default pipeline on real Fruits-360 photos with real ImageNet weights.

Runs only where ../shared/fruits360-sample and the shared Keras cache are beside the
checkout (CI and the team's machines); a user's fresh machine skips it.
"""

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_project_copy, run_kedro
from tests.outputs import current_output

pytestmark = pytest.mark.real_photos


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, shared_photos, imagenet_keras_home):
    project = make_project_copy(tmp_path_factory.mktemp("real_project"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        # ImageNet weights (the default). 112 px instead of the default 224 quarters the CNN time
        # and still reuses the shared 224 weights file (96/128/160/192 would each need their own).
        run_kedro(project, monkeypatch, images_root=str(shared_photos), backbone={"input_size": 112})
    table = pd.read_csv(current_output(project, "04_feature/image_features_pca.csv"))
    report = json.loads(current_output(project, "08_reporting/pca_explained_variance.json").read_text())
    return table, report


def test_every_photo_gets_mobilenet_features(real_run, shared_photos):
    table, report = real_run
    assert len(table) == len(list(shared_photos.rglob("*.jpg"))) == 1545
    assert report["n_input_features"] == 1280
    assert table["label"].nunique() == 103
    assert "Apple_Braeburn" in set(table["label"])


def test_imagenet_features_are_not_degenerate(real_run):
    _, report = real_run
    assert report["k"] > 10
    assert report["cumulative"][report["k"] - 1] >= 0.95


def test_nearest_centroid_on_pca_features_classifies_test_photos(real_run):
    table, _ = real_run
    pcs = [c for c in table.columns if c.startswith("pc_")]
    train, test = table[table["split"] == "Training"], table[table["split"] == "Test"]
    centroids = train.groupby("label")[pcs].mean()
    distances = ((test[pcs].to_numpy()[:, None, :] - centroids.to_numpy()[None, :, :]) ** 2).sum(axis=2)
    predicted = centroids.index.to_numpy()[distances.argmin(axis=1)]
    accuracy = float(np.mean(predicted == test["label"].to_numpy()))
    print(f"nearest-centroid accuracy on {len(test)} test photos: {accuracy:.3f} (chance ~{1 / len(centroids):.3f})")
    assert accuracy >= 0.80
