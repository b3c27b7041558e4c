"""``ImageFolderDataset``: the files under a folder (local or any fsspec URL, e.g. ``s3://``).

Loading lists the files on the driver and returns a Spark DataFrame of their locations
(``path``, ``relative_path``, ``size``, ``modified``, ``skipped``) — never their bytes. The
bytes are read later, inside the executors, by :func:`fruits_kedro.datasets.files.read_files`,
after sampling has decided which files are needed: with tens of thousands of photos nothing
should pass through the driver.

``skipped`` is null for a file that may be read, else why it must not be, in fixed words:
``not a regular file (FIFO)`` (or socket, character device, block device), ``broken
symbolic link``, ``symbolic link loop``, ``same folder as <relative_path>``, ``folder cannot
be listed (...)``, ``cannot be examined (...)``, ``larger than max_file_bytes (N bytes)``
(N: the limit), ``hidden (a name starting with '.')`` (the file or a folder above it: such
folders are walked, so that what they hold is counted), and, on object stores, ``a folder
marker, not a file`` (a zero-byte key ending in ``/``). Such a row must never be read: opening
a FIFO blocks, ``/dev/zero`` never ends. Local folders are walked by :func:`walk_local`:
symbolic links to folders are followed, each real folder is listed once (under its real path
when it has one inside the root), and nothing but ``stat`` touches a file.

Names are kept byte for byte. Spark strings must be UTF-8, so a local name whose bytes are not
(Python holds them as surrogate escapes, ``os.fsdecode``) is written as follows:

- ``path``: an absolute path, unchanged, when its bytes are valid UTF-8 (every ordinary
  name); otherwise ``file://`` + the path's bytes percent-encoded (``urllib.parse.quote``),
  which :func:`fruits_kedro.datasets.files.os_path` turns back into the exact bytes. A plain
  local path never starts with ``file://``, so the two forms cannot be confused. Remote paths are full URLs, as listed.
- ``relative_path``: text, for labels and reports: valid UTF-8 stays as it is, and each
  byte that is not is written ``%XX`` (upper-case hex), the same key the upload command gives
  that file on S3 (:mod:`fruits_kedro.cloud.upload`), so both listings give the same labels.
  Not reversible where a name itself holds ``%XX``: ``path`` is the one to read.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import posixpath
import re
import stat
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

from fruits_kedro.datasets.aws import describe_s3_error, is_local_path, require_bucket
from fruits_kedro.datasets.files import Unreadable, not_regular_reason, read_files, size_reason
from fruits_kedro.spark import forward_aws_environment

LISTING_COLUMNS = ("path", "relative_path", "size", "modified", "skipped")
FILE_URI = "file://"
HIDDEN = "hidden (a name starting with '.')"
FOLDER_MARKER = "a folder marker, not a file"


class ImageFolderDataset(AbstractDataset[None, Any]):
    """Lists every file under ``path``; read-only.

    Examples:
        Using the YAML API (``conf/base/catalog.yml``)::

            raw_image_files:
              type: fruits_kedro.datasets.ImageFolderDataset
              path: data/01_raw/fruits
              max_file_bytes: 20000000

        Using the Python API::

            from fruits_kedro.datasets import ImageFolderDataset

            dataset = ImageFolderDataset(path="s3://bucket/fruits/raw")
            listing = dataset.load()  # path, relative_path, size, modified, skipped
    """

    def __init__(
        self,
        *,
        path: str,
        max_file_bytes: int | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates a new instance of ``ImageFolderDataset``.

        Args:
            path: The folder: a local path or an fsspec URL (``s3://bucket/prefix``).
            max_file_bytes: Files larger than this many bytes are listed as skipped and never
                read. ``None`` (the default): no limit.
            credentials: Passed to the fsspec filesystem (``key``, ``secret``, ...); by default
                the standard AWS chain.
            fs_args: Extra arguments of the fsspec filesystem.
            metadata: Any arbitrary metadata; ignored by Kedro.

        Raises:
            DatasetError: ``max_file_bytes`` is not a positive integer.
        """
        positive = isinstance(max_file_bytes, int) and not isinstance(max_file_bytes, bool) and max_file_bytes > 0
        if max_file_bytes is not None and not positive:
            raise DatasetError(f"max_file_bytes must be a positive integer or null, got {max_file_bytes!r}")
        self._path = str(path)
        self._max_file_bytes = max_file_bytes
        storage_options = {**(fs_args or {}), **(credentials or {})}
        self._protocol = fsspec.utils.get_protocol(self._path)
        self._storage_options = storage_options
        self.metadata = metadata
        # The run's up-front check lists the folder; the run's loads (the listing feeds two
        # nodes) then reuse that listing instead of listing tens of thousands of objects again.
        self._run_listing: pd.DataFrame | None = None

    @property
    def path(self) -> str:
        return self._path

    def _filesystem(self):
        fs, root = fsspec.core.url_to_fs(self._path, **self._storage_options)
        return fs, root.rstrip("/") or "/"

    def list_files(self) -> pd.DataFrame:
        """The listing as pandas, sorted by path, so that every run sees the same order."""
        self._run_listing = self._list_files()
        return self._run_listing

    def _list_files(self) -> pd.DataFrame:
        fs, root = self._filesystem()
        rows = self._list_local(root) if is_local_path(self._path) else self._list_remote(fs, root)
        return pd.DataFrame(rows, columns=list(LISTING_COLUMNS))

    def _list_local(self, root: str) -> list[dict[str, Any]]:
        if not os.path.exists(root):
            raise DatasetError(f"Image folder not found: {self._path}")
        if not os.path.isdir(root):
            raise DatasetError(f"Image folder is not a folder: {self._path}")
        return [listing_row(entry) for entry in walk_local(root, self._max_file_bytes)]

    def _list_remote(self, fs, root: str) -> list[dict[str, Any]]:
        rows = []
        for name, info in sorted(self._find_remote(fs, root).items()):
            row = remote_listing_row(fs, root, name, info, self._max_file_bytes)
            if row is not None:
                rows.append(row)
        return rows

    def _find_remote(self, fs, root: str) -> dict[str, Any]:
        """Object stores have no folders: an empty or mistyped prefix simply lists nothing,
        so say which bucket and prefix were searched and how to fill them."""
        entries = find_remote(fs, self._path, root, "list images under")
        if not entries:
            raise DatasetError(
                f"No files under {self._path}/ (empty or mistyped prefix). Upload the images with: "
                f"python -m fruits_kedro.cloud.upload LOCAL_DIR --bucket BUCKET --prefix PREFIX"
            )
        return entries

    def load(self):
        from fruits_kedro.spark import get_spark

        listing = self._run_listing
        if listing is None:  # loaded outside a run (a notebook): always a fresh listing
            listing = self._list_files()
        spark = get_spark()
        if not is_local_path(self._path):
            # read_files runs in the executors: they must reach the same endpoint.
            forward_aws_environment(spark.sparkContext)
        return listing_frame(spark, listing)

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: upload images to {self._path} instead")

    def _exists(self) -> bool:
        fs, root = self._filesystem()
        return fs.isdir(root)

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "protocol": self._protocol, "max_file_bytes": self._max_file_bytes}


