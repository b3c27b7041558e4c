"""The benchmark's photos: N real, distinct JPEG files in the Fruits-360 layout.

The shared sample of real photos (``../shared/fruits360-sample``, where it is beside the
checkout) once, the generated sample (``tools.sample``) once, then simple augmentations of
them all (the 8 flips and quarter turns, small brightness shifts, 92% crops resized back),
each written as its own JPEG: no file is a copy or a link of another (files whose bytes
repeat are skipped). Made once in a cache folder and reused; a set of N is the first N of
that order, hard-linked into its own folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.plain_featurize import list_photos

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_PHOTOS = PROJECT_ROOT.parent / "shared" / "fruits360-sample"
DEFAULT_CACHE = Path(os.environ.get("FRUITS_KEDRO_CACHE_DIR", Path.home() / ".cache" / "fruits_kedro")) / "bench_photos"
JPEG_QUALITY = 95
BRIGHTNESS = (0, 12, -12)
CROPS = (None, "centre", "top_left", "bottom_right")
VERSION = "1"


@dataclass
class PhotoSet:
    root: Path
    real: int  # original photos of the shared sample
    generated: int  # original photos of the generated sample
    augmented: int  # augmentations of either

    def describe(self) -> str:
        parts = []
        if self.real:
            parts.append(f"{self.real} real photos (../shared/fruits360-sample)")
        if self.generated:
            parts.append(f"{self.generated} generated (tools.sample)")
        if self.augmented:
            parts.append(f"{self.augmented} augmentations of them (flips, quarter turns, brightness +-12, 92% crops)")
        return ", ".join(parts) + "; every file a distinct JPEG"


def _variants() -> list[tuple[int, int, str | None]]:
    """(dihedral transform, brightness shift, crop) of each augmentation, the original first."""
    return [(t, b, c) for c in CROPS for b in BRIGHTNESS for t in range(8)]


def augment(rgb: np.ndarray, transform: int, brightness: int, crop: str | None) -> np.ndarray:
    import cv2

    out = np.rot90(rgb, transform % 4)
    if transform >= 4:
        out = out[:, ::-1]
    if crop:
        h, w = out.shape[:2]
        ch, cw = int(h * 0.92), int(w * 0.92)
        top, left = {"centre": ((h - ch) // 2, (w - cw) // 2), "top_left": (0, 0), "bottom_right": (h - ch, w - cw)}[
            crop
        ]
        out = cv2.resize(np.ascontiguousarray(out[top : top + ch, left : left + cw]), (w, h), cv2.INTER_LINEAR)
    if brightness:
        out = np.clip(out.astype(np.int16) + brightness, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def _sources(cache: Path) -> list[tuple[Path, Path, str]]:
    """(root, photo, kind) of every original, real ones first."""
    generated = cache / "generated" / "fruits"
    if not (generated / ".sample_complete").exists():
        from tools.sample import generate_sample

        generate_sample(generated)
    out = []
    if SHARED_PHOTOS.is_dir():
        out += [(SHARED_PHOTOS, p, "real") for p in list_photos(SHARED_PHOTOS)]
    out += [(generated, p, "generated") for p in list_photos(generated)]
    return out


def photo_set(n: int, cache: Path = DEFAULT_CACHE) -> PhotoSet:
    """A folder of exactly ``n`` distinct photos (made once, then reused)."""
    import cv2

    pool = cache / f"pool_v{VERSION}"
    sources = _sources(cache)
    counts = {"real": 0, "generated": 0, "augmented": 0}
    chosen: list[Path] = []
    seen: set[str] = set()
    for variant_index, variant in enumerate(_variants()):
        for root, photo, kind in sources:
            if len(chosen) == n:
                break
            relative = photo.relative_to(root)
            target = pool / kind / relative.parent / f"v{variant_index:03d}_{relative.stem}.jpg"
            if not target.exists():
                if variant_index == 0:
                    data = photo.read_bytes()
                else:
                    bgr = cv2.imdecode(np.fromfile(photo, dtype=np.uint8), cv2.IMREAD_COLOR)
                    ok, encoded = cv2.imencode(".jpg", augment(bgr, *variant), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                    data = encoded.tobytes()
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.with_suffix(".tmp")
                temp.write_bytes(data)
                temp.replace(target)
            digest = hashlib.sha1(target.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            chosen.append(target)
            counts["augmented" if variant_index else kind] += 1
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} distinct photos can be made, {n} asked for")
    root = cache / f"set_v{VERSION}_{n}" / "fruits"
    if not (root.parent / ".complete").exists():
        shutil.rmtree(root.parent, ignore_errors=True)
        for target in chosen:
            relative = target.relative_to(pool).parts[1:]  # <kind>/<Split>/<Class>/<name>
            link = root.joinpath(*relative[:-1]) / f"{target.parent.parent.parent.name}_{relative[-1]}"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(target, link)
        (root.parent / ".complete").write_text(f"{n}\n")
    return PhotoSet(root, counts["real"], counts["generated"], counts["augmented"])
