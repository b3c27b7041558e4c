import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from fruits_kedro.datasets.image_folder import HIDDEN, ImageFolderDataset, read_file_bytes
from fruits_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT


def test_lists_every_file_with_relative_paths_and_skips_hidden(tmp_path):
    (tmp_path / "Training" / "Apple Red").mkdir(parents=True)
    (tmp_path / "Training" / "Apple Red" / "1.jpg").write_bytes(b"abc")
    (tmp_path / "Training" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".sample_complete").write_text("v1")
    (tmp_path / "Training" / "Kiwi" / ".cache").mkdir(parents=True)
    (tmp_path / "Training" / "Kiwi" / ".cache" / "2.jpg").write_bytes(b"hidden folder")
    listing = ImageFolderDataset(path=str(tmp_path)).list_files()
    # Hidden files, and photos in hidden folders, are listed (so that they are counted), never read.
    assert dict(zip(listing["relative_path"], listing["skipped"])) == {
        ".sample_complete": HIDDEN,
        "Training/.DS_Store": HIDDEN,
        "Training/Apple Red/1.jpg": None,
        "Training/Kiwi/.cache/2.jpg": HIDDEN,
    }
    photo = listing.set_index("relative_path").loc["Training/Apple Red/1.jpg"]
    assert (photo["size"], photo["path"]) == (3, str(tmp_path / "Training" / "Apple Red" / "1.jpg"))


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        ImageFolderDataset(path=str(missing)).list_files()


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder"):
        ImageFolderDataset(path=str(tmp_path / "a.jpg")).list_files()


def test_files_over_max_file_bytes_are_listed_as_skipped(tmp_path):
    (tmp_path / "K").mkdir()
    (tmp_path / "K" / "small.jpg").write_bytes(b"x" * 10)
    (tmp_path / "K" / "large.jpg").write_bytes(b"x" * 11)
    listing = ImageFolderDataset(path=str(tmp_path), max_file_bytes=10).list_files()
    assert dict(zip(listing["relative_path"], listing["skipped"])) == {
        "K/large.jpg": "larger than max_file_bytes (10 bytes)",
        "K/small.jpg": None,
    }
    assert listing["size"].tolist() == [11, 10]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_max_file_bytes_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(DatasetError, match="max_file_bytes"):
        ImageFolderDataset(path=str(tmp_path), max_file_bytes=bad)


def test_arguments_are_keyword_only(tmp_path):
    with pytest.raises(TypeError):
        ImageFolderDataset(str(tmp_path))  # type: ignore[misc]


@pytest.mark.parametrize("env", ["local", "s3", "emr"])
def test_the_catalog_entries_load(env):
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), env=env, runtime_params={"bucket": "bkt"}, **CONFIG_LOADER_ARGS
    )
    config = loader["catalog"]["raw_image_files"]
    dataset = DataCatalog.from_config({"raw_image_files": config})["raw_image_files"]
    assert isinstance(dataset, ImageFolderDataset)
    assert dataset.path == config["path"]


def test_load_gives_a_spark_listing(spark, generated_sample):
    frame = ImageFolderDataset(path=str(generated_sample)).load()
    assert frame.columns == ["path", "relative_path", "size", "modified", "skipped"]
    assert frame.where("skipped IS NULL").count() == len(list(generated_sample.rglob("*.jpg")))
    assert [tuple(r) for r in frame.where("skipped IS NOT NULL").select("relative_path", "skipped").collect()] == [
        (".sample_complete", HIDDEN)  # the sample's marker: counted, never read
    ]


def test_read_file_bytes_returns_none_for_unreadable(tmp_path):
    good = tmp_path / "a.jpg"
    good.write_bytes(b"123")
    literal = tmp_path / "b[1].jpg"  # glob characters in a name are read literally
    literal.write_bytes(b"45")
    (tmp_path / "b1.jpg").write_bytes(b"not me")
    out = read_file_bytes(__import__("pandas").Series([str(good), str(tmp_path / "gone.jpg"), str(literal)]))
    assert out.tolist() == [b"123", None, b"45"]
