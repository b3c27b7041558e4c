"""``kedro run`` (and ``fruits-kedro run``): a known error is one short message and exit code 1,
its traceback in logs/errors.log; any other error keeps its traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_project_copy

KEDRO = Path(sys.executable).parent / "kedro"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--params", "dimensionality_reduction.variance_threshold=1.5"],
            "dimensionality_reduction.variance_threshold",
        ),
        (["--params", "images_root=/nowhere/photos"], "Image folder not found: /nowhere/photos"),
        (["--pipelines", "no_such_pipeline"], "Failed to find the pipeline named 'no_such_pipeline'"),
        (["--env", "no_such_env"], "no_such_env"),
    ],
)
def test_a_known_error_is_one_short_message_and_its_traceback_is_logged(tmp_path, arguments, message):
    project = make_project_copy(tmp_path / "project")
    done = subprocess.run([str(KEDRO), "run", *arguments], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr and "╭" not in done.stderr
    lines = done.stderr.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    assert message in "\n".join(lines[start:]) and len(lines) - start <= 4
    assert "Traceback (most recent call last)" in (project / "logs" / "errors.log").read_text()


def test_verbose_shows_the_libraries_messages_a_run_hides_by_default(tmp_path, generated_sample):
    """The default's quietness is counted on a whole real run (tests/test_real_photos.py)."""
    project = make_project_copy(tmp_path / "project")
    arguments = ["run", "--verbose", "--pipelines", "ingestion", "--params", f"images_root={generated_sample}"]
    done = subprocess.run([str(KEDRO), *arguments], cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NativeCodeLoader" in done.stderr and "default log4j profile" in done.stderr
