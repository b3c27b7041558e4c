"""Run the packaged project on AWS EMR as a Spark step.

    kedro package                                   # dist/*.whl + dist/conf-fruits_kedro.tar.gz
    python -m fruits_kedro.cloud.emr --bucket NAME --prefix fruits            # new cluster
    python -m fruits_kedro.cloud.emr --bucket NAME --cluster-id j-XXXXXXXX    # existing one

Steps: upload the wheel, the configuration archive, the bootstrap script and the spark-submit
entry point to ``s3://BUCKET/PREFIX/emr/artifacts/<version>/``; create a cluster (Spark 3.5
on EMR 7, bootstrap installs the wheel on every node) unless ``--cluster-id`` is given; add
one ``spark-submit`` step running ``kedro run --env emr``; print the step's state until it
finishes. Everything goes through boto3 and the standard AWS chain.
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


def upload_artifacts(s3, bucket: str, key_prefix: str, files: dict[str, Path]) -> dict[str, str]:
    """Upload each file under ``key_prefix``; return name -> ``s3://`` URI."""
    from fruits_kedro.cloud.upload import check_bucket

    check_bucket(s3, bucket)
    uris = {}
    for name, path in files.items():
        if not path.is_file():
            raise EmrError(f"Missing file to upload for {name}: {path}")
        key = key_prefix + path.name
        s3.upload_file(str(path), bucket, key)
        uris[name] = f"s3://{bucket}/{key}"
    return uris


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
) -> dict:
    """Arguments of ``emr.run_job_flow``: Spark only, the wheel installed by a bootstrap action."""
    instances: dict = {
        "InstanceGroups": [
            {"Name": "master", "InstanceRole": "MASTER", "InstanceType": master_type, "InstanceCount": 1},
            {"Name": "core", "InstanceRole": "CORE", "InstanceType": core_type, "InstanceCount": core_count},
        ],
        "KeepJobFlowAliveWhenNoSteps": keep_alive,
        "TerminationProtected": False,
    }
    if subnet_id:
        instances["Ec2SubnetId"] = subnet_id
    if key_name:
        instances["Ec2KeyName"] = key_name
    python_env = {"PYSPARK_PYTHON": CLUSTER_PYTHON, "PYSPARK_DRIVER_PYTHON": CLUSTER_PYTHON}
    return {
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
        args += ["--pipeline", pipeline]
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
) -> str:
    """Print each state change of the step; return its final state (or the last one seen on timeout)."""
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
            write(f"Stopped waiting after {timeout_seconds:.0f}s; the step goes on (state {state}).")
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
        help="keep a new cluster after the step (default: it terminates when the step ends)",
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


def run(args: argparse.Namespace, write: Callable[[str], None] = print) -> dict:
    """Do the whole launch; return the ids, the artifact URIs and the final state."""
    import boto3

    session = boto3.session.Session()
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    emr = session.client("emr", endpoint_url=args.endpoint_url)
    wheel, conf_archive = find_package_files(args.dist_dir)
    key_prefix = artifacts_prefix(args.prefix, wheel)
    uris = upload_artifacts(
        s3,
        args.bucket,
        key_prefix,
        {
            "wheel": wheel,
            "conf_archive": conf_archive,
            "entrypoint": Path(emr_entrypoint.__file__),
            "bootstrap": args.bootstrap_script,
        },
    )
    artifacts = Artifacts(**uris)
    write(f"Uploaded {wheel.name}, {conf_archive.name}, entry point and bootstrap to s3://{args.bucket}/{key_prefix}")
    created = args.cluster_id is None
    cluster_id = args.cluster_id
    if created:
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
        )
        cluster_id = create_cluster(emr, request)
        write(
            f"Created cluster {cluster_id} ({args.release_label}, 1 x {args.master_type} + "
            f"{args.core_count} x {args.core_type})"
        )
    submit = spark_submit_args(
        artifacts, args.bucket, args.prefix, args.deploy_mode, args.driver_memory, args.pipeline, args.extra_params
    )
    # A cluster created for this run goes away if the step fails; a shared one is left alone.
    on_failure = "TERMINATE_CLUSTER" if created and not args.keep_alive else "CONTINUE"
    step_id = add_step(emr, cluster_id, step_request(f"kedro run --env emr ({args.prefix})", submit, on_failure))
    write(f"Added step {step_id}: {' '.join(submit)}")
    state = None
    if not args.no_wait:
        state = wait_for_step(emr, cluster_id, step_id, args.poll_seconds, args.timeout_seconds, write)
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
