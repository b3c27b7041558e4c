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


@pytest.fixture
def photos(bucket) -> str:
    """A bucket with photos under fruits/raw/ (and a folder marker, which is no photo)."""
    s3 = _client("s3")
    for key in ("fruits/raw/", "fruits/raw/Training/Apple/1.jpg", "fruits/raw/Test/Apple/2.jpg"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else b"\xff\xd8 jpeg")
    return bucket


def _args(bucket: str, dist_dir: Path, *extra: str):
    return emr.parse_args(["--bucket", bucket, "--prefix", "fruits", "--dist-dir", str(dist_dir), *extra])


def _client(service: str):
    return boto3.session.Session().client(service)


def _cluster_count() -> int:
    pages = _client("emr").get_paginator("list_clusters").paginate()
    return sum(len(page["Clusters"]) for page in pages)


def _keys(bucket: str) -> list[str]:
    return [o["Key"] for o in _client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


def _launch_capturing_the_request(bucket, dist_dir, *extra) -> tuple[dict, list[str], dict]:
    """Launch through a session that records the RunJobFlow parameters as sent to the server."""
    session = boto3.session.Session()
    sent: dict = {}
    session.events.register("provide-client-params.emr.RunJobFlow", lambda params, **_: sent.update(params))
    lines: list[str] = []
    result = emr.run(_args(bucket, dist_dir, "--no-wait", *extra), write=lines.append, session=session)
    return result, lines, sent


def test_new_cluster_and_step(photos, dist_dir):
    bucket = photos
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


def test_the_launch_says_where_what_it_costs_and_how_to_stop(photos, dist_dir):
    lines: list[str] = []
    result = emr.run(_args(photos, dist_dir, "--no-wait"), write=lines.append)

    cluster = result["cluster_id"]
    assert "Photos: 2 objects under s3://" + photos + "/fruits/raw/" in lines
    assert "Region: us-east-1" in lines
    assert (
        f"Console: https://us-east-1.console.aws.amazon.com/emr/home?region=us-east-1#/clusterDetails/{cluster}"
        in lines
    )
    # The defaults: 1 x m5.xlarge ($0.24) + 4 x m5.2xlarge ($0.48), EC2 + EMR.
    (cost,) = [line for line in lines if line.startswith("Cost: ")]
    assert cost.startswith("Cost: about $2.16 per hour (1 x m5.xlarge $0.240 + 4 x m5.2xlarge $0.480;")
    assert f"us-east-1 on-demand prices of {emr.PRICES_DATE}" in cost
    assert f"To stop: aws emr terminate-clusters --region us-east-1 --cluster-ids {cluster}" in lines
    assert not any(line.startswith("Idle timeout") for line in lines)  # it ends with its step


def test_the_event_log_prefix_is_made_before_the_cluster(photos, dist_dir):
    lines: list[str] = []
    emr.run(_args(photos, dist_dir, "--no-wait"), write=lines.append)
    assert "fruits/spark-events/" in _keys(photos)
    assert f"Event logs: s3://{photos}/fruits/spark-events/ (created)" in lines

    emr.run(_args(photos, dist_dir, "--no-wait"), write=lines.append)
    assert lines[-1].startswith("To stop: ")
    assert f"Event logs: s3://{photos}/fruits/spark-events/ (already there)" in lines


def test_no_photos_no_cluster(bucket, dist_dir, capsys):
    """An empty raw/ would fail the run only after the cluster's paid start-up."""
    clusters = _cluster_count()

    assert emr.main(["--bucket", bucket, "--prefix", "fruits", "--dist-dir", str(dist_dir), "--no-wait"]) == 1

    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"ERROR: No photos under s3://{bucket}/fruits/raw/")
    assert f"python -m fruits_kedro.cloud.upload PATH --bucket {bucket} --prefix fruits" in error
    assert _cluster_count() == clusters and _keys(bucket) == []


def test_a_missing_bootstrap_script_stops_the_launch_before_any_upload(photos, dist_dir, tmp_path):
    clusters, keys = _cluster_count(), _keys(photos)
    missing = tmp_path / "bootstrap.sh"
    with pytest.raises(emr.EmrError, match=f"Missing file to upload for bootstrap: {missing}"):
        emr.run(_args(photos, dist_dir, "--no-wait", "--bootstrap-script", str(missing)), write=lambda _: None)
    assert _cluster_count() == clusters and _keys(photos) == keys