def listing_frame(spark, rows):
    """Listing rows (pandas, or dicts of ``LISTING_COLUMNS``) as the Spark DataFrame a listing loads as."""
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("path", T.StringType(), False),
            T.StructField("relative_path", T.StringType(), False),
            T.StructField("size", T.LongType(), False),
            T.StructField("modified", T.StringType(), True),
            T.StructField("skipped", T.StringType(), True),
        ]
    )
    if isinstance(rows, list):
        import pyarrow as pa

        # An Arrow table becomes a local relation: no Python RDD, so no Python worker to read it.
        types = {"size": pa.int64()}
        arrow_schema = pa.schema([(c, types.get(c, pa.string())) for c in LISTING_COLUMNS])
        rows = pa.table({c: [row[c] for row in rows] for c in LISTING_COLUMNS}, schema=arrow_schema)
    return spark.createDataFrame(rows, schema=schema)


def local_listing_row(path: str, relative: str, max_file_bytes: int | None = None) -> dict[str, Any] | None:
    """One local file's listing row, as :meth:`ImageFolderDataset.list_files` gives it (``path``
    and ``relative`` as ``os.fsdecode`` text); None for a hidden name or a file already gone."""
    if any(part.startswith(".") for part in relative.split("/")):
        return None
    try:
        info = os.stat(path)  # follows links; never opens the file
    except FileNotFoundError:
        return None
    except OSError as exc:
        entry = LocalEntry(path, relative, 0, None, _stat_failure(exc, os.path.islink(path)))
    else:
        entry = LocalEntry(path, relative, info.st_size, info.st_mtime, _file_reason(info, max_file_bytes))
    return listing_row(entry)


