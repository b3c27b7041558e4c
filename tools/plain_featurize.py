"""What a user would write instead of the pipeline: a plain script on one machine.

OpenCV decodes each photo (EXIF orientation applied, RGB, resized as the project's decoder
does), ONNX Runtime runs the project's own exported backbone (the same bytes the pipeline
broadcasts), one process per core with one thread each, and the features are saved as one
``.npy`` with the paths beside it (``<out>.paths.txt``). ``make bench`` times it, model
loading included, as the reference the whole ``kedro run`` is measured against.

    python -m tools.plain_featurize data/01_raw/fruits /tmp/features.npy --processes 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from pathlib import Path

import numpy as np

EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))


def decode(path: Path, size: int) -> np.ndarray:
    """A photo as (size, size, 3) RGB uint8: bilinear when enlarging, area when shrinking."""
    import cv2

    bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a decodable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] == (size, size):
        return rgb
    shrinking = rgb.shape[0] * rgb.shape[1] > size * size
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _featurize_chunk(job: tuple[bytes, list[str], int, int]) -> np.ndarray:
    import onnxruntime as ort

    model, paths, size, batch_size = job
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(paths), batch_size):
        pixels = np.stack([decode(Path(p), size) for p in paths[start : start + batch_size]])
        out.append(session.run(None, {name: pixels})[0])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def featurize(
    root: Path,
    backbone_name: str = "mobilenet_v2",
    input_size: int | None = None,
    weights: str | None = "imagenet",
    processes: int | None = None,
    batch_size: int = 2,
) -> tuple[list[Path], np.ndarray]:
    """(the photos under ``root``, sorted; their features), ``processes`` at a time."""
    from fruits_kedro.inference.onnx_export import inference_payload
    from fruits_kedro.inference.registry import get_backbone, resolve_input_size

    backbone = get_backbone(backbone_name)
    size = resolve_input_size(backbone, input_size)
    model = inference_payload(backbone, size, weights, "onnx")
    photos = list_photos(root)
    processes = max(1, min(processes or os.cpu_count() or 1, len(photos) or 1))
    chunks = [[str(p) for p in part] for part in np.array_split(np.array(photos, dtype=object), processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_featurize_chunk, [(model, chunk, size, batch_size) for chunk in chunks if chunk])
    return photos, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("output", type=Path, help="features .npy (paths in <output>.paths.txt)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--weights", default="imagenet", help="imagenet | path | none")
    parser.add_argument("--processes", type=int, default=None, help="default: one per core")
    parser.add_argument("--batch-size", type=int, default=2, help="images per inference call (the run's on a CPU)")
    args = parser.parse_args(argv)
    weights = None if str(args.weights).lower() in ("none", "null") else args.weights
    photos, features = featurize(args.root, args.backbone, args.input_size, weights, args.processes, args.batch_size)
    np.save(args.output, features)
    Path(f"{args.output}.paths.txt").write_text("".join(f"{p}\n" for p in photos))


if __name__ == "__main__":
    main()
