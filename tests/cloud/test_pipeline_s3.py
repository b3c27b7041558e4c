"""The default pipeline in the `s3` environment, end to end against a real S3 API.

One module-scoped run (the expensive part) uploads the generated sample, runs the S3
pipeline on it and keeps the result, with the session's local run on the same images
(``default_run``, same parameters), for the checks.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import s3fs

from tests.conftest import make_project_copy, run_kedro
from tests.outputs import current_output, current_s3_output, current_s3_outputs
from tests.s3_server import forget_cached_s3_clients, new_bucket, set_aws_environment

pytestmark = pytest.mark.slow

# As default_run's: weights=None builds a seeded random network, so both runs compute the
# same features. (Nested: runtime parameters given to KedroSession are not split on dots.)
RUN_PARAMS = {"backbone": {"weights": None, "input_size": 64}}
PREFIX = "fruits"
MARKER = "raw/Training/Dir.jpg/"


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jpg") if not any(part.startswith(".") for part in p.relative_to(root).parts))


@pytest.fixture(scope="module")
def s3_module_env(s3_endpoint):
    with pytest.MonkeyPatch.context() as patch:
        set_aws_environment(patch, s3_endpoint)
        yield patch
    forget_cached_s3_clients()


@pytest.fixture(scope="module")
def runs(s3_module_env, generated_sample, default_run, tmp_path_factory):
    from fruits_kedro.cloud.upload import upload_folder

    bucket = new_bucket()
    upload_folder(generated_sample, bucket, PREFIX, write=lambda _: None)
    # A zero-byte "folder" object, as consoles make: no file to read, and not one gone.
    boto3.session.Session().client("s3").put_object(Bucket=bucket, Key=f"{PREFIX}/{MARKER}", Body=b"")
    local_project = default_run
    s3_project = make_project_copy(tmp_path_factory.mktemp("s3_project"))
    run_kedro(s3_project, s3_module_env, env="s3", bucket=bucket, prefix=PREFIX, **RUN_PARAMS)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    features = f"{bucket}/{PREFIX}/features"
    current = current_s3_outputs(fs, f"{bucket}/{PREFIX}")
    return {
        "current": current,
        "run_folder": f"{features}/runs/{current['run_id']}",
        "bucket": bucket,
        "fs": fs,
        "features": features,
        "local_csv": pd.read_csv(current_output(local_project, "04_feature/image_features_pca.csv")),
        "local_report": json.loads(
            current_output(local_project, "08_reporting/pca_explained_variance.json").read_text()
        ),
        "s3_csv": pd.read_csv(io.BytesIO(fs.cat_file(f"{features}/runs/{current['run_id']}/image_features_pca.csv"))),
        "s3_report": json.loads(fs.cat_file(f"{features}/runs/{current['run_id']}/pca_explained_variance.json")),
        "s3_project": s3_project,
        "local_project": local_project,
        "n_images": len(_image_files(generated_sample)),
    }


def test_a_folder_marker_is_skipped_as_one_not_reported_gone(runs):
    from fruits_kedro.datasets.image_folder import FOLDER_MARKER

    csv = runs["fs"].cat_file(f"{runs['run_folder']}/skipped_images.csv")
    skipped = pd.read_csv(io.BytesIO(csv), keep_default_na=False)
    assert dict(zip(skipped["path"], skipped["reason"])) == {f"s3://{runs['bucket']}/{PREFIX}/{MARKER}": FOLDER_MARKER}
    report_path = current_s3_output(runs["fs"], f"{runs['bucket']}/{PREFIX}", "reports/feature_extraction_report.json")
    report = json.loads(runs["fs"].cat_file(report_path))
    assert (report["rejected"], report["skipped_by_reason"]) == (0, {FOLDER_MARKER: 1})


def _by_relative_path(frame: pd.DataFrame, root_marker: str) -> pd.DataFrame:
    """Index rows by the path below the image root: local and S3 paths differ only above it."""
    keyed = frame.assign(key=frame["path"].str.split(root_marker, n=1).str[1])
    return keyed.set_index("key").sort_index()


def test_every_output_is_in_the_bucket_under_the_runs_id(runs):
    """current_outputs.json names one run's folder for every output of the run."""
    assert all(f"/runs/{runs['current']['run_id']}/" in p for p in runs["current"]["outputs"].values())
    assert len(runs["current"]["outputs"]) == 9
    names = {p.rsplit("/", 1)[-1] for p in runs["fs"].ls(runs["run_folder"])}
    assert {
        "image_features_pca.csv",
        "image_features_pca.parquet",
        "pca_explained_variance.json",
        "pca_scree_plot.png",
        "rejected_images.parquet",
        "rejected_images.csv",
        "skipped_images.csv",
    } <= names
    parquet = f"{runs['run_folder']}/image_features_pca.parquet"
    manifest = json.loads(runs["fs"].cat_file(f"{parquet}/_SUCCESS"))
    assert manifest["rows"] == runs["n_images"]
    assert not runs["fs"].exists(f"{parquet}/_temporary")


