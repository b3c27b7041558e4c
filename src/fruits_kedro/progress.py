"""Progress of a node's Spark work, logged from the driver about every 10 s.

Spark's status tracker (on the driver, in local and cluster mode alike) says how many tasks of
the running stages are done. That moves only as whole tasks end, and a featurization runs one
long task per core: nothing Spark carries to the driver moves within a task (PySpark's
accumulators arrive at task end; the JVM's task metrics, sent with executor heartbeats, see the
listing's rows go to Python at once and the features never, as Python writes them). So the
featurization's tasks report the images they have done after each Arrow batch, in a UDP
datagram to the driver (:class:`ImageCounter`): fire and forget, so a lost one only delays a
count and a blocked port only leaves the task-based count. The ingestion announces how many
images the run featurizes. A node whose Spark work ends within the first interval logs
nothing. Where the console is a terminal, a progress bar follows the same counts between the
lines (rich's, on the console Kedro's log handler writes to).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0
BAR_REFRESH_SECONDS = 0.5
FEATURIZING_LABEL = "featurizing"
_expected_images: int | None = None
_rejected_count: Callable[[], int] | None = None
_image_counter: ImageCounter | None = None


def expect_images(n: int) -> None:
    """The number of images the coming featurization covers (the ingestion knows it)."""
    global _expected_images
    _expected_images = int(n)


def count_rejected(count: Callable[[], int]) -> None:
    """How the coming featurization counts the images it rejected so far."""
    global _rejected_count
    _rejected_count = count


def count_images(spark_context) -> ImageSender | None:
    """Start counting the images the coming featurization's tasks report; return what the
    tasks report with (None where the driver cannot listen: the count then follows tasks)."""
    global _image_counter
    if _image_counter is not None:
        _image_counter.close()
    _image_counter = ImageCounter.for_driver(spark_context)
    return _image_counter.sender if _image_counter is not None else None


def for_node(context, name: str, featurizes: bool) -> SparkProgress:
    """The progress of a node; a featurizing node's lines count images and rejections and
    are labelled with what the user waits for, whichever node's save runs the network."""
    if featurizes:
        return SparkProgress(
            context,
            FEATURIZING_LABEL,
            INTERVAL_SECONDS,
            images=_expected_images,
            rejected=_rejected_count,
            images_done=_images_reported,
        )
    return SparkProgress(context, name, INTERVAL_SECONDS)


def _images_reported() -> int:
    """The current featurization's count (it may start after the node's reporter)."""
    counter = _image_counter
    return counter.done() if counter is not None else 0


@dataclass(frozen=True)
class ImageSender:
    """Where a featurization's tasks send their counts (pickled into the tasks' function)."""

    family: int
    address: tuple
    token: str

    def for_task(self) -> TaskImageReport:
        from pyspark import TaskContext

        context = TaskContext.get()
        return TaskImageReport(self, context.partitionId() if context is not None else -1)


class TaskImageReport:
    """One task's count of the images it has featurized, sent after each batch."""

    def __init__(self, sender: ImageSender, partition: int) -> None:
        self._sender = sender
        self._partition = partition
        self._done = 0
        try:
            self._socket: socket.socket | None = socket.socket(sender.family, socket.SOCK_DGRAM)
        except OSError:
            self._socket = None

    def add(self, images: int) -> None:
        """``images`` more are done: tell the driver this task's total so far."""
        self._done += images
        if self._socket is None:
            return
        message = f"{self._sender.token} {self._partition} {self._done}".encode()
        try:
            self._socket.sendto(message, self._sender.address)
        except OSError:  # progress only: the task's work never depends on it
            pass

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()


