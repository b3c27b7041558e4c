"""Progress of a node's Spark work, logged from the driver about every 10 s.

Spark's status tracker (on the driver, in local and cluster mode alike) says how many tasks of
the running stages are done; the ingestion announces how many images the run featurizes, spread
over equal partitions, so tasks done convert to images done. A node whose Spark work ends within
the first interval logs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0
_expected_images: int | None = None
_rejected_count: Callable[[], int] | None = None


def expect_images(n: int) -> None:
    """The number of images the coming featurization covers (the ingestion knows it)."""
    global _expected_images
    _expected_images = int(n)


def count_rejected(count: Callable[[], int]) -> None:
    """How the coming featurization counts the images it rejected so far."""
    global _rejected_count
    _rejected_count = count


def for_node(context, name: str, featurizes: bool) -> SparkProgress:
    """The progress of a node; a featurizing node's lines also count images and rejections."""
    if featurizes:
        return SparkProgress(context, name, INTERVAL_SECONDS, images=_expected_images, rejected=_rejected_count)
    return SparkProgress(context, name, INTERVAL_SECONDS)


class SparkProgress:
    """Logs ``<label>: tasks done/total (~images), rate, time left`` while Spark stages run.

    Args:
        context: The SparkContext whose stages to follow.
        label: What the lines start with (the node's name).
        interval: Seconds between lines.
        images: Images the work covers, if known (spread over equal tasks).
        rejected: A function giving the number of images rejected so far.
    """

    def __init__(
        self,
        context,
        label: str,
        interval: float = INTERVAL_SECONDS,
        images: int | None = None,
        rejected: Callable[[], int] | None = None,
    ) -> None:
        self._tracker = context.statusTracker()
        self._label = label
        self._interval = interval
        self._images = images
        self._rejected = rejected
        self._stages: dict[int, tuple[int, int]] = {}  # stage id -> (tasks done, tasks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{label}", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> SparkProgress:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                line = self.line()
            except Exception:  # noqa: BLE001 - a progress line must never break the run
                logger.debug("No progress for %s", self._label, exc_info=True)
                continue
            if line:
                logger.info(line)

    def line(self) -> str | None:
        """The progress line now, or None when no Spark stage has run yet."""
        active = set(self._tracker.getActiveStageIds())
        for stage_id in active:
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                self._stages[stage_id] = (info.numCompletedTasks, info.numTasks)
        for stage_id, (_, total) in list(self._stages.items()):
            if stage_id not in active:  # finished since
                self._stages[stage_id] = (total, total)
        if not self._stages:
            return None
        done = sum(d for d, _ in self._stages.values())
        total = sum(t for _, t in self._stages.values())
        elapsed = time.monotonic() - self._started
        parts = [f"{self._label}: {done}/{total} tasks"]
        if self._images and total:
            images_done = round(self._images * done / total)
            parts.append(f"~{images_done:,} of {self._images:,} images, {images_done / elapsed:.0f} images/s")
        if self._rejected is not None:
            parts.append(f"{self._rejected()} rejected")
        left = f"about {elapsed * (total - done) / done:.0f} s left" if done else "first tasks running"
        return f"{', '.join(parts)}; {elapsed:.0f} s, {left}"
