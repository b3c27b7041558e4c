from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyspark.sql import functions as F

from fruits_kedro.datasets.image_folder import HIDDEN, ImageFolderDataset
from fruits_kedro.datasets.photo_rules import label_column
from fruits_kedro.labels import NESTED, normalize_label
from fruits_kedro.pipelines.ingestion.nodes import (
    account_for_listing,
    attach_image_bytes,
    label_images,
    list_skipped_files,
    sample_per_class,
)
from tests.params import params

PARAMS = params("ingestion", images_per_partition=4)


def _touch(root: Path, relative: str, data: bytes = b"x") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for rel in (
        "Training/Apple Red/a.jpg",
        "Training/Apple Red/b.JPG",
        "Training/Banana/c.jpeg",
        "Training/Banana/notes.txt",
        "Test/Apple Red/d.png",
        "Lime/e.jpg",  # one folder down: a label, no split
        "root.jpg",  # no class folder: skipped
    ):
        _touch(tmp_path, rel)
    return tmp_path


def test_label_images_labels_from_folders_and_keeps_images_only(spark, tree):
    listing = ImageFolderDataset(path=str(tree)).load()
    rows = {r.relative_path: r for r in label_images(listing, PARAMS).collect()}
    assert set(rows) == {
        "Training/Apple Red/a.jpg",
        "Training/Apple Red/b.JPG",
        "Training/Banana/c.jpeg",
        "Test/Apple Red/d.png",
        "Lime/e.jpg",
    }
    assert rows["Training/Apple Red/a.jpg"].label == "Apple_Red"
    assert rows["Training/Apple Red/a.jpg"].split == "Training"
    assert rows["Test/Apple Red/d.png"].split == "Test"
    assert rows["Lime/e.jpg"].label == "Lime" and rows["Lime/e.jpg"].split is None


def test_label_images_matches_extensions_literally_in_any_case(spark, tmp_path):
    for rel in ("Kiwi/a.JpEg", "Kiwi/b.PNG", "Kiwi/cjpeg", "Kiwi/d.jpeg.txt", "Kiwi/e.webp", "Kiwi/f.tiff"):
        _touch(tmp_path, rel)
    listing = ImageFolderDataset(path=str(tmp_path)).load()
    # "png" without its dot is accepted, as the parameter validation accepts it; the dot is
    # literal: "cjpeg" has no extension.
    kept = {
        r.relative_path
        for r in label_images(listing, params("ingestion", extensions=[".jpeg", "png", ".TIFF"])).collect()
    }
    assert kept == {"Kiwi/a.JpEg", "Kiwi/b.PNG", "Kiwi/f.tiff"}


def test_sample_per_class_is_deterministic_and_capped(spark, tmp_path):
    for cls in ("A", "B"):
        for i in range(7):
            _touch(tmp_path, f"Training/{cls}/{i}.jpg")
    labelled = label_images(ImageFolderDataset(path=str(tmp_path)).load(), PARAMS)
    first = sample_per_class(labelled, {**PARAMS, "sample_per_class": 3})
    counts = {r.label: r["count"] for r in first.groupBy("label").count().collect()}
    assert counts == {"A": 3, "B": 3}
    again = sample_per_class(labelled, {**PARAMS, "sample_per_class": 3})
    assert sorted(r.path for r in first.collect()) == sorted(r.path for r in again.collect())
    other_seed = sample_per_class(labelled, {**PARAMS, "sample_per_class": 3, "seed": 7})
    assert other_seed.count() == 6
    assert sample_per_class(labelled, {**PARAMS, "sample_per_class": None}).count() == 14


def test_sample_per_class_rejects_non_positive(spark, tree):
    labelled = label_images(ImageFolderDataset(path=str(tree)).load(), PARAMS)
    with pytest.raises(ValueError, match="sample_per_class"):
        sample_per_class(labelled, {**PARAMS, "sample_per_class": 0})


def test_attach_image_bytes_reads_each_files_bytes(spark, tmp_path):
    for i in range(5):
        _touch(tmp_path, f"Training/Kiwi/{i}.jpg", data=f"bytes-{i}".encode())
    labelled = label_images(ImageFolderDataset(path=str(tmp_path)).load(), PARAMS)
    with_bytes = attach_image_bytes(labelled, PARAMS)
    contents = {Path(r.path).name: bytes(r.content) for r in with_bytes.collect()}
    assert contents == {f"{i}.jpg": f"bytes-{i}".encode() for i in range(5)}


@pytest.mark.parametrize("n_images, per_partition", [(5, 4), (9, 4), (17, 2), (3, 100)])
def test_partitions_come_in_equal_waves_of_one_task_per_core(spark, tmp_path, n_images, per_partition):
    for i in range(n_images):
        _touch(tmp_path, f"Training/Kiwi/{i}.jpg")
    labelled = label_images(ImageFolderDataset(path=str(tmp_path)).load(), PARAMS)
    with_bytes = attach_image_bytes(labelled, {**PARAMS, "images_per_partition": per_partition})
    cores = spark.sparkContext.defaultParallelism
    sizes = with_bytes.select("path").rdd.glom().map(len).collect()
    assert sum(sizes) == n_images
    assert max(sizes) <= per_partition
    # Whole waves, as few as the cap allows: every core busy until the last wave ends.
    assert len(sizes) == cores * -(-n_images // (cores * per_partition))
    # Round-robin from each input partition: sizes differ by at most one row per input partition.
    assert max(sizes) - min(sizes) <= labelled.rdd.getNumPartitions()


@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip()))
def test_normalize_label_has_no_whitespace(name):
    label = normalize_label(name)
    assert not any(ch.isspace() for ch in label)
    assert len(label) == len(name.strip())


