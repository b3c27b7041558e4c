"""``fruits-kedro``: ``run`` (the default, kedro run's options) and ``predict`` subcommands."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import make_project_copy

SCRIPT = Path(sys.executable).parent / "fruits-kedro"


def test_kedro_run_options_without_a_subcommand_are_a_run(tmp_path):
    project = make_project_copy(tmp_path / "project")
    for command in ([str(SCRIPT), "--pipelines", "no_such_pipeline"], [str(SCRIPT), "run", "--pipelines", "no_such"]):
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        assert "Failed to find the pipeline named" in done.stdout + done.stderr


def test_predict_is_a_subcommand_with_its_own_options(tmp_path):
    done = subprocess.run([str(SCRIPT), "predict", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: fruits-kedro predict") and "--top" in done.stdout
