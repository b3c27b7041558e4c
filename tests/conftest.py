"""Shared fixtures: one local SparkSession for the whole run, the generated sample, and the
real Fruits-360 photos beside the checkout when they are there."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
SHARED_PHOTOS = SHARED / "fruits360-sample"
SHARED_KERAS_HOME = SHARED / "keras"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras reads KERAS_HOME once, when first imported: set it before any test imports keras.
if "KERAS_HOME" not in os.environ and (SHARED_KERAS_HOME / "models").is_dir():
    os.environ["KERAS_HOME"] = str(SHARED_KERAS_HOME)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# Converted ONNX models are cached per test session (kedro runs in subprocesses included):
# a stale model from an older checkout can never hide an export bug.
os.environ["FRUITS_KEDRO_CACHE_DIR"] = tempfile.mkdtemp(prefix="fruits_kedro_test_cache_")
# Every kedro run of the tests (the [mlflow] extra installed) records into one MLflow store of
# this session: never the developer's server, and its tables are made once, not per project.
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.environ['FRUITS_KEDRO_CACHE_DIR']}/mlruns/mlflow.db"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """In the workers of `make test` (pytest-xdist, a file at a time), the files with whole runs
    come first: none is left running alone at the end."""
    if not hasattr(config, "workerinput"):
        return
    heavy = {item.path for item in items if {"slow", "real_photos"} & {m.name for m in item.iter_markers()}}
    items.sort(key=lambda item: item.path not in heavy)


@pytest.fixture(scope="session", autouse=True)
def _remove_the_test_cache():
    yield
    shutil.rmtree(os.environ["FRUITS_KEDRO_CACHE_DIR"], ignore_errors=True)


def project_spark_conf(env: str = "local") -> dict:
    conf: dict = {}
    for folder in ("base", env):
        path = PROJECT_ROOT / "conf" / folder / "spark.yml"
        if path.exists():
            conf.update(yaml.safe_load(path.read_text()) or {})
    return conf


@pytest.fixture(scope="session")
def spark():
    from fruits_kedro import spark as spark_module

    spark_module.configure(project_spark_conf())
    session = spark_module.get_spark()
    yield session


@pytest.fixture(scope="session")
def generated_sample(tmp_path_factory) -> Path:
    """The sample a fresh machine generates (no ../shared needed)."""
    from tools.sample import generate_sample

    root = tmp_path_factory.mktemp("generated") / "fruits"
    generate_sample(root)
    return root


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    if not SHARED_PHOTOS.is_dir():
        pytest.skip("../shared/fruits360-sample is not beside this checkout")
    return SHARED_PHOTOS


@pytest.fixture(scope="session")
def imagenet_keras_home() -> Path:
    cache = Path(os.environ.get("KERAS_HOME", "")) / "models"
    if not any(cache.glob("mobilenet_v2_weights_*_no_top.h5")):
        pytest.skip("no MobileNetV2 ImageNet weights in $KERAS_HOME/models (../shared/keras)")
    return cache


def make_project_copy(destination: Path) -> Path:
    """A throw-away copy of the project's configuration, so runs never touch ./data."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("credentials.yml"))
    shutil.copytree(
        PROJECT_ROOT / "notebooks", destination / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copy(PROJECT_ROOT / ".telemetry", destination / ".telemetry")
    (destination / "src").mkdir(exist_ok=True)  # Kedro wants it; the package itself is installed
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "08_reporting"):
        (destination / "data" / layer).mkdir(parents=True, exist_ok=True)
    return destination


def run_kedro(project: Path, monkeypatch, pipeline: str | None = None, env: str | None = None, **runtime_params):
    """Run a pipeline in-process, inside ``project``, as ``kedro run`` would."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime_params) as session:
        return session.run(pipeline_name=pipeline)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, generated_sample) -> Path:
    """``kedro run`` (``__default__``) on the generated sample, in a copy of the project."""
    project = make_project_copy(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_kedro(
            project,
            monkeypatch,
            images_root=str(generated_sample),
            backbone={"weights": None, "input_size": 64},  # random weights: structure, not quality
        )
    return project


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 (and EMR) API: moto in server mode on a free loopback port, for the session."""
    from tests.s3_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint) -> str:
    """AWS_* variables pointing boto3, s3fs and Spark's workers at the loopback server."""
    from tests.s3_server import set_aws_environment

    set_aws_environment(monkeypatch, s3_endpoint)
    return s3_endpoint


@pytest.fixture(scope="session")
def generated_evaluation(tmp_path_factory, generated_sample) -> Path:
    """``kedro run --pipelines evaluation`` on the generated sample (random weights)."""
    from tests.pipelines.evaluation.runs import generated_evaluation_run

    return generated_evaluation_run(tmp_path_factory, generated_sample)


@pytest.fixture(scope="session")
def real_evaluation(tmp_path_factory, shared_photos, imagenet_keras_home) -> Path:
    """``kedro run --pipelines evaluation`` on the real photos with ImageNet MobileNetV2."""
    from tests.pipelines.evaluation.runs import real_evaluation_run

    return real_evaluation_run(tmp_path_factory, shared_photos)
