"""A photo folder is never clean: a run over valid photos mixed with every kind of bad file
keeps each valid photo's features unchanged and lists each bad file with its reason, also
files replaced by a FIFO, a link to /dev/zero or a 60 MB file after they were listed."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fruits_kedro.datasets.image_folder import HIDDEN, ImageFolderDataset
from fruits_kedro.labels import NESTED
from tests.conftest import make_project_copy, run_kedro
from tests.datasets.test_image_folder_special_files import deadline
from tests.outputs import current_output

# The README's way to read the CSVs: every label as text ("None", "NA", "null" included).
TEXT = {"keep_default_na": False, "dtype": {"label": str, "split": str}}


def _save(path: Path, image: Image.Image, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **kwargs)


def _build_corpus(root: Path, valid_sample: Path) -> tuple[set[str], set[str]]:
    """Copy the valid sample, then add odd-but-valid and invalid files. Returns (extra valid, invalid)."""
    shutil.copytree(valid_sample, root)
    a_photo = next(valid_sample.glob("Training/Apple Red/*.jpg"))
    photo = Image.open(a_photo).convert("RGB")
    extra_valid = {
        "Training/Apple Red/alpha.png": lambda p: _save(p, photo.convert("RGBA"), "PNG"),
        "Training/Apple Red/grey.jpg": lambda p: _save(p, photo.convert("L"), "JPEG"),
        "Training/Apple Red/cmyk.jpg": lambda p: _save(p, photo.convert("CMYK"), "JPEG"),
        "Training/Apple Red/sixteen_bit.png": lambda p: _save(
            p, Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257), "PNG"
        ),
        'Training/Pomme Émeraude/l\'été "1" .JPG': lambda p: shutil.copy(a_photo, p),
        # Folder names that CSV readers take for missing values, or for numbers.
        **{f"Training/{name}/photo.jpg": lambda p: shutil.copy(a_photo, p) for name in ("None", "NA", "null", "007")},
    }
    jpeg = a_photo.read_bytes()
    invalid = {
        "Training/Apple Red/truncated.jpg": lambda p: p.write_bytes(jpeg[: len(jpeg) // 3]),
        "Training/Apple Red/empty.jpg": lambda p: p.write_bytes(b""),
        "Training/Banana/notes.jpg": lambda p: p.write_text("shopping list: bananas\n"),
        # Past Pillow's decompression-bomb limit (89.5 Mpx): rejected without being decoded.
        "Test/Lemon/huge.png": lambda p: _save(p, Image.new("1", (9500, 9500)), "PNG"),
    }
    for relative, make in {**extra_valid, **invalid}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    (root / "Training" / "Empty Class").mkdir(parents=True)
    # Never read: they are skipped at listing time, each with its reason.
    os.mkfifo(root / "Training" / "Apple Red" / "pipe.jpg")  # reading it would block forever
    (root / "Training" / "Banana" / "zero.jpg").symlink_to("/dev/zero")  # would never end
    (root / "Training" / "Banana" / "readme.txt").write_text("not a photo")
    shutil.copy(a_photo, root / "loose.jpg")  # no class folder
    for relative in ("Training/Banana/nested/deeper.jpg", "Training/.cache/cached.jpg", "Training/Kiwi/._a.jpg"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(a_photo, root / relative)
    for relative in SWAPPED:  # valid photos when listed, something else when read
        shutil.copy(a_photo, root / relative)
    return set(extra_valid), set(invalid)


SKIPPED = {  # relative path -> reason
    "Training/Apple Red/pipe.jpg": "not a regular file (FIFO)",
    "Training/Banana/zero.jpg": "not a regular file (character device)",
    "Training/Banana/readme.txt": "not an image (extension)",
    "loose.jpg": "no class folder (directly under the root)",
    "Training/Banana/nested/deeper.jpg": NESTED,
    "Training/.cache/cached.jpg": HIDDEN,
    "Training/Kiwi/._a.jpg": HIDDEN,
    ".sample_complete": HIDDEN,  # the generated sample's marker
}
SWAPPED = {  # relative path -> why it is rejected once replaced
    "Training/Apple Red/swapped_fifo.jpg": "not a regular file (FIFO), found when read",
    "Training/Apple Red/swapped_zero.jpg": "not a regular file (character device), found when read",
    "Training/Apple Red/swapped_60mb.jpg": "larger than max_file_bytes (52428800 bytes), found when read",
}


def _swap_once_listed(root: Path):
    """ImageFolderDataset.list_files that replaces the SWAPPED photos once the listing is done."""
    list_files = ImageFolderDataset.list_files

    def list_then_swap(dataset):
        listing = list_files(dataset)
        fifo, zero, big = (root / relative for relative in SWAPPED)
        fifo.unlink()
        os.mkfifo(fifo)  # opening it to read would wait for a writer forever
        zero.unlink()
        zero.symlink_to("/dev/zero")  # would never end
        os.truncate(big, 60 * 2**20)  # sparse: 60 MB to read, none written
        return listing

    return list_then_swap


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory, generated_sample):
    base = tmp_path_factory.mktemp("messy")
    extra_valid, invalid = _build_corpus(base / "photos", generated_sample)
    project = make_project_copy(base / "project")
    with pytest.MonkeyPatch.context() as monkeypatch, deadline(900):
        monkeypatch.setattr(ImageFolderDataset, "list_files", _swap_once_listed(base / "photos"))
        run_kedro(project, monkeypatch, images_root=str(base / "photos"), backbone={"weights": None, "input_size": 64})
    return project, base / "photos", extra_valid, invalid | set(SWAPPED)


def test_bad_files_are_rejected_with_a_reason_and_nothing_else_is(messy_run):
    project, photos, _, invalid = messy_run
    rejected = pd.read_csv(current_output(project, "02_intermediate/rejected_images.csv"))
    reasons = {str(Path(p).relative_to(photos)): reason for p, reason in zip(rejected["path"], rejected["reason"])}
    assert set(reasons) == invalid
    assert reasons["Training/Apple Red/empty.jpg"] == "empty file"
    assert "decompression-bomb" in reasons["Test/Lemon/huge.png"]
    assert {relative: reasons[relative] for relative in SWAPPED} == SWAPPED
    assert pd.read_parquet(current_output(project, "02_intermediate/rejected_images.parquet")).shape[0] == len(invalid)


def test_every_listed_file_is_accounted_for(messy_run, generated_sample):
    project, _, extra_valid, invalid = messy_run
    report = json.loads(current_output(project, "08_reporting/feature_extraction_report.json").read_text())
    n_valid = len(list(generated_sample.rglob("*.jpg"))) + len(extra_valid)
    assert report["featurized"] == n_valid and report["rejected"] == len(invalid) and report["reused"] == 0
    counts = {reason: list(SKIPPED.values()).count(reason) for reason in SKIPPED.values()}
    assert report["skipped_by_reason"] == counts and report["skipped"] == len(SKIPPED)
    assert report["listed"] == report["featurized"] + report["reused"] + report["rejected"] + report["skipped"]
    assert sum(report["rejected_by_reason"].values()) == len(invalid)
    assert report["rejected_by_reason"]["empty file"] == 1


def test_every_skipped_file_is_named_with_its_reason(messy_run):
    project, photos, _, _ = messy_run
    skipped = pd.read_csv(current_output(project, "02_intermediate/skipped_images.csv"), **TEXT)
    assert list(skipped.columns) == ["path", "reason", "run_id"]
    assert {str(Path(p).relative_to(photos)): r for p, r in zip(skipped["path"], skipped["reason"])} == SKIPPED


def test_every_valid_photo_keeps_its_row(messy_run, generated_sample):
    project, photos, extra_valid, _ = messy_run
    table = pd.read_csv(current_output(project, "04_feature/image_features_pca.csv"), **TEXT)
    expected = {str(p.relative_to(generated_sample)) for p in generated_sample.rglob("*.jpg")} | extra_valid
    assert {str(Path(p).relative_to(photos)) for p in table["path"]} == expected
    assert not table.filter(like="pc_").isna().any().any()
    labels = set(table["label"])
    assert {"Pomme_Émeraude", "None", "NA", "null", "007"} <= labels and "nested" not in labels


def test_valid_photos_get_the_same_features_as_in_a_clean_run(messy_run, default_run, generated_sample):
    project, photos, _, _ = messy_run
    messy = pd.read_parquet(current_output(project, "04_feature/image_features.parquet")).set_index("relative_path")
    clean = pd.read_parquet(current_output(default_run, "04_feature/image_features.parquet")).set_index("relative_path")
    assert len(clean) == len(list(generated_sample.rglob("*.jpg")))
    for relative, row in clean.iterrows():
        np.testing.assert_allclose(messy.loc[relative, "features"], row["features"], rtol=1e-5, atol=1e-12)


def test_the_catalog_reads_every_label_as_text(messy_run, monkeypatch):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project, _, _, _ = messy_run
    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        features = session.load_context().catalog.load("image_features_pca_csv")
    assert {"None", "NA", "null", "007"} <= set(features["label"])
    assert features["split"].map(type).eq(str).all()
