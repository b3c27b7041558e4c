"""MLflow tracking (kedro-mlflow, the [mlflow] extra): each kedro run read back through
``mlflow.MlflowClient``, its figures equal to the run's JSON reports."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from fruits_kedro import tracking
from fruits_kedro.tracking import metric_name
from tests.conftest import make_project_copy, run_kedro
from tests.extras import requires_mlflow
from tests.outputs import current_model


def _client():
    import mlflow

    return mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _run_of(project: Path):
    """The MLflow run of the kedro run made in ``project`` (kedro-mlflow tags it with the path)."""
    client = _client()
    experiment = client.get_experiment_by_name("fruits_kedro")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.project_path = '{project}'")
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


def _current(project: Path, name: str) -> dict:
    current = json.loads((project / "data/current_outputs.json").read_text())
    return json.loads((project / "data" / current["outputs"][name]).read_text())


def _artifacts(run, folder: str) -> set[str]:
    return {Path(entry.path).name for entry in _client().list_artifacts(run.info.run_id, folder)}


@requires_mlflow
def test_a_run_records_its_parameters_and_the_figures_of_its_reports(default_run):
    import mlflow

    assert mlflow.active_run() is None  # ended with the kedro run: a later one opens its own
    run = _run_of(default_run)
    metrics, params = run.data.metrics, run.data.params
    report = _current(default_run, "08_reporting/feature_extraction_report.json")
    for key in ("listed", "featurized", "reused", "rejected", "skipped"):
        assert metrics[f"photos_{key}"] == report[key], key
    variance = _current(default_run, "08_reporting/pca_explained_variance.json")
    assert metrics["pca_k"] == variance["k"]
    assert metrics["pca_explained_variance"] == pytest.approx(variance["explained_variance_at_k"])
    nodes = {"label_images", "extract_features", "merge_with_previous_features", "fit_pca", "export_pca_csv"}
    assert {f"node_seconds.{node}" for node in nodes} <= set(metrics)
    # Flattened, as given to the run (backbone's by the test's runtime parameters).
    assert params["backbone.input_size"] == "64" and params["backbone.weights"] == "None"
    assert params["dimensionality_reduction.variance_threshold"] == "0.95"
    assert run.info.status == "FINISHED" and run.info.run_name == "__default__"
    assert _artifacts(run, "plots") == {"pca_scree_plot.png"}


@requires_mlflow
def test_an_evaluation_records_each_feature_set_its_plots_and_the_classifier(generated_evaluation):
    run = _run_of(generated_evaluation)
    sets = json.loads((generated_evaluation / "data/08_reporting/evaluation_metrics.json").read_text())["feature_sets"]
    evaluated = [name for name, entry in sets.items() if entry["status"] == "evaluated"]
    assert evaluated == ["mobilenet_v2", "mobilenet_v2@onnx_int8", "orb"]
    for name in evaluated:
        logged = metric_name(name)  # mobilenet_v2/onnx_int8
        for metric, field in (("accuracy", "accuracy"), ("macro_f1", "macro_f1"), ("k", "n_features")):
            assert run.data.metrics[f"{logged}.{metric}"] == pytest.approx(sets[name][field]), (name, metric)
        assert run.data.metrics[f"{logged}.images_per_second"] == pytest.approx(sets[name]["images_per_second"])
    assert _artifacts(run, "plots") == {
        "evaluation_confusion_matrix.png",
        "evaluation_feature_sets.png",
        "evaluation_frontier.png",
        "evaluation_projection_2d.png",
    }
    assert _artifacts(run, "model") == {"classifier_export.npz", "classifier_settings.json"}
    exported = Path(_client().download_artifacts(run.info.run_id, "model/classifier_export.npz"))
    assert exported.read_bytes() == current_model(generated_evaluation, "classifier_export.npz").read_bytes()


@requires_mlflow
def test_a_mistyped_setting_opens_no_mlflow_run(generated_sample, tmp_path, monkeypatch):
    import mlflow

    from fruits_kedro.params import ParameterError

    project = make_project_copy(tmp_path / "project")
    with pytest.raises(ParameterError):
        run_kedro(project, monkeypatch, images_root=str(generated_sample), backbone={"name": "no_such_backbone"})
    assert mlflow.active_run() is None
    experiment = _client().get_experiment_by_name("fruits_kedro")
    assert not _client().search_runs([experiment.experiment_id], f"tags.project_path = '{project}'")


def test_without_the_extra_a_run_says_so_in_one_line(monkeypatch, caplog):
    monkeypatch.setattr(tracking, "tracking_available", lambda: False)
    hooks = tracking.TrackingHooks()
    with caplog.at_level(logging.INFO, logger="fruits_kedro.tracking"):
        hooks.before_pipeline_run()
        hooks.after_dataset_saved("pca_explained_variance", {"k": 3, "explained_variance_at_k": 0.96})
        hooks.after_pipeline_run()
    assert [r.getMessage() for r in caplog.records] == [
        'MLflow tracking is off: the [mlflow] extra is not installed (pip install -e ".[mlflow]").'
    ]


@requires_mlflow
def test_mlflow_sends_no_telemetry_even_when_imported_before_the_projects_settings():
    """kedro-mlflow's commands import MLflow before Kedro reads settings.py, and MLflow's
    telemetry takes DO_NOT_TRACK=1 for consent (it waits for "true")."""
    import subprocess
    import sys

    # MLflow turns its telemetry off by itself under CI or pytest: a plain shell's environment.
    opt_outs = {"MLFLOW_DISABLE_TELEMETRY", "PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "CIRCLECI", "GITLAB_CI"}
    opt_outs |= {"JENKINS_URL", "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE"}
    opt_outs |= {"TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID"}
    env = {name: value for name, value in os.environ.items() if name not in opt_outs} | {"DO_NOT_TRACK": "1"}
    code = """
