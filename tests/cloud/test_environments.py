"""The `s3` and `emr` environments put every persisted dataset of the default pipeline on S3."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from fruits_kedro.pipeline_registry import register_pipelines
from fruits_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

# Kept on the machine that runs Spark in the `s3` environment (read several times by PCA).
LOCAL_IN_S3_ENV = {"image_features", "previous_image_features"}


def _catalog(env: str, **runtime_params) -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, runtime_params=runtime_params, **CONFIG_LOADER_ARGS)
    return loader["catalog"]


def _locations(catalog: dict) -> dict[str, str]:
    names = register_pipelines()["__default__"].datasets()
    return {n: str(c.get("filepath") or c.get("path")) for n, c in catalog.items()
            if n in names and (c.get("filepath") or c.get("path"))}


@pytest.mark.parametrize("env, local_ok", [("s3", LOCAL_IN_S3_ENV), ("emr", set())])
def test_default_pipeline_reads_and_writes_s3(env, local_ok):
    locations = _locations(_catalog(env, bucket="bkt", prefix="a/b"))
    off_s3 = {n: p for n, p in locations.items() if not p.startswith("s3://bkt/a/b/") and n not in local_ok}
    assert not off_s3, f"conf/{env}/catalog.yml must override these base entries: {off_s3}"
    assert locations["raw_image_files"] == "s3://bkt/a/b/raw"
    assert locations["image_features_pca_csv"] == "s3://bkt/a/b/features/image_features_pca.csv"


def test_prefix_defaults_to_fruits():
    assert _locations(_catalog("s3", bucket="bkt"))["raw_image_files"] == "s3://bkt/fruits/raw"


def test_no_spark_connector_needed_on_s3():
    """spark.SparkDataset would need s3a (hadoop-aws): nothing on S3 may use it."""
    for env in ("s3", "emr"):
        for name, config in _catalog(env, bucket="bkt").items():
            location = str(config.get("filepath") or config.get("path") or "")
            assert not (location.startswith("s3") and config["type"].startswith("spark.")), (env, name)


def test_emr_spark_settings_suit_a_cluster():
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env="emr", **CONFIG_LOADER_ARGS)
    conf = loader["spark"]
    assert "spark.master" not in conf  # YARN, from spark-submit
    assert conf["spark.dynamicAllocation.enabled"] is True
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] is True
    assert {"spark.executor.memory", "spark.executor.cores", "spark.executor.memoryOverhead"} <= set(conf)
