"""Which listed files are photos, and their labels: the rules the batch ingestion and the
stream's micro-batches both apply to a listing (``image_folder.LISTING_COLUMNS``), as Spark
expressions.

``label`` is the parent folder (spaces -> ``_``); ``split`` the grandparent folder, when the
file sits two folders down. A file is left out, with a reason in fixed words, when the listing
skipped it (FIFOs, devices, broken links, too large), when it has no image extension or no class
folder, when it is larger than ``ingestion.max_file_bytes``, or when it lies in one of the
excluded folders (``ingestion.unsplit_folders: exclude``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

LABELLED_COLUMNS = ("path", "relative_path", "label", "split", "size", "modified")


def normalize_label(folder_name: str) -> str:
    """The label of a class folder: every whitespace character becomes ``_``.

    Mirrors :func:`label_column`, for code outside Spark (e.g. the upload command).
    """
    return "".join("_" if ch.isspace() else ch for ch in folder_name.strip())


def label_column(folder: F.Column) -> F.Column:
    # Java's \s matches ASCII whitespace only; (?U) makes it Unicode-aware like str.isspace.
    return F.regexp_replace(F.trim(folder), r"(?U)\s", "_")


def image_extension_pattern(extensions: list[str]) -> str:
    """A Java regex matching paths that end with one of ``extensions``, in any case.

    A regex rather than ``lower(...) isin``: Spark 4's ``lower`` goes through ICU, whose
    first use costs a fresh JVM a second of class initialisation, paid by every run for a
    handful of suffixes. ``\\Q...\\E`` quotes each
    suffix literally (a ``.`` is a dot); ``(?iu)`` folds case as ``str.lower`` does, like
    the up-front check in ``hooks.py``.
    """
    quoted = "|".join(r"\Q" + e.replace(r"\E", r"\E\\E\Q") + r"\E" for e in extensions)
    return rf"(?iu)(?:{quoted})$"


def depth() -> F.Column:
    """How many parts ``relative_path`` has (2: ``<Class>/<photo>``, 3: ``<Split>/<Class>/<photo>``)."""
    return F.size(F.split(F.col("relative_path"), "/"))


def skip_reason(extensions: list[str], max_file_bytes: int | None, excluded_folders: list[str]) -> F.Column:
    """Why a listed file is not a photo of the run (null: it is one), before sampling."""
    reason = (
        F.when(F.col("skipped").isNotNull(), F.col("skipped"))
        .when(~F.col("relative_path").rlike(image_extension_pattern(extensions)), "not an image (extension)")
        .when(depth() < 2, "no class folder (directly under the root)")
    )
    if max_file_bytes is not None:
        limit = int(max_file_bytes)
        reason = reason.when(F.col("size") > limit, f"larger than ingestion.max_file_bytes ({limit} bytes)")
    if excluded_folders:
        excluded = (depth() == 2) & F.split("relative_path", "/")[0].isin(excluded_folders)
        reason = reason.when(excluded, "outside the split folders (ingestion.unsplit_folders: exclude)")
    return reason


def labelled(photos: DataFrame) -> DataFrame:
    """``LABELLED_COLUMNS`` of listing rows that are photos: ``label`` and ``split`` from their folders."""
    parts = F.split(F.col("relative_path"), "/")
    return photos.select(
        "path",
        "relative_path",
        label_column(F.element_at(parts, -2)).alias("label"),
        F.when(F.size(parts) >= 3, F.element_at(parts, 1)).otherwise(F.lit(None).cast("string")).alias("split"),
        "size",
        "modified",
    )
