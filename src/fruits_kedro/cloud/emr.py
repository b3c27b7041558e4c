"""Run the packaged project on AWS EMR as a Spark step.

    kedro package                                   # dist/*.whl + dist/conf-fruits_kedro.tar.gz
    python -m fruits_kedro.cloud.emr --bucket NAME --prefix fruits            # new cluster
    python -m fruits_kedro.cloud.emr --bucket NAME --cluster-id j-XXXXXXXX    # existing one

Steps: check what a run needs before anything is paid for (the package files, the photos under
``s3://BUCKET/PREFIX/raw/``, the bucket); upload the wheel, the configuration archive, the
bootstrap script and the spark-submit entry point to ``s3://BUCKET/PREFIX/emr/artifacts/<version>/``;
create the event-log prefix; create a cluster (Spark 3.5 on EMR 7, bootstrap installs the wheel
on every node; core nodes on spot with ``--spot``; an idle timeout with ``--keep-alive``) unless
``--cluster-id`` is given, and print its region, console link, cost per hour and the command
that stops it; add one ``spark-submit`` step running ``kedro run --env emr``; print the step's
state until it finishes. Everything goes through boto3 and the standard AWS chain.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fruits_kedro.cloud import emr_entrypoint

PACKAGE_NAME = "fruits_kedro"
# Package data, so the launcher finds it from an installed wheel as from a checkout.
BOOTSTRAP_SCRIPT = Path(str(resources.files("fruits_kedro.cloud") / "bootstrap.sh"))
# The Python that the bootstrap action installs on every node (EMR 7's own is 3.9, too old
# for Kedro 1.x and TensorFlow 2.21); Spark's driver and executors are pointed at it.
CLUSTER_PYTHON = "/usr/bin/python3.11"
TERMINAL_STEP_STATES = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
# A --keep-alive cluster terminates after this long idle: no step, no YARN application (EMR auto-termination).
DEFAULT_IDLE_TIMEOUT_SECONDS = 3600
IDLE_TIMEOUT_RANGE = (60, 7 * 24 * 3600)  # what EMR accepts
# USD per instance-hour, EC2 on-demand + EMR fee, us-east-1 list prices: a rough estimate only
# (other regions differ by a few %); --hourly-price TYPE=USD corrects or adds a type.
PRICES_DATE = "2025-01"
PRICES_REGION = "us-east-1"
HOURLY_PRICES = {
    "m5.xlarge": 0.192 + 0.048,
    "m5.2xlarge": 0.384 + 0.096,
    "m5.4xlarge": 0.768 + 0.192,
    "m6i.xlarge": 0.192 + 0.048,
    "m6i.2xlarge": 0.384 + 0.096,
    "m6i.4xlarge": 0.768 + 0.192,
    "c6i.2xlarge": 0.340 + 0.085,
    "c6i.4xlarge": 0.680 + 0.170,
}


class EmrError(RuntimeError):
    """The EMR run cannot be prepared or failed; the message names what to fix."""


@dataclass(frozen=True)
class Artifacts:
    """S3 URIs of what a step needs."""

    wheel: str
    conf_archive: str
    entrypoint: str
    bootstrap: str


# ---- local files ---------------------------------------------------------------------
def find_package_files(dist_dir: Path) -> tuple[Path, Path]:
    """The wheel and the configuration archive that ``kedro package`` wrote."""
    wheels = sorted(dist_dir.glob(f"{PACKAGE_NAME}-*.whl"), key=lambda p: p.stat().st_mtime)
    conf_archive = dist_dir / f"conf-{PACKAGE_NAME}.tar.gz"
    if not wheels or not conf_archive.is_file():
        raise EmrError(f"No {PACKAGE_NAME} wheel and/or {conf_archive.name} in {dist_dir}: run `kedro package` first.")
    refuse_secrets(conf_archive)
    return wheels[-1], conf_archive


def refuse_secrets(conf_archive: Path) -> None:
    """``kedro package`` archives ``conf/`` as it is on disk, git-ignored credential files
    included: never upload one of those to S3."""
    import tarfile

    with tarfile.open(conf_archive) as archive:
        secrets = [
            n for n in archive.getnames() if "credentials" in Path(n).name.lower() and not n.endswith(".example.yml")
        ]
    if secrets:
        raise EmrError(
            f"{conf_archive} holds credential files ({', '.join(secrets)}): move them out of conf/ "
            "and run `kedro package` again (the cluster uses its instance role)."
        )


def artifacts_prefix(prefix: str, wheel: Path) -> str:
    """``fruits/emr/artifacts/0.1.0/``: one folder per project version."""
    version = wheel.name.split("-")[1]
    return "/".join([p for p in prefix.strip("/").split("/") if p] + ["emr", "artifacts", version]) + "/"


def check_files(files: dict[str, Path]) -> None:
    """Every file to upload is there and readable, before anything is uploaded."""
    for name, path in files.items():
        if not path.is_file():
            raise EmrError(f"Missing file to upload for {name}: {path}")
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise EmrError(f"Cannot read {path} (the {name} to upload): {exc}") from exc


def upload_artifacts(s3, bucket: str, key_prefix: str, files: dict[str, Path]) -> dict[str, str]:
    """Upload each file under ``key_prefix``; return name -> ``s3://`` URI."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    check_files(files)
    uris = {}
    for name, path in files.items():
        key = key_prefix + path.name
        try:
            s3.upload_file(str(path), bucket, key)
        except (S3UploadFailedError, ClientError, BotoCoreError) as exc:
            raise EmrError(f"Cannot upload {path.name} to s3://{bucket}/{key}: {exc}") from exc
        uris[name] = f"s3://{bucket}/{key}"
    return uris