class ImageCounter:
    """The driver's end: images done per partition, as the tasks report them.

    Each datagram holds a task's running total, so a lost or late one is made good by the next,
    and a retried task (counting from 0 again) never makes the sum go back or overshoot. One
    counter at a time per driver: the next featurization's closes it (its saves may come
    after the node that made it, so no node's end can tell).
    """

    def __init__(self, family: int, bind_address: tuple) -> None:
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._socket.bind(bind_address)
        self._socket.settimeout(0.5)
        self.sender = ImageSender(family, self._socket.getsockname(), uuid.uuid4().hex)
        self._by_partition: dict[int, int] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="image-count-receiver", daemon=True)
        self._thread.start()

    @classmethod
    def for_driver(cls, spark_context) -> ImageCounter | None:
        """A counter on the address the executors reach the driver at (loopback for a local
        master), or None where none can be bound."""
        master = str(spark_context.master)
        host = "127.0.0.1" if master.startswith("local") else spark_context.getConf().get("spark.driver.host")
        try:
            family, _, _, _, address = socket.getaddrinfo(host, 0, 0, socket.SOCK_DGRAM)[0]
            return cls(family, address)
        except (OSError, TypeError) as exc:
            logger.debug("No image count from the tasks (%s): progress follows whole tasks", exc)
            return None

    def done(self) -> int:
        with self._lock:
            return sum(self._by_partition.values())

    def record(self, partition: int, done: int) -> None:
        with self._lock:
            self._by_partition[partition] = max(done, self._by_partition.get(partition, 0))

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._socket.close()

    def _receive(self) -> None:
        token = self.sender.token
        while not self._closed.is_set():
            try:
                message = self._socket.recv(256).decode("ascii", "replace").split()
            except TimeoutError:
                continue
            except OSError:
                return
            if len(message) == 3 and message[0] == token and message[1].lstrip("-").isdigit():
                if message[2].isdigit():
                    self.record(int(message[1]), int(message[2]))


class SparkProgress:
    """Logs ``<label>: images done of images (tasks done/total), rate, time left`` while
    Spark stages run (``<label>: tasks done/total, ...`` where the images are not known).

    Args:
        context: The SparkContext whose stages to follow.
        label: What the lines start with (the node's name, or what it does).
        interval: Seconds between lines.
        images: Images the work covers, if known (spread over equal tasks).
        rejected: A function giving the number of images rejected so far.
        images_done: A function giving the images the running tasks have done so far.
    """

    def __init__(
        self,
        context,
        label: str,
        interval: float = INTERVAL_SECONDS,
        images: int | None = None,
        rejected: Callable[[], int] | None = None,
        images_done: Callable[[], int] | None = None,
    ) -> None:
        self._tracker = context.statusTracker()
        self._label = label
        self._interval = interval
        self._images = images
        self._rejected = rejected
        self._images_done = images_done
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
        details = []
        if self._images and total:
            images_done = self.images_done(done, total)
            head = f"{self._label}: {images_done:,} of {self._images:,} images ({done}/{total} tasks)"
            details.append(f"{images_done / elapsed:.0f} images/s")
            fraction = images_done / self._images
        else:
            images_done = None
            head = f"{self._label}: {done}/{total} tasks"
            fraction = done / total if total else 0.0
        if self._rejected is not None:
            details.append(f"{self._rejected()} rejected")
        left = f"about {elapsed * (1 - fraction) / fraction:.0f} s left" if fraction else "first tasks running"
        if self._bar is not None:
            self._bar.show(done, total, self._images, images_done, ", ".join(details))
        return f"{', '.join([head, *details])}; {elapsed:.0f} s, {left}"

    def images_done(self, tasks_done: int, tasks: int) -> int:
        """What the tasks reported, or what the finished tasks stand for if that is more
        (equal partitions; a report may be lost), never more than the images."""
        from_tasks = round(self._images * tasks_done / tasks)
        reported = self._images_done() if self._images_done is not None else 0
        return min(self._images, max(reported, from_tasks))

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

    def show(self, done: int, total: int, images: int | None, images_done: int | None, extra: str) -> None:
        if images and images_done is not None:
            self._progress.update(self._task, completed=images_done, total=images, unit="images", extra=extra)
        else:
            self._progress.update(self._task, completed=done, total=total, unit="tasks", extra=extra)

    def close(self) -> None:
        self._progress.stop()