def test_spark_gives_the_labels_that_the_up_front_check_compares(spark):
    names = [" Apple ", "\tApple\n", "Apple Red", "Apple\u00a0Red", "   ", "Kiwi"]
    frame = spark.createDataFrame([(name,) for name in names], "name string")
    assert [r.label for r in frame.select(label_column(F.col("name")).alias("label")).collect()] == [
        normalize_label(name) for name in names
    ]


def _listing(spark, relative_paths: list[str], size: int = 10):
    rows = [(f"/r/{p}", p, size, "m", None) for p in relative_paths]
    return spark.createDataFrame(rows, "path string, relative_path string, size long, modified string, skipped string")


MIXED = ["Training/Kiwi/a.jpg", "Test/Kiwi/b.jpg", "test-multiple_fruits/c.jpg", "test-multiple_fruits/d.jpg"]


def test_a_folder_of_images_beside_the_split_folders_is_named_and_can_be_left_out(spark, caplog):
    listing = _listing(spark, MIXED)
    with caplog.at_level("WARNING"):
        kept = {r.relative_path: r for r in label_images(listing, params("ingestion")).collect()}
    assert kept["test-multiple_fruits/c.jpg"].split is None and len(kept) == 4
    assert "'test-multiple_fruits'" in caplog.text and "unsplit_folders" in caplog.text
    excluded = label_images(listing, params("ingestion", unsplit_folders="exclude"))
    assert sorted(r.relative_path for r in excluded.collect()) == sorted(MIXED[:2])
    account = account_for_listing(listing, excluded, params("ingestion", unsplit_folders="exclude"))
    assert account == {
        "listed": 4,
        "skipped_by_reason": {"outside the split folders (ingestion.unsplit_folders: exclude)": 2},
    }


def test_a_folder_of_classes_without_splits_is_not_a_mixed_layout(spark, caplog):
    with caplog.at_level("WARNING"):
        kept = label_images(
            _listing(spark, ["Kiwi/a.jpg", "Lime/b.jpg"]), params("ingestion", unsplit_folders="exclude")
        )
    assert kept.count() == 2 and "beside split folders" not in caplog.text


def test_files_over_the_size_limit_are_never_kept(spark):
    listing = _listing(spark, ["Training/Kiwi/a.jpg"], size=100)
    assert label_images(listing, params("ingestion", max_file_bytes=99)).count() == 0
    account = account_for_listing(
        listing, label_images(listing, params("ingestion", max_file_bytes=99)), params("ingestion", max_file_bytes=99)
    )
    assert account["skipped_by_reason"] == {"larger than ingestion.max_file_bytes (99 bytes)": 1}


def test_images_left_out_by_sampling_are_accounted_for_as_not_drawn(spark):
    listing = _listing(spark, [f"Training/Kiwi/{i}.jpg" for i in range(4)] + ["Training/Kiwi/notes.txt"])
    for n, drawn in ((2, 2), (None, 4)):
        settings = params("ingestion", sample_per_class=n)
        sampled = sample_per_class(label_images(listing, settings), settings)
        account = account_for_listing(listing, sampled, settings)
        assert sampled.count() == drawn
        expected = {"not an image (extension)": 1}
        if n is not None:
            expected["not drawn by ingestion.sample_per_class"] = 4 - drawn
        assert account == {"listed": 5, "skipped_by_reason": expected}


def test_nested_and_hidden_files_are_skipped_and_each_is_named_with_its_reason(spark, tmp_path):
    """Training/Apple/sub/x.jpg is not class "sub"; photos in .cache/ are counted, not lost."""
    for rel in (
        "Training/Apple/a.jpg",
        "Training/Apple/sub/x.jpg",
        "Training/.cache/c.jpg",
        "Training/Apple/._a.jpg",
        "Training/Apple/notes.txt",
        "loose.jpg",
    ):
        _touch(tmp_path, rel)
    listing = ImageFolderDataset(path=str(tmp_path)).load()
    kept = label_images(listing, PARAMS)
    assert [(r.relative_path, r.label, r.split) for r in kept.collect()] == [
        ("Training/Apple/a.jpg", "Apple", "Training")
    ]
    skipped = {
        Path(r.path).relative_to(tmp_path).as_posix(): r.reason
        for r in list_skipped_files(listing, kept, PARAMS).collect()
    }
    assert skipped == {
        "Training/Apple/sub/x.jpg": NESTED,
        "Training/.cache/c.jpg": HIDDEN,
        "Training/Apple/._a.jpg": HIDDEN,
        "Training/Apple/notes.txt": "not an image (extension)",
        "loose.jpg": "no class folder (directly under the root)",
    }
    account = account_for_listing(listing, kept, PARAMS)
    assert account == {"listed": 6, "skipped_by_reason": dict(sorted(Counter(skipped.values()).items()))}