def key_prefix_of(prefix: str, *parts: str) -> str:
    """``fruits`` + ``raw`` -> ``fruits/raw/``."""
    return "/".join([p for p in prefix.strip("/").split("/") if p] + list(parts)) + "/"


def count_photos(s3, bucket: str, prefix: str) -> int:
    """Objects under ``PREFIX/raw/`` (folder markers aside); refuses when there are none,
    which would otherwise fail the run only after the cluster's paid start-up."""
    from botocore.exceptions import ClientError

    raw = key_prefix_of(prefix, "raw")
    count = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=raw):
            count += sum(1 for item in page.get("Contents", []) if not item["Key"].endswith("/"))
    except ClientError as exc:
        raise EmrError(f"Cannot list the photos under s3://{bucket}/{raw}: {exc}") from exc
    if not count:
        raise EmrError(
            f"No photos under s3://{bucket}/{raw}: upload them first "
            f"(python -m fruits_kedro.cloud.upload PATH --bucket {bucket} --prefix {prefix.strip('/')})."
        )
    return count


def ensure_event_log_prefix(s3, bucket: str, prefix: str) -> tuple[str, bool]:
    """Spark refuses to start when its event-log folder does not exist, and an S3 prefix
    exists only once an object is under it: put the folder marker. Returns (URI, created)."""
    from botocore.exceptions import ClientError

    key = key_prefix_of(prefix, "spark-events")
    uri = f"s3://{bucket}/{key}"
    try:
        if s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0):
            return uri, False
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    except ClientError as exc:
        raise EmrError(f"Cannot create the event-log prefix {uri}: {exc}") from exc
    return uri, True


# ---- what the user is told ------------------------------------------------------------------
def console_url(region: str, cluster_id: str) -> str:
    return f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{cluster_id}"


def stop_command(region: str, cluster_id: str, step_id: str | None = None) -> str:
    """Terminates a cluster created for this run; cancels only the step on a shared one."""
    if step_id is not None:
        return f"aws emr cancel-steps --region {region} --cluster-id {cluster_id} --step-ids {step_id}"
    return f"aws emr terminate-clusters --region {region} --cluster-ids {cluster_id}"


