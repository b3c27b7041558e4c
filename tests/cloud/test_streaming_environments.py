"""The `s3` and `emr` environments stream from the bucket's raw/ folder into the same output set
as their batch runs (the members name the batch outputs of that environment)."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from fruits_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT


def _catalog(env: str) -> dict:
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), env=env, runtime_params={"bucket": "bkt", "prefix": "a/b"}, **CONFIG_LOADER_ARGS
    )
    return loader["catalog"]


@pytest.mark.parametrize("env", ["s3", "emr"])
def test_the_stream_reads_raw_and_writes_the_batch_runs_output_set(env):
    catalog = _catalog(env)
    assert catalog["new_photos"]["path"] == "s3://bkt/a/b/raw"
    outputs = catalog["stream_outputs"]
    assert outputs["path"] == catalog["image_features"]["path"] == "s3://bkt/a/b"
    batch_outputs = {
        "features": "image_features",
        "rejected": "rejected_images",
        "pca": "image_features_pca",
        "pca_csv": "image_features_pca_csv",
        "pca_report": "pca_explained_variance",
    }
    for member, dataset in batch_outputs.items():
        assert f"s3://bkt/a/b/{outputs['members'][member]}" == catalog[dataset]["dataset"]["filepath"]


def test_the_checkpoint_is_local_without_an_s3_filesystem_and_in_the_bucket_on_emr():
    assert _catalog("s3")["stream_query"]["path"] == "data/04_feature/stream/s3_checkpoints/bkt/a/b"
    assert _catalog("emr")["stream_query"]["path"] == "s3://bkt/a/b/features/stream/checkpoint"
