"""The listing of a local folder that holds more than photos: FIFOs, devices, broken links,
link loops, symlinked class folders, and names whose bytes are not UTF-8 or hold CR, LF,
commas and quotes. Whatever could block runs under a deadline, so a regression fails fast."""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import signal

import pandas as pd
import pytest

from fruits_kedro.datasets.files import os_path, read_files
from fruits_kedro.datasets.image_folder import (
    ImageFolderDataset,
    display_name,
    listing_path,
    read_file_bytes,
    walk_local,
)

ODD_NAME = 'q\r\n,"x.jpg'
READABLE = {  # relative_path -> bytes
    "Test/Banana/big.jpg": b"b" * 100,
    "Training/Apple Red/a.jpg": b"apple",
    "Training/Apple Red/b%FF.jpg": b"not utf-8 name",
    f"Training/Apple Red/{ODD_NAME}": b"odd characters",
    "Training/K%E4se/c.jpg": b"latin-1 class folder",
    "Training/Kiwi/k1.jpg": b"kiwi 1",
    "Training/Kiwi/k2.jpg": b"kiwi 2",
}
SKIPPED = {
    "Training/.hidden/h.jpg": "hidden (a name starting with '.')",
    "Test/Apple Red": "same folder as Training/Apple Red",
    "Test/Banana/broken.jpg": "broken symbolic link",
    "Test/Banana/fifo.jpg": "not a regular file (FIFO)",
    "Test/Banana/self.jpg": "symbolic link loop",
    "Test/Banana/zero.jpg": "not a regular file (character device)",
    "Training/loop": "symbolic link loop",
}


