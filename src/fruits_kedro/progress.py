"""Progress of a node's Spark work, logged from the driver about every 10 s.

Spark's status tracker (on the driver, in local and cluster mode alike) says how many tasks of
the running stages are done; the ingestion announces how many images the run featurizes, spread
over equal partitions, so tasks done convert to images done. A node whose Spark work ends within
the first interval logs nothing. Where the console is a terminal, a progress bar follows the
same counts between the lines (rich's, on the console Kedro's log handler writes to).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0
BAR_REFRESH_SECONDS = 0.5
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
        self._bar = None

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
        self._bar = _TerminalBar.on_a_terminal(self._label)
        tick = BAR_REFRESH_SECONDS if self._bar is not None else self._interval
        next_line = time.monotonic() + self._interval
        try:
            while not self._stop.wait(tick):
                try:
                    line = self.line()
                except Exception:  # noqa: BLE001 - a progress line must never break the run
                    logger.debug("No progress for %s", self._label, exc_info=True)
                    continue
                if line and time.monotonic() >= next_line:
                    logger.info(line)
                    next_line += self._interval
        finally:
            if self._bar is not None:
                self._bar.close()

    def line(self) -> str | None:
        """The progress line now, or None when no Spark stage has run yet."""
        self._poll()
        if not self._stages:
            return None
        done, total, elapsed = self._counts()
        parts, details = [f"{self._label}: {done}/{total} tasks"], []
        if self._images and total:
            images_done = round(self._images * done / total)
            parts.append(f"~{images_done:,} of {self._images:,} images")
            details.append(f"{images_done / elapsed:.0f} images/s")
        if self._rejected is not None:
            details.append(f"{self._rejected()} rejected")
        left = f"about {elapsed * (total - done) / done:.0f} s left" if done else "first tasks running"
        if self._bar is not None:
            self._bar.show(done, total, self._images, ", ".join(details))
        return f"{', '.join(parts + details)}; {elapsed:.0f} s, {left}"

    def _counts(self) -> tuple[int, int, float]:
        done = sum(d for d, _ in self._stages.values())
        total = sum(t for _, t in self._stages.values())
        return done, total, time.monotonic() - self._started

    def _poll(self) -> None:
        active = set(self._tracker.getActiveStageIds())
        for stage_id in active:
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                self._stages[stage_id] = (info.numCompletedTasks, info.numTasks)
        for stage_id, (_, total) in list(self._stages.items()):
            if stage_id not in active:  # finished since
                self._stages[stage_id] = (total, total)


class _TerminalBar:
    """A rich progress bar on the console of Kedro's log handler, so log lines print above it."""

    def __init__(self, label: str, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[extra]}"),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task(label, total=None, unit="", extra="")
        self._progress.start()

    @classmethod
    def on_a_terminal(cls, label: str) -> _TerminalBar | None:
        from rich import get_console

        console = get_console()
        return cls(label, console) if console.is_terminal and not console.is_dumb_terminal else None

    def show(self, done: int, total: int, images: int | None, extra: str) -> None:
        if images and total:
            self._progress.update(
                self._task, completed=round(images * done / total), total=images, unit="images", extra=extra
            )
        else:
            self._progress.update(self._task, completed=done, total=total, unit="tasks", extra=extra)

    def close(self) -> None:
        self._progress.stop()
