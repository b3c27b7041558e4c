"""Labels from the folder layout ``<root>/[<Split>/]<Class Name>/<file>``.

A file's class folder is the folder it sits in; its label is the folder's name, trimmed, with
every whitespace character as ``_``. Deeper files (``Training/Apple/sub/x.jpg``) are not in
the layout: they are skipped as :data:`NESTED`, never given the label ``sub``. Labels must
name their folders one to one: two folders that give the same label (`` Apple `` and
``Apple``, ``Apple Red`` and ``Apple_Red``) or a folder that gives an empty one fail the run
before Spark starts (:func:`check_class_folders`), rather than merging classes silently.

Ingestion applies the same rules to Spark columns (:mod:`fruits_kedro.pipelines.ingestion.nodes`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kedro.io.core import DatasetError

MAX_DEPTH = 3  # <Split>/<Class>/<file>
NESTED = "nested in a class folder (deeper than <Split>/<Class>/)"


class LabelError(DatasetError):
    """Class folders whose labels would merge classes or be empty."""


def normalize_label(folder_name: str) -> str:
    """The label of a class folder: trimmed, every whitespace character becomes ``_``."""
    return "".join("_" if ch.isspace() else ch for ch in folder_name.strip())


def check_class_folders(relative_paths: Iterable[str], unsplit_excluded: bool = False) -> None:
    """Fail when two class folders give one label, or one gives an empty label.

    ``relative_paths``: the images of the run (files the listing did not skip, with an image
    extension). Files outside the layout (no class folder, nested) give no label; with
    ``unsplit_excluded``, neither do folders of images directly under the root beside split
    folders (``ingestion.unsplit_folders: exclude``).

    Raises:
        LabelError: naming both folders (or the empty one), in one line.
    """
    folders: dict[str, set[str]] = {}  # class folder (relative path) -> depth of its files
    for relative in relative_paths:
        parts = relative.split("/")
        if 2 <= len(parts) <= MAX_DEPTH:
            folders.setdefault("/".join(parts[:-1]), set()).add(len(parts))
    split = any(MAX_DEPTH in depths for depths in folders.values())
    by_label: dict[str, dict[str, str]] = {}  # label -> {folder name: the first folder of that name}
    for folder in sorted(folders):
        if unsplit_excluded and split and "/" not in folder:
            continue
        name = folder.rsplit("/", 1)[-1]
        label = normalize_label(name)
        if not label:
            raise LabelError(f"Class folder {folder!r} gives an empty label (its name is only spaces): rename it.")
        by_label.setdefault(label, {}).setdefault(name, folder)
    for label, names in sorted(by_label.items()):
        if len(names) > 1:
            first, second = sorted(names.values())[:2]
            raise LabelError(
                f"Class folders {first!r} and {second!r} both give the label {label!r}: "
                "rename one, or move its photos into the other."
            )