@contextlib.contextmanager
def deadline(seconds: float = 10):
    """TimeoutError if the block runs longer: an open() blocked on a FIFO is interrupted too."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _write(path: bytes, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)


@pytest.fixture
def odd_tree(tmp_path) -> str:
    root = os.fsencode(tmp_path / "fruits")
    outside = os.fsencode(tmp_path / "elsewhere" / "Kiwi")  # the symlinked class folder's target
    for relative, data in READABLE.items():
        raw = re.sub(rb"%([0-9A-F]{2})", lambda found: bytes.fromhex(found.group(1).decode()), relative.encode())
        if raw.startswith(b"Training/Kiwi/"):
            _write(outside + raw.removeprefix(b"Training/Kiwi"), data)
        else:
            _write(root + b"/" + raw, data)
    _write(root + b"/Training/.hidden/h.jpg", b"hidden")
    os.symlink(outside, root + b"/Training/Kiwi")
    os.symlink(b"..", root + b"/Training/loop")
    os.symlink(b"../Training/Apple Red", root + b"/Test/Apple Red")
    banana = root + b"/Test/Banana/"
    os.mkfifo(banana + b"fifo.jpg")
    os.symlink(b"/dev/zero", banana + b"zero.jpg")
    os.symlink(b"missing.jpg", banana + b"broken.jpg")
    os.symlink(b"self.jpg", banana + b"self.jpg")
    return os.fsdecode(root)


@pytest.fixture
def nothing_opened(monkeypatch):
    """Fails any open() of a file during the block: listing may only stat."""
    opened: list[str] = []

    def refuse(file, *args, **kwargs):
        opened.append(repr(file))
        raise AssertionError(f"the listing opened {file!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    return opened


def _listing(root: str, **kwargs) -> pd.DataFrame:
    with deadline():
        return ImageFolderDataset(path=root, **kwargs).list_files()


def test_only_regular_files_are_readable_and_the_rest_say_why(odd_tree, nothing_opened):
    listing = _listing(odd_tree)
    assert not nothing_opened
    readable = listing[listing["skipped"].isna()]
    skipped = listing[listing["skipped"].notna()]
    assert dict(zip(readable["relative_path"], readable["size"])) == {k: len(v) for k, v in READABLE.items()}
    assert dict(zip(skipped["relative_path"], skipped["skipped"])) == SKIPPED
    assert listing["relative_path"].is_unique  # the loop and the second way into a folder: once each
    assert list(listing.columns) == ["path", "relative_path", "size", "modified", "skipped"]


def test_max_file_bytes(odd_tree):
    listing = _listing(odd_tree, max_file_bytes=99).set_index("relative_path")
    assert listing.loc["Test/Banana/big.jpg", "skipped"] == "larger than max_file_bytes (99 bytes)"
    assert listing.loc["Training/Apple Red/a.jpg", "skipped"] is None


def test_paths_are_plain_unless_the_name_is_not_utf8(odd_tree):
    paths = _listing(odd_tree).set_index("relative_path")["path"]
    assert paths["Training/Apple Red/a.jpg"] == f"{odd_tree}/Training/Apple Red/a.jpg"
    assert paths[f"Training/Apple Red/{ODD_NAME}"] == f"{odd_tree}/Training/Apple Red/{ODD_NAME}"
    assert paths["Training/Kiwi/k1.jpg"] == f"{odd_tree}/Training/Kiwi/k1.jpg"  # under the link's name
    odd = paths["Training/Apple Red/b%FF.jpg"]
    assert odd.startswith("file:///") and odd.encode("utf-8")
    assert os.fsencode(os_path(odd)) == os.fsencode(odd_tree) + b"/Training/Apple Red/b\xff.jpg"
    assert os.fsencode(os_path(paths["Training/K%E4se/c.jpg"])) == os.fsencode(odd_tree) + b"/Training/K\xe4se/c.jpg"


def test_path_encoding_round_trips_and_is_not_fooled_by_percent_signs():
    for raw in (b"/a/b\xff.jpg", b"/a/%FF\xff.jpg", b"/a/\xed\xa0\x80 #?%.jpg", b"/plain %41.jpg"):
        path = listing_path(os.fsdecode(raw))
        assert os.fsencode(os_path(path)) == raw
    assert listing_path("/plain %41.jpg") == "/plain %41.jpg"
    assert display_name(os.fsdecode(b"K\xe4se %41 \xc3\xa9")) == "K%E4se %41 é"


def test_read_files_reads_every_readable_path(odd_tree):
    listing = _listing(odd_tree)
    readable = listing[listing["skipped"].isna()]
    with deadline():
        contents = read_files(readable["path"].tolist())
    assert dict(zip(readable["relative_path"], contents)) == READABLE


def test_spark_listing_and_executor_reads(spark, odd_tree):
    from pyspark.sql import functions as F

    with deadline():
        frame = ImageFolderDataset(path=odd_tree).load()
    assert {r.relative_path: r.skipped for r in frame.where("skipped IS NOT NULL").collect()} == SKIPPED
    read_bytes = F.pandas_udf(read_file_bytes, "binary")
    rows = frame.where("skipped IS NULL").select("relative_path", read_bytes("path").alias("content")).collect()
    assert {r.relative_path: bytes(r.content) for r in rows} == READABLE


def test_walk_local_lists_real_folders_under_their_real_names(tmp_path):
    (tmp_path / "Z real").mkdir()
    (tmp_path / "Z real" / "1.jpg").write_bytes(b"1")
    (tmp_path / "A link").symlink_to("Z real")
    with deadline():
        entries = walk_local(str(tmp_path))
    assert [(e.relative, e.skipped) for e in entries] == [("A link", "same folder as Z real"), ("Z real/1.jpg", None)]


def test_a_deep_chain_of_links_is_walked_once_per_folder(tmp_path):
    """Each folder links twice to the next one: followed naively, 2**30 paths."""
    for level in range(30):
        (tmp_path / f"d{level}").mkdir()
        (tmp_path / f"d{level}" / "x.jpg").write_bytes(b"x")
        if level:
            (tmp_path / f"d{level - 1}" / "a").symlink_to(tmp_path / f"d{level}")
            (tmp_path / f"d{level - 1}" / "b").symlink_to(tmp_path / f"d{level}")
    with deadline():
        entries = walk_local(str(tmp_path / "d0"))
    assert sum(e.skipped is None for e in entries) == 1 + 29  # d0/x.jpg, then each folder once