def listing_row(entry: LocalEntry) -> dict[str, Any]:
    """A local entry as a row of ``LISTING_COLUMNS``."""
    return {
        "path": listing_path(entry.path),
        "relative_path": display_name(entry.relative),
        "size": entry.size,
        "modified": None if entry.modified is None else str(entry.modified),
        "skipped": entry.skipped,
    }


@dataclass(frozen=True)
class LocalEntry:
    """One name under a local folder. ``path`` and ``relative`` are ``os.fsdecode`` text
    (undecodable bytes as surrogate escapes); ``skipped`` is None for a readable regular file;
    ``arrival_ns``: when it landed, the latest of its mtime, its ctime and the ctimes of its
    folders below the root that are later than their mtimes (a copy that kept its old mtime, or
    a folder moved in, arrives when it lands; a file added to a folder changes that folder's
    mtime and ctime alike, which makes no other file of it arrive)."""

    path: str
    relative: str
    size: int
    modified: float | None
    skipped: str | None
    arrival_ns: int = 0


def walk_local(root: str, max_file_bytes: int | None = None) -> list[LocalEntry]:
    """Every name under ``root``, sorted by path, each folder walked once; a file that is
    or sits in a hidden folder is skipped as :data:`HIDDEN` (.DS_Store, ._*, .cache/).

    Only ``os.scandir`` and ``os.stat`` are used: no file is opened. Symbolic links are
    resolved; a link to a folder is walked after the real tree, so a folder reached both ways
    is listed under its real path, and a folder already listed (a loop included) is listed as
    skipped instead of being walked again.
    """
    top = os.stat(root)
    listed = {(top.st_dev, top.st_ino): ""}  # each folder walked -> its relative path
    entries: list[LocalEntry] = []
    # (folder, relative prefix, its own and ancestors' ids, the latest ctime of its folders below root)
    folders = [(root, "", frozenset(listed), 0)]
    links: deque[tuple[str, str, frozenset, tuple[int, int], int]] = deque()
    while folders or links:
        if folders:
            folder, prefix, ancestors, landed = folders.pop()
        else:
            path, relative, ancestors, identity, landed = links.popleft()
            reason = _revisit(identity, ancestors, listed)
            if reason:
                entries.append(LocalEntry(path, relative, 0, None, reason, landed))
                continue
            listed[identity] = display_name(relative)
            folder, prefix, ancestors = path, relative + "/", ancestors | {identity}
        try:
            with os.scandir(folder) as scan:
                children = sorted(scan, key=lambda child: child.name)
        except OSError as exc:
            if not prefix:
                raise
            reason = f"folder cannot be listed ({_error_text(exc)})"
            entries.append(LocalEntry(folder, prefix[:-1], 0, None, reason, landed))
            continue
        for child in children:
            relative = prefix + child.name
            try:
                info = os.stat(child.path)  # follows links; never opens the file
            except FileNotFoundError:
                if child.is_symlink():
                    entries.append(LocalEntry(child.path, relative, 0, None, "broken symbolic link", landed))
                continue  # otherwise removed since the folder was read
            except OSError as exc:
                reason = _stat_failure(exc, child.is_symlink())
                entries.append(LocalEntry(child.path, relative, 0, None, reason, landed))
                continue
            if stat.S_ISDIR(info.st_mode):
                identity, below = (info.st_dev, info.st_ino), landed
                if info.st_ctime_ns > info.st_mtime_ns:  # moved in (or its mode changed): not an entry added
                    below = max(landed, info.st_ctime_ns)
                if child.is_symlink():
                    links.append((child.path, relative, ancestors, identity, below))
                elif reason := _revisit(identity, ancestors, listed):  # a bind mount, say
                    entries.append(LocalEntry(child.path, relative, 0, None, reason, below))
                else:
                    listed[identity] = display_name(relative)
                    folders.append((child.path, relative + "/", ancestors | {identity}, below))
                continue
            reason = _file_reason(info, max_file_bytes)
            arrival = max(info.st_mtime_ns, info.st_ctime_ns, landed)
            entries.append(LocalEntry(child.path, relative, info.st_size, info.st_mtime, reason, arrival))
    return sorted((_hide(entry) for entry in entries), key=lambda entry: entry.path)


