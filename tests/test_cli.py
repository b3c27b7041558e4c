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


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (
            ["--params", "image_root=/x"],
            "Error: Invalid parameters: image_root: not a known parameter; did you mean images_root?",
        ),
        (["--params", "images_root="], "Error: Invalid parameters: images_root = None: empty; give a folder"),
        (["--env", "s3"], "Error: Invalid parameters: bucket is not set, and the s3 environment needs it"),
        (
            ["--env", "s3", "--params", "bucket=Bad_Name!"],
            "Error: Invalid parameters: bucket = 'Bad_Name!': not a valid S3 bucket name",
        ),
    ],
)
def test_a_setting_mistake_is_one_line_before_spark(tmp_path, arguments, line):
    """A typo fails the run with one line naming the setting (not the default job, not a wall of
    interpolation or botocore errors); the traceback is in logs/errors.log."""
    project = make_project_copy(tmp_path / "project")
    done = subprocess.run([str(KEDRO), "run", *arguments], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.splitlines()[0], "(traceback: logs/errors.log)"]
    assert done.stderr.startswith(line), done.stderr
    assert "Traceback" not in done.stdout and not (project / "data" / "current_outputs.json").exists()


def test_verbose_shows_the_libraries_messages_a_run_hides_by_default(tmp_path, generated_sample):
    """The default's quietness is counted on a whole real run (tests/test_real_photos.py)."""
    project = make_project_copy(tmp_path / "project")
    arguments = ["run", "--verbose", "--pipelines", "ingestion", "--params", f"images_root={generated_sample}"]
    done = subprocess.run([str(KEDRO), *arguments], cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NativeCodeLoader" in done.stderr and "default log4j profile" in done.stderr


def test_ctrl_c_while_featurizing_is_one_line_and_leaves_the_current_outputs(tmp_path, generated_sample):
    import json
    import os
    import re
    import signal

    from fruits_kedro.datasets.output_set import MANIFEST_FORMAT

    project = make_project_copy(tmp_path / "project")
    earlier = project / "data" / "08_reporting" / "runs" / "earlier-run" / "pca_explained_variance.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"k": 3}')
    manifest = project / "data" / "current_outputs.json"
    member = "08_reporting/pca_explained_variance.json"
    current = {
        "format": MANIFEST_FORMAT,
        "run_id": "earlier-run",
        "outputs": {member: f"08_reporting/runs/earlier-run/{member.split('/')[1]}"},
    }
    manifest.write_text(json.dumps(current))
    before = manifest.read_bytes()

    run = subprocess.Popen(
        [str(KEDRO), "run", "--params", f"images_root={generated_sample},backbone.weights=null,backbone.input_size=64"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in run.stdout:
        seen.append(line)
        if "Saving data to image_features" in line:  # the CNN runs as the features are saved
            # Ctrl-C in a terminal reaches the whole process group: the JVM and Spark's Python workers too.
            os.killpg(run.pid, signal.SIGINT)
            break
    stdout, stderr = run.communicate(timeout=180)
    stdout = "".join(seen) + stdout

    assert run.returncode == 130, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) <= 2, stderr  # the JVM's own start-up notice may be the other one
    assert re.fullmatch(r"Interrupted: the current outputs are unchanged \(run \d{4}-\d\d-\d\dT[\d.]+Z\)", lines[-1])
    for trace in ("Traceback", "py4j", "Py4J", "java.lang", "at org.apache"):
        assert trace not in stdout + stderr
    assert manifest.read_bytes() == before and earlier.read_text() == '{"k": 3}'
    assert "KeyboardInterrupt" in (project / "logs" / "errors.log").read_text()


def test_pca_on_one_photo_is_one_line(tmp_path, monkeypatch, spark):
    """The PCA's data conditions (no photo, one, all identical) end the run with their reason alone."""
    from click.testing import CliRunner
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from fruits_kedro.cli import cli

    project = make_project_copy(tmp_path / "project")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    one_photo = spark.createDataFrame(
        [("a.jpg", "Apple", "Training", [1.0, 2.0])], "path string, label string, split string, features array<float>"
    )
    with KedroSession.create(project_path=project) as session:
        session.load_context().catalog["image_features"].save(one_photo)

    result = CliRunner().invoke(cli, ["run", "--pipeline", "dimensionality_reduction"])

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "Error: PCA needs at least 2 images: only 1 image has features (variance is undefined)",
        "(traceback: logs/errors.log)",
    ]
    assert "PCAUndefinedError" in (project / "logs" / "errors.log").read_text()