def follow_command(region: str, cluster_id: str, step_id: str) -> str:
    return f"aws emr describe-step --region {region} --cluster-id {cluster_id} --step-id {step_id}"


def hourly_cost(
    master_type: str, core_type: str, core_count: int, spot: bool, prices: dict[str, float] | None = None
) -> str:
    """One line: the cluster's on-demand cost per hour from the price table, or which price is missing."""
    table = {**HOURLY_PRICES, **(prices or {})}
    source = f"{PRICES_REGION} on-demand prices of {PRICES_DATE}, EC2 + EMR"
    missing = [t for t in dict.fromkeys((master_type, core_type)) if t not in table]
    if missing:
        return (
            f"Cost: no price for {', '.join(missing)} in the table ({source}): "
            f"give --hourly-price {missing[0]}=USD for an estimate."
        )
    total = table[master_type] + core_count * table[core_type]
    spot_note = "; the core nodes on spot cost less, as the spot market goes" if spot else ""
    return (
        f"Cost: about ${total:.2f} per hour (1 x {master_type} ${table[master_type]:.3f} + "
        f"{core_count} x {core_type} ${table[core_type]:.3f}; {source}; --hourly-price TYPE=USD to correct"
        f"{spot_note})."
    )


def parse_price(text: str) -> tuple[str, float]:
    """``m5.2xlarge=0.48`` -> (``m5.2xlarge``, 0.48)."""
    name, _, value = text.partition("=")
    try:
        price = float(value)
    except ValueError:
        price = -1.0
    if not name or price < 0:
        raise argparse.ArgumentTypeError(f"expected INSTANCE_TYPE=USD_PER_HOUR (e.g. m5.2xlarge=0.48), not {text!r}")
    return name, price


