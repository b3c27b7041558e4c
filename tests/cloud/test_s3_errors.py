"""Clear errors, naming the bucket/key/setting, for what goes wrong with S3 in practice;
and weights read from S3."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.framework.hooks import hook_impl

from tests.conftest import make_project_copy, run_kedro
from tests.s3_server import forget_cached_s3_clients

pytestmark = pytest.mark.slow

RUN_PARAMS = {"backbone": {"weights": None, "input_size": 64}}  # nested: KedroSession does not split dots


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project_copy(tmp_path_factory.mktemp("s3_errors_project"))


def _run_s3(project, monkeypatch, bucket: str, prefix: str = "fruits"):
    return run_kedro(project, monkeypatch, env="s3", bucket=bucket, prefix=prefix, **RUN_PARAMS)


def test_missing_bucket(project, monkeypatch, aws_env):
    with pytest.raises(Exception, match=r"bucket 'no-such-bucket-run' does not exist"):
        _run_s3(project, monkeypatch, "no-such-bucket-run")


def test_empty_prefix(project, monkeypatch, bucket):
    with pytest.raises(Exception, match=rf"No files under s3://{bucket}/nothing-here/raw/.*fruits_kedro.cloud.upload"):
        _run_s3(project, monkeypatch, bucket, prefix="nothing-here")


def test_missing_credentials(project, monkeypatch, bucket):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    forget_cached_s3_clients()
    # The first S3 access names it: the outputs' run lock (s3://B/fruits/current_outputs.lock).
    with pytest.raises(Exception, match=rf"s3://{bucket}/fruits/\S+: no AWS credentials were found"):
        _run_s3(project, monkeypatch, bucket)


def test_missing_bucket_parameter_is_named(project, monkeypatch, aws_env):
    with pytest.raises(Exception, match="bucket is not set, and the s3 environment needs it"):
        run_kedro(project, monkeypatch, env="s3", **RUN_PARAMS)


def test_unreadable_weights_uri_is_named(bucket):
    from fruits_kedro.inference.registry import get_backbone
    from fruits_kedro.inference.weights import WeightsUnavailableError, load_weights

    uri = f"s3://{bucket}/models/missing.weights.h5"
    with pytest.raises(WeightsUnavailableError, match=rf"Cannot read weights {uri} \(setting 'backbone.weights'\)"):
        load_weights(get_backbone("mobilenet_v2"), 64, uri)


def test_weights_from_s3(bucket, tmp_path):
    import boto3

    from fruits_kedro.inference.registry import get_backbone
    from fruits_kedro.inference.weights import load_weights

    backbone = get_backbone("mobilenet_v2")
    model = backbone.build(32, weights=None)
    local = tmp_path / "mobilenet_v2_32.weights.h5"
    model.save_weights(str(local))
    boto3.session.Session().client("s3").upload_file(str(local), bucket, "models/mobilenet_v2_32.weights.h5")

    loaded = load_weights(backbone, 32, f"s3://{bucket}/models/mobilenet_v2_32.weights.h5")

    assert len(loaded) == len(model.get_weights())
    for got, expected in zip(loaded, model.get_weights()):
        np.testing.assert_array_equal(got, expected)


def test_the_onnx_model_of_s3_weights_is_cached_by_the_loaded_arrays(bucket, tmp_path, monkeypatch):
    # Weights at a URI have no file to hash before Keras loads them: the cached conversion is
    # found by a hash of the arrays, so a second run downloads them again but does not convert.
    import boto3

    from fruits_kedro.inference import onnx_export, registry, weights

    monkeypatch.setenv("FRUITS_KEDRO_CACHE_DIR", str(tmp_path / "cache"))
    backbone = registry.get_backbone("mobilenet_v2")
    local = tmp_path / "mobilenet_v2_32.weights.h5"
    backbone.build(32, weights=None).save_weights(str(local))
    boto3.session.Session().client("s3").upload_file(str(local), bucket, "models/cached.weights.h5")
    uri = f"s3://{bucket}/models/cached.weights.h5"
    first = onnx_export._cached_onnx_model(backbone, 32, uri)

    def no_conversion(*args):
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(onnx_export, "_export_onnx", no_conversion)
    weights._driver_weights.clear()
    assert onnx_export._cached_onnx_model(backbone, 32, uri) == first
    assert len(list((tmp_path / "cache" / "onnx").glob("mobilenet_v2_32_*.onnx"))) == 1


class _BucketVanishes:
    """Deletes the bucket, objects and all, just before the PCA node: the run is then half-way,
    its images read and featurized, none of its outputs written yet."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @hook_impl
    def before_node_run(self, node) -> None:
        if node.name == "fit_pca":
            import boto3

            s3 = boto3.resource("s3")
            s3.Bucket(self.bucket).objects.all().delete()
            s3.Bucket(self.bucket).delete()
            forget_cached_s3_clients()


def test_a_bucket_that_disappears_mid_run_is_named_and_nothing_is_left(project, monkeypatch, bucket, generated_sample):
    import boto3
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from fruits_kedro.cloud.upload import upload_folder

    upload_folder(generated_sample, bucket, "fruits", write=lambda _: None)
    monkeypatch.chdir(project)
    bootstrap_project(project)
    params = {
        "bucket": bucket,
        "prefix": "fruits",
        "backbone": {"weights": None, "input_size": 64},
        "ingestion": {"sample_per_class": 2},
    }
    with KedroSession.create(project_path=project, env="s3", runtime_params=params) as session:
        session._hook_manager.register(_BucketVanishes(bucket))  # a fault injected at a known point
        with pytest.raises(Exception, match=rf"bucket '{bucket}' does not exist"):
            session.run()
    names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert bucket not in names  # s3fs did not silently re-create it to write half the outputs