def test_an_upload_that_fails_stops_the_launch_before_the_cluster(photos, dist_dir, aws_env, monkeypatch):
    """S3 goes away as the first file is uploaded (a proxy stops listening): the launcher
    names the file and its key, and creates no cluster."""
    from tests.fault_proxy import FaultProxy

    clusters = _cluster_count()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with FaultProxy.for_url(aws_env) as proxy:
        session = boto3.session.Session()
        session.events.register("before-call.s3.PutObject", lambda **_: proxy.set_mode("refuse"))
        args = _args(photos, dist_dir, "--no-wait", "--endpoint-url", proxy.url)
        with pytest.raises(emr.EmrError, match=f"Cannot upload .* to s3://{photos}/fruits/emr/artifacts/0.1.0/"):
            emr.run(args, write=lambda _: None, session=session)
        assert proxy.stats.faults
    assert _cluster_count() == clusters


def test_spot_core_nodes(photos, dist_dir):
    result, lines, _ = _launch_capturing_the_request(photos, dist_dir, "--spot")

    groups = _client("emr").list_instance_groups(ClusterId=result["cluster_id"])["InstanceGroups"]
    assert {g["InstanceGroupType"]: g["Market"] for g in groups} == {"MASTER": "ON_DEMAND", "CORE": "SPOT"}
    assert any(line.endswith("4 x m5.2xlarge on spot)") for line in lines)
    (cost,) = [line for line in lines if line.startswith("Cost: ")]
    assert "core nodes on spot cost less" in cost


def test_a_kept_cluster_terminates_when_idle(photos, dist_dir):
    _, lines, sent = _launch_capturing_the_request(photos, dist_dir, "--keep-alive")
    assert sent["AutoTerminationPolicy"] == {"IdleTimeout": emr.DEFAULT_IDLE_TIMEOUT_SECONDS}
    assert sent["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert "Idle timeout: the cluster terminates after 1 h idle (no step, no YARN application)." in lines

    _, lines, sent = _launch_capturing_the_request(photos, dist_dir, "--keep-alive", "--idle-timeout", "90m")
    assert sent["AutoTerminationPolicy"] == {"IdleTimeout": 5400}
    assert "Idle timeout: the cluster terminates after 90 min idle (no step, no YARN application)." in lines

    _, lines, sent = _launch_capturing_the_request(photos, dist_dir, "--keep-alive", "--idle-timeout", "0")
    assert "AutoTerminationPolicy" not in sent
    assert not any(line.startswith("Idle timeout") for line in lines)


def test_an_idle_timeout_emr_would_refuse_is_refused_here(capsys):
    with pytest.raises(SystemExit):
        emr.parse_args(["--bucket", "b", "--idle-timeout", "30s"])
    assert "EMR accepts an idle timeout of 60 s to 7 days, not 30s" in capsys.readouterr().err


def test_cluster_options_with_an_existing_cluster_are_refused(photos, dist_dir):
    for option in (["--spot"], ["--idle-timeout", "1h"]):
        with pytest.raises(emr.EmrError, match="apply to a new cluster"):
            emr.run(_args(photos, dist_dir, "--cluster-id", "j-ANY", *option), write=lambda _: None)


def test_the_cost_estimate_takes_given_prices_and_names_missing_ones(photos, dist_dir):
    _, lines, _ = _launch_capturing_the_request(
        photos, dist_dir, "--core-type", "r7i.2xlarge", "--core-count", "2", "--hourly-price", "r7i.2xlarge=0.66"
    )
    assert any(
        line.startswith("Cost: about $1.56 per hour (1 x m5.xlarge $0.240 + 2 x r7i.2xlarge $0.660;") for line in lines
    )

    _, lines, _ = _launch_capturing_the_request(photos, dist_dir, "--core-type", "r7i.2xlarge")
    assert any(
        line.startswith("Cost: no price for r7i.2xlarge in the table") and "--hourly-price r7i.2xlarge=USD" in line
        for line in lines
    )


def test_existing_cluster_gets_the_step_and_is_left_running(photos, dist_dir):
    bucket = photos
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
    assert step["Config"]["Args"][-2:] == ["--pipelines", "ingestion"]
    # moto leaves steps RUNNING: the launcher printed the state, then gave up waiting.
    assert result["state"] == "RUNNING"
    assert any(f"step {result['step_id']} on {existing}: RUNNING" in line for line in lines)
    # On timeout: how to follow the step, and how to stop it without stopping the shared cluster.
    step = result["step_id"]
    follow = f"aws emr describe-step --region us-east-1 --cluster-id {existing} --step-id {step}"
    assert any(line.startswith(f"Follow it: {follow} or https://us-east-1.console.aws") for line in lines)
    assert f"Stop it: aws emr cancel-steps --region us-east-1 --cluster-id {existing} --step-ids {step}" in lines


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
