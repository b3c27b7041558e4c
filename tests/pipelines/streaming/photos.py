"""Photos that land one after the other in a stream's folder: real Fruits-360 photos when they
are beside the checkout, else the generated sample's."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import SHARED_PHOTOS

STREAM_PARAMS = {"backbone": {"weights": None, "input_size": 32}}  # random weights: structure, not quality


def photo_pool(generated_sample: Path, classes: int = 4, per_class: int = 10) -> list[tuple[str, Path]]:
    """(relative path, source file) of ``classes`` x ``per_class`` Training photos, interleaved by class."""
    root = SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else generated_sample
    folders = sorted(p for p in (root / "Training").iterdir() if p.is_dir())[:classes]
    lists = [sorted(folder.glob("*.jpg"))[:per_class] for folder in folders]
    pool = []
    for i in range(per_class):
        pool += [(f"Training/{files[i].parent.name}/{files[i].name}", files[i]) for files in lists if i < len(files)]
    return pool


class Landing:
    """Copies photos of the pool into ``folder`` as if they arrived, in order."""

    def __init__(self, pool: list[tuple[str, Path]], folder: Path) -> None:
        self.pool, self.folder, self.landed = pool, folder, []

    def land(self, n: int) -> list[str]:
        batch = self.pool[len(self.landed) : len(self.landed) + n]
        assert len(batch) == n, "the pool has run out of photos"
        for relative, source in batch:
            target = self.folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}.landing"  # hidden while it is written
            shutil.copyfile(source, temp)
            temp.rename(target)
            self.landed.append(str(target))
        return [str(self.folder / relative) for relative, _ in batch]