def test_csv_has_one_row_per_image_and_the_local_layout(runs):
    s3_csv, report = runs["s3_csv"], runs["s3_report"]
    assert len(s3_csv) == runs["n_images"] == len(runs["local_csv"])
    pcs = [f"pc_{i + 1}" for i in range(report["k"])]
    assert list(s3_csv.columns) == ["path", "label", "split", *pcs, "run_id"]
    assert list(s3_csv.columns) == list(runs["local_csv"].columns)
    assert s3_csv["path"].str.startswith(f"s3://{runs['bucket']}/{PREFIX}/raw/").all()
    assert sorted(s3_csv["label"].unique()) == sorted(runs["local_csv"]["label"].unique())
    assert report["n_images"] == runs["n_images"]


def _cnn_features(table) -> pd.DataFrame:
    return table.to_pandas().set_index("relative_path").sort_index()


def test_features_match_a_local_run_on_the_same_images(runs):
    """The CNN features computed from the S3 copies equal those from the local files."""
    features = current_s3_output(
        runs["fs"], f"{runs['bucket']}/{PREFIX}", "features/intermediate/image_features.parquet"
    )
    on_s3 = pq.read_table(features, filesystem=runs["fs"])
    s3_rows = _cnn_features(on_s3)
    local_rows = _cnn_features(
        pq.read_table(current_output(runs["local_project"], "04_feature/image_features.parquet"))
    )
    assert list(s3_rows.index) == list(local_rows.index) and len(s3_rows) == runs["n_images"]
    assert (s3_rows[["label", "split"]] == local_rows[["label", "split"]]).all().all()
    s3_features, local_features = np.stack(s3_rows["features"]), np.stack(local_rows["features"])
    # TensorFlow's thread scheduling moves the last float32 bits (~1e-7 relative) between runs.
    np.testing.assert_allclose(s3_features, local_features, rtol=1e-5, atol=1e-5 * np.abs(local_features).max())


def test_pca_spectrum_matches_a_local_run(runs):
    """Same features (to float32 noise), same spectrum and k. Eigenvalues are stable under such
    noise; the axes of nearly equal eigenvalues are not, so scores are compared via the CNN
    features above, not pc by pc."""
    s3_report, local_report = runs["s3_report"], runs["local_report"]
    assert s3_report["k"] == local_report["k"]
    np.testing.assert_allclose(
        s3_report["explained_variance"], local_report["explained_variance"], rtol=1e-4, atol=1e-9
    )
    s3_rows = _by_relative_path(runs["s3_csv"], f"/{PREFIX}/raw/")
    local_rows = _by_relative_path(runs["local_csv"], "/fruits/")
    assert list(s3_rows.index) == list(local_rows.index)
    assert [c for c in s3_rows.columns if c.startswith("pc_")] == [c for c in local_rows.columns if c.startswith("pc_")]


def test_no_output_of_the_s3_env_is_on_the_driver_s_disk(runs):
    """A cluster's executors do not share the driver's disk: nothing may be left there."""
    assert not [p for p in (runs["s3_project"] / "data").rglob("*") if p.is_file()]
