import pytest
from kedro.io.core import DatasetError

from fruits_kedro.datasets.image_folder import ImageFolderDataset, read_file_bytes


def test_lists_every_file_with_relative_paths_and_skips_hidden(tmp_path):
    (tmp_path / "Training" / "Apple Red").mkdir(parents=True)
    (tmp_path / "Training" / "Apple Red" / "1.jpg").write_bytes(b"abc")
    (tmp_path / "Training" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".sample_complete").write_text("v1")
    listing = ImageFolderDataset(str(tmp_path)).list_files()
    assert listing["relative_path"].tolist() == ["Training/Apple Red/1.jpg"]
    assert listing["size"].tolist() == [3]
    assert listing["path"].iloc[0].endswith("Training/Apple Red/1.jpg")


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        ImageFolderDataset(str(missing)).list_files()


def test_load_gives_a_spark_listing(spark, generated_sample):
    frame = ImageFolderDataset(str(generated_sample)).load()
    assert frame.columns == ["path", "relative_path", "size", "modified"]
    assert frame.count() == len(list(generated_sample.rglob("*.jpg")))


def test_read_file_bytes_returns_none_for_unreadable(tmp_path):
    good = tmp_path / "a.jpg"
    good.write_bytes(b"123")
    literal = tmp_path / "b[1].jpg"  # glob characters in a name are read literally
    literal.write_bytes(b"45")
    (tmp_path / "b1.jpg").write_bytes(b"not me")
    out = read_file_bytes(__import__("pandas").Series([str(good), str(tmp_path / "gone.jpg"), str(literal)]))
    assert out.tolist() == [b"123", None, b"45"]
