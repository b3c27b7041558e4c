"""What every benchmark shares: a throw-away copy of the project, and the environment its
subprocesses run in (this checkout's code first)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # a tool of this repository, run from it


def subprocess_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "KEDRO_DISABLE_TELEMETRY": "1"}


def make_project(destination: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("credentials*.yml"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    (destination / "src").mkdir()
    for layer in ("01_raw", "02_intermediate", "04_feature", "08_reporting"):
        (destination / "data" / layer).mkdir(parents=True)
    return destination
