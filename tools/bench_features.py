"""A synthetic ``image_features`` table of the full dataset's size, for timing the PCA and CSV.

The rows have the schema and the layout of the pipeline's ``image_features`` (the ids, a
``features`` array<float> of width d, ``feature_settings``; one Parquet part per partition of
about ``ingestion.images_per_partition`` rows, committed under a ``_SUCCESS`` manifest by
:class:`SparkParquetFsspecDataset`). The features are Gaussian with a power-law spectrum on
random axes, so that 95% of the variance takes a few hundred components, as real MobileNetV2
features do; the values never change a timing, their number and the k they give do.

    python -m tools.bench_features /tmp/features.parquet --n 71000 --d 1280
    python -m tools.bench_features /tmp/features.parquet --n 71000 --photos /tmp/photos

With ``--photos``, each row stands for a tiny file written there (same path, size and mtime, as a
local listing gives them), so that a run over that folder takes the rows for its photos' features.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPECTRUM_EXPONENT = 1.33  # variance of axis i ~ i**-1.33: 95% at ~300 of 1,280 axes
ROWS_PER_PART = 1024  # ingestion.images_per_partition's default
SEED = 17
TINY_PHOTO = b"\xff\xd8\xff\xd9"  # an empty JPEG: a file to list, never read (its features are given)
TINY_MTIME = 1_767_225_600  # 2026-01-01


def relative_path(i: int, classes: int) -> str:
    """Row ``i``'s photo under the images folder."""
    return f"{'Training' if i % 4 else 'Test'}/Class {i % classes:03d}/{i:07d}.jpg"


def write_tiny_photos(root: Path, n: int, classes: int = 141) -> Path:
    """The ``n`` files the rows of a table made with ``photos=root`` stand for."""
    for i in range(n):
        target = root / relative_path(i, classes)
        if i < classes * 4:
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(TINY_PHOTO)
        os.utime(target, (TINY_MTIME, TINY_MTIME))
    return root


def feature_table_schema():
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("path", T.StringType(), False),
            T.StructField("relative_path", T.StringType(), False),
            T.StructField("label", T.StringType(), True),
            T.StructField("split", T.StringType(), True),
            T.StructField("size", T.LongType(), False),
            T.StructField("modified", T.StringType(), True),
            T.StructField("features", T.ArrayType(T.FloatType()), True),
            T.StructField("feature_settings", T.StringType(), False),
        ]
    )


def synthetic_features(first_row: int, rows: int, axes: np.ndarray) -> np.ndarray:
    """Rows ``first_row .. first_row + rows - 1`` of the table's features (float32, rows x d)."""
    d = axes.shape[0]
    scale = np.arange(1, d + 1, dtype=np.float64) ** (-SPECTRUM_EXPONENT / 2)
    latent = np.random.default_rng([SEED, first_row]).standard_normal((rows, d))
    return (0.5 + (latent * scale) @ axes.T).astype(np.float32)


def random_axes(d: int) -> np.ndarray:
    """A fixed random orthogonal d x d matrix: the axes the variance lies along."""
    q, r = np.linalg.qr(np.random.default_rng(SEED).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _generate(axes: np.ndarray, n: int, classes: int, settings: str, photos: str | None):
    """mapInArrow function: the table's rows for the row ranges of the input batch."""
    root, size, modified = (photos, len(TINY_PHOTO), str(float(TINY_MTIME))) if photos else ("/synthetic", 5000, None)

    def generate(batches):
        import pyarrow as pa

        for batch in batches:
            for first in batch.column(0).to_pylist():
                rows = min(ROWS_PER_PART, n - first)
                ids = np.arange(first, first + rows)
                features = synthetic_features(first, rows, axes)
                offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * axes.shape[0])
                paths = [relative_path(int(i), classes) for i in ids]
                yield pa.RecordBatch.from_pydict(
                    {
                        "path": [f"{root}/{p}" for p in paths],
                        "relative_path": paths,
                        "label": [p.split("/")[1] for p in paths],
                        "split": [p.split("/", 1)[0] for p in paths],
                        "size": pa.array(np.full(rows, size, dtype=np.int64)),
                        "modified": [modified or "2026-01-01T00:00:00Z"] * rows,
                        "features": pa.ListArray.from_arrays(offsets, pa.array(features.ravel())),
                        "feature_settings": [settings] * rows,
                    }
                )

    return generate


def write_feature_table(
    path: Path,
    n: int = 71_000,
    d: int = 1280,
    classes: int = 141,
    settings: str | None = None,
    photos: Path | None = None,
) -> Path:
    """Save the synthetic table at ``path`` (a Parquet dataset folder) unless it is there;
    ``settings``: the rows' ``feature_settings`` (default: marked synthetic); ``photos``: a
    folder where the rows' tiny photos are written (default: rows of no file)."""
    from fruits_kedro.datasets import SparkParquetFsspecDataset
    from fruits_kedro.spark import get_spark

    dataset = SparkParquetFsspecDataset(filepath=str(path))
    if dataset.exists():
        return path
    if photos:
        write_tiny_photos(photos, n, classes)
    spark = get_spark()
    starts = list(range(0, n, ROWS_PER_PART))
    # One partition (hence one part file) per block of rows, as a featurization run writes them.
    frame = spark.createDataFrame(
        spark.sparkContext.parallelize([(s,) for s in starts], len(starts)), "first long"
    ).mapInArrow(
        _generate(
            random_axes(d),
            n,
            classes,
            settings or json.dumps({"synthetic": True, "d": d}),
            str(photos.resolve()) if photos else None,
        ),
        feature_table_schema(),
    )
    dataset.save(frame)
    return path


def configure_local_spark() -> None:
    """This process's Spark: the ``local`` environment's settings, without an event log."""
    import yaml

    from fruits_kedro import spark

    conf: dict = {}
    for env in ("base", "local"):
        path = PROJECT_ROOT / "conf" / env / "spark.yml"
        if path.exists():
            conf.update(yaml.safe_load(path.read_text()) or {})
    spark.configure({**conf, "spark.eventLog.enabled": False})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--n", type=int, default=71_000)
    parser.add_argument("--d", type=int, default=1280)
    parser.add_argument("--settings", default=None, help="the rows' feature_settings (default: marked synthetic)")
    parser.add_argument("--photos", type=Path, default=None, help="write the rows' tiny photos in this folder")
    args = parser.parse_args(argv)
    configure_local_spark()
    write_feature_table(args.path, args.n, args.d, settings=args.settings, photos=args.photos)
    print(f"{args.path}: {args.n} x {args.d}")


if __name__ == "__main__":
    main()
