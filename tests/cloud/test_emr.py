"""The EMR launcher against moto's S3 and EMR APIs (real HTTP calls through boto3)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import boto3
import pytest

from fruits_kedro.cloud import emr, emr_entrypoint

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dist_dir(tmp_path) -> Path:
    """What `kedro package` leaves in dist/: the wheel (its content does not matter to the
    launcher) and the configuration archive, laid out as Kedro makes it (conf/<env>/...)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "fruits_kedro-0.1.0-py3-none-any.whl").write_bytes(b"PK fake wheel")
    with tarfile.open(dist / "conf-fruits_kedro.tar.gz", "w:gz") as archive:
        archive.add(
            PROJECT_ROOT / "conf", arcname="conf", filter=lambda m: None if m.name.startswith("conf/local/") else m
        )
    return dist


def _args(bucket: str, dist_dir: Path, *extra: str):
    return emr.parse_args(["--bucket", bucket, "--prefix", "fruits", "--dist-dir", str(dist_dir), *extra])


def _client(service: str):
    return boto3.session.Session().client(service)


def test_new_cluster_and_step(bucket, dist_dir):
    lines: list[str] = []
    result = emr.run(
        _args(bucket, dist_dir, "--no-wait", "--core-count", "2", "--params", "ingestion.sample_per_class=5"),
        write=lines.append,
    )

    prefix = "fruits/emr/artifacts/0.1.0/"
    keys = {o["Key"] for o in _client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert keys == {
        prefix + n
        for n in (
            "fruits_kedro-0.1.0-py3-none-any.whl",
            "conf-fruits_kedro.tar.gz",
            "emr_entrypoint.py",
            "bootstrap.sh",
        )
    }
    client = _client("emr")
    cluster = client.describe_cluster(ClusterId=result["cluster_id"])["Cluster"]
    assert cluster["ReleaseLabel"].startswith("emr-7.")
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
    assert cluster["AutoTerminate"] is True  # created for this run only
    bootstrap = client.list_bootstrap_actions(ClusterId=result["cluster_id"])["BootstrapActions"][0]
    assert bootstrap["ScriptPath"] == f"s3://{bucket}/{prefix}bootstrap.sh"
    assert bootstrap["Args"] == [f"s3://{bucket}/{prefix}fruits_kedro-0.1.0-py3-none-any.whl"]

    step = client.describe_step(ClusterId=result["cluster_id"], StepId=result["step_id"])["Step"]
    args = step["Config"]["Args"]
    assert step["Config"]["Jar"] == "command-runner.jar"
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    assert args[:5] == ["spark-submit", "--deploy-mode", "cluster", "--driver-memory", "8g"]
    assert "spark.pyspark.python=/usr/bin/python3.11" in args
    entry = args.index(f"s3://{bucket}/{prefix}emr_entrypoint.py")
    assert args[entry + 1 :] == [
        "--conf-source",
        f"s3://{bucket}/{prefix}conf-fruits_kedro.tar.gz",
        "--env",
        "emr",
        "--params",
        "bucket=" + bucket + ",prefix=fruits,ingestion.sample_per_class=5",
    ]
    assert any(line.startswith(f"Created cluster {result['cluster_id']}") for line in lines)


def test_existing_cluster_gets_the_step_and_is_left_running(bucket, dist_dir):
    client = _client("emr")
    existing = client.run_job_flow(
        Name="shared",
        ReleaseLabel="emr-7.5.0",
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
    )["JobFlowId"]
    lines: list[str] = []

    result = emr.run(
        _args(
            bucket,
            dist_dir,
            "--cluster-id",
            existing,
            "--poll-seconds",
            "0",
            "--timeout-seconds",
            "0",
            "--pipeline",
            "ingestion",
        ),
        write=lines.append,
    )

    assert result["cluster_id"] == existing and not result["created"]
    assert len(client.list_clusters()["Clusters"]) >= 1
    step = client.describe_step(ClusterId=existing, StepId=result["step_id"])["Step"]
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["Config"]["Args"][-2:] == ["--pipeline", "ingestion"]
    # moto leaves steps RUNNING: the launcher printed the state, then gave up waiting.
    assert result["state"] == "RUNNING"
    assert any(f"step {result['step_id']} on {existing}: RUNNING" in line for line in lines)


def test_missing_package_says_to_run_kedro_package(bucket, tmp_path):
    with pytest.raises(emr.EmrError, match="kedro package"):
        emr.run(_args(bucket, tmp_path, "--no-wait"), write=lambda _: None)


def test_missing_bucket_is_named(aws_env, dist_dir, capsys):
    assert emr.main(["--bucket", "no-such-bucket-emr", "--dist-dir", str(dist_dir), "--no-wait"]) == 1
    assert "no-such-bucket-emr" in capsys.readouterr().err


def test_entrypoint_downloads_the_conf_archive(bucket, dist_dir, tmp_path):
    _client("s3").upload_file(str(dist_dir / "conf-fruits_kedro.tar.gz"), bucket, "a/conf-fruits_kedro.tar.gz")
    source, rest = emr_entrypoint.split_conf_source(
        ["--conf-source", f"s3://{bucket}/a/conf-fruits_kedro.tar.gz", "--env", "emr", "--params", "bucket=b"]
    )
    assert rest == ["--env", "emr", "--params", "bucket=b"]

    local = emr_entrypoint.localise(source, str(tmp_path))

    with tarfile.open(local) as archive:
        assert "conf/emr/catalog.yml" in archive.getnames()
    assert emr_entrypoint.split_conf_source(["--conf-source=x.tar.gz"]) == ("x.tar.gz", [])


def test_entrypoint_names_an_unreadable_archive(bucket, tmp_path):
    with pytest.raises(SystemExit, match=f"s3://{bucket}/missing/conf.tar.gz"):
        emr_entrypoint.localise(f"s3://{bucket}/missing/conf.tar.gz", str(tmp_path))


def test_a_conf_archive_with_credentials_is_never_uploaded(tmp_path):
    import tarfile

    from fruits_kedro.cloud.emr import EmrError, find_package_files

    (tmp_path / "fruits_kedro-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    secret = tmp_path / "aws_credentials"
    secret.write_text("[default]\naws_access_key_id = x\n")
    with tarfile.open(tmp_path / "conf-fruits_kedro.tar.gz", "w:gz") as archive:
        archive.add(secret, arcname="conf/s3/aws_credentials")
    with pytest.raises(EmrError, match=r"conf/s3/aws_credentials"):
        find_package_files(tmp_path)


def test_the_bootstrap_script_ships_in_the_wheel_the_cluster_installs(tmp_path):
    """The launcher runs from an installed wheel as well as from a checkout."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from tests.conftest import PROJECT_ROOT

    source = tmp_path / "source"  # a copy: a build leaves build/ and egg-info beside the sources
    shutil.copytree(PROJECT_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", "dist", "."]
    subprocess.run(command, cwd=source, check=True, capture_output=True, timeout=300)
    (wheel,) = (source / "dist").glob("fruits_kedro-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fruits_kedro/cloud/bootstrap.sh" in names
    assert emr.BOOTSTRAP_SCRIPT.read_bytes().startswith(b"#!/bin/bash")
