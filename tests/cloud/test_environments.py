"""The `s3` and `emr` environments put every persisted dataset of the default pipeline on S3."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from fruits_kedro.pipeline_registry import register_pipelines
from fruits_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT


def _catalog(env: str, **runtime_params) -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, runtime_params=runtime_params, **CONFIG_LOADER_ARGS)
    return loader["catalog"]


def _stored(config: dict) -> dict:
    """The entry that stores the data: the wrapped one of an OutputSetDataset."""
    return config["dataset"] if isinstance(config.get("dataset"), dict) else config


def _locations(catalog: dict) -> dict[str, str]:
    names = register_pipelines()["__default__"].datasets()
    return {
        n: str(_stored(c).get("filepath") or _stored(c).get("path"))
        for n, c in catalog.items()
        if n in names and (_stored(c).get("filepath") or _stored(c).get("path"))
    }


@pytest.mark.parametrize("env", ["s3", "emr"])
def test_default_pipeline_reads_and_writes_s3(env):
    locations = _locations(_catalog(env, bucket="bkt", prefix="a/b"))
    off_s3 = {n: p for n, p in locations.items() if not p.startswith("s3://bkt/a/b/")}
    assert not off_s3, f"conf/{env}/catalog.yml must override these base entries: {off_s3}"
    assert locations["raw_image_files"] == "s3://bkt/a/b/raw"
    assert locations["image_features_pca_csv"] == "s3://bkt/a/b/features/image_features_pca.csv"


@pytest.mark.parametrize("env", ["local", "s3", "emr"])
def test_the_default_pipelines_outputs_are_one_set(env):
    """Every output of the default pipeline is replaced with the others, under one commit file."""
    catalog = _catalog(env, bucket="bkt")
    outputs = register_pipelines()["__default__"].all_outputs()
    persisted = {n for n in outputs if n in catalog and catalog[n]["type"] != "MemoryDataset"}
    assert persisted >= {"image_features", "image_features_pca", "image_features_pca_csv", "pca_explained_variance"}
    assert {catalog[n]["type"] for n in persisted} == {"fruits_kedro.datasets.OutputSetDataset"}
    assert len({catalog[n]["path"] for n in persisted}) == 1
    assert catalog["previous_image_features"]["dataset"]["filepath"] == catalog["image_features"]["dataset"]["filepath"]


@pytest.mark.parametrize("env", ["local", "s3", "emr"])
def test_the_classifiers_parts_are_one_set_of_their_own(env):
    """serve and predict read the model, its export and settings from one commit of the evaluation."""
    catalog = _catalog(env, bucket="bkt")
    parts = ("classifier_model", "classifier_export", "classifier_settings")
    assert {catalog[n]["type"] for n in parts} == {"fruits_kedro.datasets.OutputSetDataset"}
    (root,) = {catalog[n]["path"] for n in parts}
    assert root != catalog["image_features"]["path"]
    assert all(catalog[n]["dataset"]["filepath"].startswith(f"{root}/") for n in parts)


def test_prefix_defaults_to_fruits():
    assert _locations(_catalog("s3", bucket="bkt"))["raw_image_files"] == "s3://bkt/fruits/raw"


def test_no_spark_connector_needed_on_s3():
    """spark.SparkDataset would need s3a (hadoop-aws): nothing on S3 may use it."""
    for env in ("s3", "emr"):
        for name, entry in _catalog(env, bucket="bkt").items():
            config = _stored(entry)
            location = str(config.get("filepath") or config.get("path") or "")
            assert not (location.startswith("s3") and config["type"].startswith("spark.")), (env, name)


def test_s3_and_emr_write_the_same_layout():
    s3, emr = (_locations(_catalog(env, bucket="bkt")) for env in ("s3", "emr"))
    assert s3 == emr


def _spark(env: str, **runtime_params) -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, runtime_params=runtime_params, **CONFIG_LOADER_ARGS)
    return loader["spark"]


def test_the_s3_env_runs_on_the_cluster_named_by_spark_master():
    assert _spark("s3", bucket="bkt")["spark.master"] == "local[*,4]"  # task retries, as on a cluster
    assert _spark("s3", bucket="bkt", spark_master="spark://127.0.0.1:7077")["spark.master"] == "spark://127.0.0.1:7077"


def test_event_logs_go_to_a_local_folder_and_to_s3_on_emr():
    assert _spark("local")["spark.eventLog.enabled"] is True
    assert _spark("local")["spark.eventLog.dir"] == "logs/spark-events"
    assert _spark("emr", bucket="bkt", prefix="p")["spark.eventLog.dir"] == "s3://bkt/p/spark-events"


def test_emr_spark_settings_suit_a_cluster():
    conf = _spark("emr", bucket="bkt")
    assert conf["spark.master"] is None and conf["spark.driver.memory"] is None  # spark-submit's, on YARN
    assert conf["spark.dynamicAllocation.enabled"] is True
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] is True
    assert {"spark.executor.memory", "spark.executor.cores", "spark.executor.memoryOverhead"} <= set(conf)


@pytest.mark.parametrize("env", ["local", "s3", "emr"])
def test_an_environment_sets_only_the_spark_settings_that_differ_from_base(env):
    import yaml

    base = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "spark.yml").read_text())
    own = yaml.safe_load((PROJECT_ROOT / "conf" / env / "spark.yml").read_text())
    assert own, f"conf/{env}/spark.yml is empty: delete it instead"
    assert not {k for k, v in own.items() if k in base and base[k] == v}, "repeats conf/base/spark.yml"


@pytest.mark.parametrize("env", ["local", "s3", "emr"])
def test_every_catalog_entry_has_a_kedro_viz_layer(env):
    catalog = _catalog(env, bucket="bkt")
    missing = [
        name
        for name, entry in catalog.items()
        if not name.startswith("_") and entry["type"] != "MemoryDataset" and "layer" not in str(entry.get("metadata"))
    ]
    assert not missing, f"no kedro-viz layer in conf/{env}: {missing}"