def is_hidden(relative: str) -> bool:
    """A name starting with ``.`` in the relative path: the file's or a folder's above it."""
    return any(part.startswith(".") for part in relative.split("/"))


def _hide(entry: LocalEntry) -> LocalEntry:
    """A file that could be read, but is hidden, is not a photo of the set."""
    return dataclasses.replace(entry, skipped=HIDDEN) if entry.skipped is None and is_hidden(entry.relative) else entry


def _revisit(identity: tuple[int, int], ancestors: frozenset, listed: dict[tuple[int, int], str]) -> str | None:
    if identity in ancestors:
        return "symbolic link loop"
    if identity in listed:
        return f"same folder as {listed[identity] or '.'}"
    return None


def _file_reason(info: os.stat_result, max_file_bytes: int | None) -> str | None:
    return not_regular_reason(info.st_mode) or size_reason(info.st_size, max_file_bytes)


def _stat_failure(exc: OSError, is_link: bool) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if is_link and exc.errno == errno.ENOTDIR:
        return "broken symbolic link"
    return f"cannot be examined ({_error_text(exc)})"


def _error_text(exc: OSError) -> str:
    """Fixed words: no path, so the same problem reads the same on every run."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def listing_path(path: str) -> str:
    """A local path as the listing's ``path`` column holds it (see the module docstring)."""
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return FILE_URI + urllib.parse.quote(raw)


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def display_name(name: str) -> str:
    """``os.fsdecode`` text as UTF-8 text: each byte that is not valid UTF-8 becomes ``%XX``."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")  # the raw bytes, whatever the locale
    return _ESCAPED_BYTE.sub(lambda found: f"%{ord(found.group()) - 0xDC00:02X}", text)


def find_remote(fs, url: str, root: str, action: str, *, check_bucket: bool = True) -> dict[str, Any]:
    """Every object under ``root`` (fsspec ``find``, with details), listed afresh; a failure to
    reach S3 as a DatasetError naming the bucket and the fix (``action``: what was being done)."""
    if check_bucket:
        require_bucket(fs, url, action)
    fs.invalidate_cache(root)  # objects uploaded since the last listing must be seen
    try:
        return fs.find(root, detail=True, withdirs=False)
    except Exception as exc:
        message = describe_s3_error(exc, url, action)
        if message:
            raise DatasetError(message) from exc
        raise


def remote_listing_row(
    fs, root: str, name: str, info: dict[str, Any], max_file_bytes: int | None
) -> dict[str, Any] | None:
    """The listing row of one object that fsspec's ``find`` returned under ``root``, with why it
    is skipped where it is not a photo's file: a folder marker (an empty key ending in ``/``, as
    consoles create for "folders"), a hidden name, a size over ``max_file_bytes``. None for the
    marker of ``root`` itself."""
    relative = posixpath.relpath(name, root)
    if relative == ".":
        return None
    size = int(info.get("size") or 0)
    if name.endswith("/") or str(info.get("Key") or "").endswith("/"):  # reading it finds no file
        relative, reason = relative.rstrip("/") + "/", FOLDER_MARKER
    elif is_hidden(relative):
        reason = HIDDEN
    else:
        reason = size_reason(size, max_file_bytes)
    return {
        "path": fs.unstrip_protocol(name),
        "relative_path": relative,
        "size": size,
        "modified": _modified(info),
        "skipped": reason,
    }


def _modified(info: dict[str, Any]) -> str | None:
    """A change marker: ETag (or LastModified) for object stores."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"')
    return None


def read_file_bytes(paths: pd.Series) -> pd.Series:
    """:func:`fruits_kedro.datasets.files.read_files` as a pandas UDF's function: each file's
    bytes, None for a file that is gone, may not be read or is not a regular file (storage
    failures raise)."""
    return _file_bytes(paths, None)


def file_bytes_reader(max_bytes: int | None):
    """:func:`read_file_bytes` that also gives None for a file larger than ``max_bytes``, read
    no further than that."""

    def read(paths: pd.Series) -> pd.Series:
        return _file_bytes(paths, max_bytes)

    return read


def _file_bytes(paths: pd.Series, max_bytes: int | None) -> pd.Series:
    contents = read_files(paths.tolist(), max_bytes=max_bytes)
    return pd.Series([None if isinstance(data, Unreadable) else data for data in contents], dtype=object)