import mlflow.telemetry.client as client
before = client.get_telemetry_client() is not None
import fruits_kedro.settings
print(before, client.get_telemetry_client() is not None)
"""
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert answer.stdout.split() == ["True", "False"]


def test_the_local_store_is_at_the_projects_root_from_any_folder(tmp_path, monkeypatch):
    project = make_project_copy(tmp_path / "project")
    (project / "notebooks").mkdir(exist_ok=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(project / "notebooks")  # where a notebook's kernel runs
    assert tracking.tracking_uri() == f"sqlite:///{project.resolve()}/mlruns/mlflow.db"
    assert tracking.artifact_location() == str(project.resolve() / "mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    assert tracking.tracking_uri() == "https://mlflow.example.org" and tracking.artifact_location() is None


def test_figures_come_from_the_reports_that_have_them():
    assert tracking.run_metrics("pca_explained_variance", {"k": 7, "explained_variance_at_k": 0.951}) == {
        "pca_k": 7.0,
        "pca_explained_variance": 0.951,
    }
    evaluation = {
        "feature_sets": {
            "vgg16": {"status": "skipped", "reason": "no weights"},
            "orb": {"status": "evaluated", "accuracy": 0.3, "macro_f1": 0.29, "n_features": 100}
            | {"images_per_second": 45},
        }
    }
    assert tracking.run_metrics("evaluation_metrics", evaluation) == {
        "orb.accuracy": 0.3,
        "orb.macro_f1": 0.29,
        "orb.k": 100.0,
        "orb.images_per_second": 45.0,
    }
    assert tracking.run_metrics("image_features_pca", object()) == {}


def test_the_emr_environment_puts_artifacts_on_s3_and_keeps_the_rest_of_base(monkeypatch):
    from kedro.config import OmegaConfigLoader

    from fruits_kedro.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(PROJECT_ROOT)
    conf = str(PROJECT_ROOT / "conf")
    emr = OmegaConfigLoader(conf, env="emr", runtime_params={"bucket": "bkt", "prefix": "p"}, **CONFIG_LOADER_ARGS)
    local = OmegaConfigLoader(conf, env="local", **CONFIG_LOADER_ARGS)
    assert emr["mlflow"]["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] == (
        "s3://bkt/p/mlruns"
    )
    assert emr["mlflow"]["tracking"]["params"] == local["mlflow"]["tracking"]["params"]  # merged, not replaced
    assert emr["mlflow"]["tracking"]["params"]["dict_params"]["flatten"] is True
    assert local["mlflow"]["server"]["mlflow_tracking_uri"] == f"sqlite:///{PROJECT_ROOT.resolve()}/mlruns/mlflow.db"
