"""Tests for the synthetic Fruits-360-like sample generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools import sample
from tools.sample import CLASSES, MARKER_NAME, SPLITS, generate_sample, main

# Small counts keep the tests that don't need the full sample fast.
SMALL = {"train_per_class": 2, "test_per_class": 1}
SMALL_TOTAL = len(CLASSES) * 3
COUNTS = {"Training": sample.TRAIN_PER_CLASS, "Test": sample.TEST_PER_CLASS}


@pytest.fixture(scope="module")
def default_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """One full default sample, shared because generating it is the slow part."""
    root = tmp_path_factory.mktemp("default") / "fruits"
    return root, generate_sample(root)


def _relative_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_classes_look_like_fruits_360_names() -> None:
    assert len(CLASSES) >= 10
    assert len(set(CLASSES)) == len(CLASSES)
    assert any(" " in name for name in CLASSES)


def test_layout_and_counts(default_sample: tuple[Path, int]) -> None:
    root, written = default_sample
    assert written == len(CLASSES) * (sample.TRAIN_PER_CLASS + sample.TEST_PER_CLASS) == 180
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SPLITS)
    for split in SPLITS:
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(CLASSES)
        for class_name in CLASSES:
            names = sorted(p.name for p in (root / split / class_name).iterdir())
            assert names == sorted(f"{n}_100.jpg" for n in range(COUNTS[split]))
    assert (root / MARKER_NAME).read_text(encoding="utf-8").strip() == sample.SAMPLE_VERSION
    # The staging directory was renamed into place, not left beside it.
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_every_image_is_a_100px_rgb_jpeg_on_white(default_sample: tuple[Path, int]) -> None:
    root, _ = default_sample
    paths = sorted(root.rglob("*.jpg"))
    assert len(paths) == 180
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (100, 100)
            pixels = np.asarray(image)
        corners = [pixels[:6, :6], pixels[:6, -6:], pixels[-6:, :6], pixels[-6:, -6:]]
        assert all(corner.min() >= 245 for corner in corners), path
        # Something fruit-coloured fills a good part of the middle.
        assert (pixels.min(axis=2) < 200).mean() > 0.08, path


def test_views_of_a_class_differ(default_sample: tuple[Path, int]) -> None:
    root, _ = default_sample
    for class_name in CLASSES:
        views = [p.read_bytes() for p in (root / "Training" / class_name).glob("*.jpg")]
        assert len(set(views)) == len(views), class_name


def test_second_call_is_a_no_op(default_sample: tuple[Path, int]) -> None:
    root, _ = default_sample
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_sample(root) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_generation_is_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert generate_sample(first, **SMALL) == SMALL_TOTAL
    assert generate_sample(second, **SMALL) == SMALL_TOTAL
    assert _relative_files(first) == _relative_files(second)


def test_overwrite_regenerates_in_place(tmp_path: Path) -> None:
    root = tmp_path / "fruits"
    generate_sample(root, **SMALL)
    assert generate_sample(root, train_per_class=1, test_per_class=1, overwrite=True) == len(CLASSES) * 2
    assert len(list(root.rglob("*.jpg"))) == len(CLASSES) * 2
    assert [p.name for p in tmp_path.iterdir()] == ["fruits"]


def test_outdated_sample_is_regenerated(tmp_path: Path) -> None:
    root = tmp_path / "fruits"
    generate_sample(root, **SMALL)
    (root / MARKER_NAME).write_text("fruits_kedro.sample v0\n", encoding="utf-8")
    assert generate_sample(root, **SMALL) == SMALL_TOTAL
    assert (root / MARKER_NAME).read_text(encoding="utf-8").strip() == sample.SAMPLE_VERSION


def test_existing_empty_folder_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "fruits"
    root.mkdir()
    (root / ".gitkeep").touch()
    assert generate_sample(root, **SMALL) == SMALL_TOTAL


def test_refuses_to_replace_other_data(tmp_path: Path) -> None:
    root = tmp_path / "fruits"
    real_image = root / "Training" / "Apple Red" / "0_100.jpg"
    real_image.parent.mkdir(parents=True)
    real_image.write_bytes(b"a real photo")
    with pytest.raises(FileExistsError):
        generate_sample(root, **SMALL)
    assert real_image.read_bytes() == b"a real photo"


def test_interrupted_run_leaves_no_partial_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "fruits"
    real_render = sample._render
    calls = 0

    def render_then_fail(*args: object) -> Image.Image:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise KeyboardInterrupt
        return real_render(*args)

    monkeypatch.setattr(sample, "_render", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        generate_sample(root, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_rejects_empty_splits(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_sample(tmp_path / "fruits", train_per_class=0)


def test_main_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fruits"
    args = [str(root), "--train-per-class", "2", "--test-per-class", "1"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"Wrote {SMALL_TOTAL} images ({len(CLASSES)} classes) to {root}"
    assert main(args) == 0
    assert "already" in capsys.readouterr().out


def test_main_uses_the_user_s_own_photos_instead_of_refusing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run` with the user's photos in data/01_raw/fruits: they are the input."""
    root = tmp_path / "fruits"
    own = root / "Training" / "Quince" / "mine.jpg"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"my photo")
    assert main([str(root)]) == 0
    assert "holds your own photos: using them" in capsys.readouterr().out
    assert [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()] == ["Training/Quince/mine.jpg"]
    assert own.read_bytes() == b"my photo"


def test_main_generates_the_sample_into_an_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "fruits"
    root.mkdir()
    (root / ".gitkeep").write_text("")
    assert main([str(root), "--train-per-class", "1", "--test-per-class", "1"]) == 0
    assert (root / MARKER_NAME).is_file()


def _features(path: Path) -> np.ndarray:
    """Mean/spread of the fruit's colour plus rotation-invariant shape measures."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    fruit = pixels.min(axis=2) < 0.9  # anything clearly off-white
    colours = pixels[fruit]
    rows, cols = np.nonzero(fruit)
    minor, major = np.linalg.eigvalsh(np.cov(np.stack([cols, rows]).astype(np.float64)))
    roundness = np.sqrt(minor / major)
    return np.concatenate([colours.mean(axis=0), colours.std(axis=0), [fruit.mean(), roundness]])


def _dataset(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for label, class_name in enumerate(CLASSES):
        for path in sorted((root / split / class_name).glob("*.jpg")):
            features.append(_features(path))
            labels.append(label)
    return np.array(features), np.array(labels)


def test_classes_are_learnable_by_nearest_centroid(default_sample: tuple[Path, int]) -> None:
    root, _ = default_sample
    train_x, train_y = _dataset(root, "Training")
    test_x, test_y = _dataset(root, "Test")
    # Standardise with training statistics so no single feature dominates the distance.
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-9
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    centroids = np.stack([train_x[train_y == label].mean(axis=0) for label in range(len(CLASSES))])
    distances = np.linalg.norm(test_x[:, None, :] - centroids[None, :, :], axis=2)
    accuracy = (distances.argmin(axis=1) == test_y).mean()
    assert accuracy >= 0.9