def parse_duration(text: str) -> int:
    """``3600``, ``90m``, ``2h`` or ``0`` (off) -> seconds, within what EMR accepts."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = int(float(number) * units[unit.lower()])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds, or a number with s/m/h/d (e.g. 1h), not {text!r}"
        ) from None
    low, high = IDLE_TIMEOUT_RANGE
    if seconds and not low <= seconds <= high:
        raise argparse.ArgumentTypeError(f"EMR accepts an idle timeout of {low} s to {high // 86400} days, not {text}")
    return seconds


def describe_seconds(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# ---- requests ----------------------------------------------------------------------------
def cluster_request(
    name: str,
    release_label: str,
    log_uri: str,
    bootstrap_uri: str,
    wheel_uri: str,
    master_type: str,
    core_type: str,
    core_count: int,
    keep_alive: bool,
    subnet_id: str | None = None,
    key_name: str | None = None,
    service_role: str = "EMR_DefaultRole",
    instance_profile: str = "EMR_EC2_DefaultRole",
    spot: bool = False,
    idle_timeout_seconds: int | None = None,
) -> dict:
    """Arguments of ``emr.run_job_flow``: Spark only, the wheel installed by a bootstrap action.

    ``spot``: core nodes on the spot market (the primary node, which holds the driver in client
    mode and YARN's resource manager, stays on demand). ``idle_timeout_seconds``: EMR's
    auto-termination policy, the cluster ends after that long idle (no step, no YARN application)."""
    core = {"Name": "core", "InstanceRole": "CORE", "InstanceType": core_type, "InstanceCount": core_count}
    if spot:
        core["Market"] = "SPOT"  # no BidPrice: pay the spot price, capped at the on-demand one
    instances: dict = {
        "InstanceGroups": [
            {"Name": "master", "InstanceRole": "MASTER", "InstanceType": master_type, "InstanceCount": 1},
            core,
        ],
        "KeepJobFlowAliveWhenNoSteps": keep_alive,
        "TerminationProtected": False,
    }
    if subnet_id:
        instances["Ec2SubnetId"] = subnet_id
    if key_name:
        instances["Ec2KeyName"] = key_name
    python_env = {"PYSPARK_PYTHON": CLUSTER_PYTHON, "PYSPARK_DRIVER_PYTHON": CLUSTER_PYTHON}
    request = {
        "Name": name,
        "ReleaseLabel": release_label,
        "LogUri": log_uri,
        "Applications": [{"Name": "Spark"}],
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": f"install {PACKAGE_NAME}",
                "ScriptBootstrapAction": {"Path": bootstrap_uri, "Args": [wheel_uri]},
            }
        ],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Configurations": [{"Classification": "export", "Properties": python_env}],
            }
        ],
        "JobFlowRole": instance_profile,
        "ServiceRole": service_role,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": "project", "Value": PACKAGE_NAME}],
    }
    if idle_timeout_seconds:
        request["AutoTerminationPolicy"] = {"IdleTimeout": idle_timeout_seconds}
    return request


def spark_submit_args(
    artifacts: Artifacts,
    bucket: str,
    prefix: str,
    deploy_mode: str = "cluster",
    driver_memory: str = "8g",
    pipeline: str | None = None,
    extra_params: str | None = None,
) -> list[str]:
    """``spark-submit`` command line of the step: the entry point runs ``kedro run --env emr``."""
    params = f"bucket={bucket},prefix={prefix}" + (f",{extra_params}" if extra_params else "")
    args = [
        "spark-submit",
        "--deploy-mode",
        deploy_mode,
        "--driver-memory",
        driver_memory,
        # Driver (cluster mode: inside YARN) and executors run the Python the bootstrap installed.
        "--conf",
        f"spark.pyspark.python={CLUSTER_PYTHON}",
        "--conf",
        f"spark.pyspark.driver.python={CLUSTER_PYTHON}",
        "--conf",
        f"spark.yarn.appMasterEnv.PYSPARK_PYTHON={CLUSTER_PYTHON}",
        artifacts.entrypoint,
        emr_entrypoint.CONF_SOURCE_OPTION,
        artifacts.conf_archive,
        "--env",
        "emr",
        "--params",
        params,
    ]
    if pipeline:
        args += ["--pipelines", pipeline]
    return args


def step_request(name: str, args: list[str], action_on_failure: str = "CONTINUE") -> dict:
    return {
        "Name": name,
        "ActionOnFailure": action_on_failure,
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
    }


# ---- AWS calls -----------------------------------------------------------------------------
def create_cluster(emr, request: dict) -> str:
    return emr.run_job_flow(**request)["JobFlowId"]


def add_step(emr, cluster_id: str, step: dict) -> str:
    from botocore.exceptions import ClientError

    try:
        return emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]
    except ClientError as exc:
        raise EmrError(f"Cannot add a step to cluster {cluster_id}: {exc}") from exc


def wait_for_step(
    emr,
    cluster_id: str,
    step_id: str,
    poll_seconds: float = 30.0,
    timeout_seconds: float | None = None,
    write: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    stop: str | None = None,
) -> str:
    """Print each state change of the step; return its final state (or the last one seen on
    timeout, then say how to follow the step and, with ``stop``, how to stop it)."""
    started = time.monotonic()
    last = None
    while True:
        status = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]
        state = status["State"]
        if state != last:
            write(f"{time.strftime('%H:%M:%S')} step {step_id} on {cluster_id}: {state}")
            last = state
        if state in TERMINAL_STEP_STATES:
            details = status.get("FailureDetails") or {}
            if state != "COMPLETED" and details:
                write(f"  reason: {details.get('Reason', '?')}  log: {details.get('LogFile', '?')}")
            return state
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            region = emr.meta.region_name
            write(f"Stopped waiting after {timeout_seconds:.0f} s; the step goes on (state {state}).")
            write(f"Follow it: {follow_command(region, cluster_id, step_id)} or {console_url(region, cluster_id)}")
            if stop:
                write(f"Stop it: {stop}")
            return state
        sleep(poll_seconds)


# ---- command line ----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fruits_kedro.cloud.emr", description=__doc__.split("\n\n")[0])
    p.add_argument("--bucket", required=True, help="bucket holding PREFIX/raw/ (images) and receiving the outputs")
    p.add_argument("--prefix", default="fruits", help="key prefix (default: fruits)")
    p.add_argument(
        "--cluster-id",
        help="use this running cluster instead of creating one (it must have been "
        "created with fruits_kedro/cloud/bootstrap.sh)",
    )
    p.add_argument(
        "--bootstrap-script",
        type=Path,
        default=BOOTSTRAP_SCRIPT,
        help="bootstrap action installing the wheel on every node (default: the package's bootstrap.sh)",
    )
    p.add_argument("--dist-dir", type=Path, default=Path("dist"), help="where `kedro package` wrote (default: dist)")
    p.add_argument("--release-label", default="emr-7.5.0", help="EMR release; 7.x ships Spark 3.5 (default: emr-7.5.0)")
    p.add_argument("--master-type", default="m5.xlarge")
    p.add_argument("--core-type", default="m5.2xlarge")
    p.add_argument("--core-count", type=int, default=4)
    p.add_argument("--subnet-id", help="EC2 subnet (default: the account's default VPC)")
    p.add_argument("--key-name", help="EC2 key pair, to SSH into the master")
    p.add_argument(
        "--keep-alive",
        action="store_true",
        help="keep a new cluster after the step (default: it terminates when the step ends); "
        f"it still terminates after --idle-timeout idle (default {DEFAULT_IDLE_TIMEOUT_SECONDS // 3600} h)",
    )
    p.add_argument(
        "--idle-timeout",
        type=parse_duration,
        default=None,
        help="EMR auto-termination of a new cluster after this long idle (no step, no YARN application): seconds, or "
        "e.g. 30m, 2h (default: 1h with --keep-alive, else none; 0: never)",
    )
    p.add_argument("--spot", action="store_true", help="core nodes on the spot market (the primary stays on demand)")
    p.add_argument(
        "--hourly-price",
        type=parse_price,
        action="append",
        default=[],
        metavar="TYPE=USD",
        help="price per instance-hour (EC2 + EMR) for the cost estimate, replacing the table's "
        f"({PRICES_REGION}, {PRICES_DATE}); repeatable",
    )
    p.add_argument("--deploy-mode", choices=("cluster", "client"), default="cluster")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--pipeline", help="Kedro pipeline to run (default: __default__)")
    p.add_argument(
        "--params", dest="extra_params", help="more Kedro runtime params, e.g. ingestion.sample_per_class=50"
    )
    p.add_argument("--no-wait", action="store_true", help="return once the step is added")
    p.add_argument("--poll-seconds", type=float, default=30.0)
    p.add_argument("--timeout-seconds", type=float, default=None)
    p.add_argument("--endpoint-url", default=None, help="S3/EMR endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    return p.parse_args(argv)


def run(args: argparse.Namespace, write: Callable[[str], None] = print, session=None) -> dict:
    """Do the whole launch; return the ids, the artifact URIs and the final state.

    Everything that can be checked is checked before the cluster is created: nothing is paid
    for a run that would fail at once. ``session``: the boto3 session to use (default: a new one).
    """
    import boto3

    from fruits_kedro.cloud.upload import check_bucket

    created = args.cluster_id is None
    if not created and (args.spot or args.idle_timeout is not None):
        raise EmrError("--spot and --idle-timeout apply to a new cluster, not to one given by --cluster-id.")
    session = session or boto3.session.Session()
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    emr = session.client("emr", endpoint_url=args.endpoint_url)
    region = emr.meta.region_name
    wheel, conf_archive = find_package_files(args.dist_dir)
    files = {
        "wheel": wheel,
        "conf_archive": conf_archive,
        "entrypoint": Path(emr_entrypoint.__file__),
        "bootstrap": args.bootstrap_script,
    }
    check_files(files)
    check_bucket(s3, args.bucket)
    photos = count_photos(s3, args.bucket, args.prefix)
    objects = "object" if photos == 1 else "objects"
    write(f"Photos: {photos:,} {objects} under s3://{args.bucket}/{key_prefix_of(args.prefix, 'raw')}")
    key_prefix = artifacts_prefix(args.prefix, wheel)
    artifacts = Artifacts(**upload_artifacts(s3, args.bucket, key_prefix, files))
    write(f"Uploaded {wheel.name}, {conf_archive.name}, entry point and bootstrap to s3://{args.bucket}/{key_prefix}")
    events, made = ensure_event_log_prefix(s3, args.bucket, args.prefix)
    write(f"Event logs: {events} ({'created' if made else 'already there'})")
    write(f"Region: {region}")
    cluster_id = args.cluster_id
    if created:
        idle_timeout = args.idle_timeout
        if idle_timeout is None and args.keep_alive:
            idle_timeout = DEFAULT_IDLE_TIMEOUT_SECONDS
        request = cluster_request(
            name=f"{PACKAGE_NAME}-{args.prefix.strip('/').replace('/', '-')}",
            release_label=args.release_label,
            log_uri=f"s3://{args.bucket}/{args.prefix.strip('/')}/emr/logs/",
            bootstrap_uri=artifacts.bootstrap,
            wheel_uri=artifacts.wheel,
            master_type=args.master_type,
            core_type=args.core_type,
            core_count=args.core_count,
            keep_alive=args.keep_alive,
            subnet_id=args.subnet_id,
            key_name=args.key_name,
            spot=args.spot,
            idle_timeout_seconds=idle_timeout or None,
        )
        cluster_id = create_cluster(emr, request)
        write(
            f"Created cluster {cluster_id} ({args.release_label}, 1 x {args.master_type} + "
            f"{args.core_count} x {args.core_type}{' on spot' if args.spot else ''})"
        )
        write(hourly_cost(args.master_type, args.core_type, args.core_count, args.spot, dict(args.hourly_price)))
        if idle_timeout:
            write(
                f"Idle timeout: the cluster terminates after {describe_seconds(idle_timeout)} idle "
                "(no step, no YARN application)."
            )
    write(f"Console: {console_url(region, cluster_id)}")
    submit = spark_submit_args(
        artifacts, args.bucket, args.prefix, args.deploy_mode, args.driver_memory, args.pipeline, args.extra_params
    )
    # A cluster created for this run goes away if the step fails; a shared one is left alone.
    on_failure = "TERMINATE_CLUSTER" if created and not args.keep_alive else "CONTINUE"
    step_id = add_step(emr, cluster_id, step_request(f"kedro run --env emr ({args.prefix})", submit, on_failure))
    write(f"Added step {step_id}: {' '.join(submit)}")
    # A cluster made for this run is stopped whole; on a shared one, only this run's step.
    stop = stop_command(region, cluster_id) if created else stop_command(region, cluster_id, step_id)
    write(f"To stop: {stop}")
    state = None
    if not args.no_wait:
        state = wait_for_step(emr, cluster_id, step_id, args.poll_seconds, args.timeout_seconds, write, stop=stop)
    return {"cluster_id": cluster_id, "step_id": step_id, "artifacts": artifacts, "state": state, "created": created}


def main(argv: list[str] | None = None) -> int:
    from botocore.exceptions import NoCredentialsError

    from fruits_kedro.cloud.upload import UploadError

    args = parse_args(argv)
    try:
        result = run(args)
    except (EmrError, UploadError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print(
            f"ERROR: no AWS credentials found for s3://{args.bucket}/ and EMR: set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.",
            file=sys.stderr,
        )
        return 1
    return 0 if result["state"] in (None, "COMPLETED") else 2


if __name__ == "__main__":
    sys.exit(main())
