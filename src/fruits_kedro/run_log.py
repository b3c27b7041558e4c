"""The project's log file, ``logs/info.log``, as in Kedro's project template.

Attached by a hook once the project's path is known (Kedro's logging configuration may only
name handlers of ``logging`` and ``kedro.logging``, which cannot make the folder), so that a
copy of the project, or an EMR container, without ``logs/`` gets one.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

logger = logging.getLogger(__name__)

LOG_FILE = Path("logs") / "info.log"
FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class RunLogHandler(RotatingFileHandler):
    """Kedro's template file handler: INFO and above, 10 MB per file, 20 files kept."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=10 * 1024 * 1024, backupCount=20, encoding="utf-8", delay=True)
        self.setLevel(logging.INFO)
        self.setFormatter(logging.Formatter(FORMAT))


def attach(project_path: Path | str) -> Path | None:
    """Log to ``<project>/logs/info.log`` from now on (replacing an earlier project's file).

    A project folder that cannot be written to gets no log file, and a warning, not a failure.
    """
    path = (Path(project_path) / LOG_FILE).resolve()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, RunLogHandler)]:
        if handler.baseFilename == str(path):
            return path
        detach(handler)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RunLogHandler(path)
    except OSError as exc:
        logger.warning("No log file: cannot create %s (%s)", path, exc)
        return None
    root.addHandler(handler)
    return path


def detach(handler: logging.Handler | None = None) -> None:
    """Stop logging to the file (every project's, if no handler is named) and close it."""
    root = logging.getLogger()
    for attached in [h for h in root.handlers if isinstance(h, RunLogHandler)]:
        if handler is None or attached is handler:
            root.removeHandler(attached)
            attached.close()
