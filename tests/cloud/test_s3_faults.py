"""S3 failing under a running ``kedro run --env s3``: a TCP proxy on loopback in front of the
S3 server (moto) resets every connection, for a few seconds or for good, while the photos are
being read and featurized; or the endpoint is not there at all.

A short outage costs retries, never a photo. A lasting one fails the run loudly, naming the
object and the cause, and leaves the previous outputs byte for byte as they were. Run alone
with ``pytest -m faults``.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fruits_kedro.datasets.output_set import MANIFEST_NAME
from tests.cloud.cluster_runs import (
    PREFIX,
    RUN_PARAMS,
    read_csv,
    read_parquet_folder,
    run_environment,
    s3_filesystem,
    snapshot,
    staged_parts,
    start_kedro_run,
    upload_photos,
    wait_for,
)
from tests.conftest import SHARED_PHOTOS, make_project_copy
from tests.fault_proxy import FaultProxy
from tests.outputs import current_s3_output
from tests.s3_server import forget_cached_s3_clients, free_port, new_bucket, set_aws_environment

pytestmark = [pytest.mark.slow, pytest.mark.faults]

N_PHOTOS = 1500
# Many small tasks: the first finishes (a staged part: inference is under way) long before the last.
PARAMS = f"{RUN_PARAMS},ingestion.images_per_partition=200"


@pytest.fixture(scope="module")
def proxy(s3_endpoint):
    with FaultProxy.for_url(s3_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def photos(s3_endpoint, request):
    source = SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else request.getfixturevalue("generated_sample")
    with pytest.MonkeyPatch.context() as patch:
        set_aws_environment(patch, s3_endpoint)  # set-up and checks talk to S3 directly
        bucket = new_bucket()
        urls = upload_photos(source, bucket, N_PHOTOS)
        yield bucket, urls, s3_filesystem()
    forget_cached_s3_clients()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project_copy(tmp_path_factory.mktemp("faults_project"))


def _run_with_fault(project, proxy, bucket, fs, log, params, fault) -> subprocess.CompletedProcess:
    """A run through the proxy; ``fault(proxy)`` is applied once inference is under way."""
    features = f"{bucket}/{PREFIX}/features/intermediate/image_features.parquet"
    run = start_kedro_run(project, proxy.url, bucket, params, log)
    try:
        wait_for(lambda: staged_parts(fs, features), 300, "the first inference task to finish", run)
        fault(proxy)
        run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        proxy.mode = "pass"
    return subprocess.CompletedProcess(run.args, run.returncode, log.read_text(errors="replace"))


def test_seconds_of_connection_resets_during_inference_lose_no_photo(project, proxy, photos, tmp_path):
    bucket, urls, fs = photos
    before = proxy.stats.reset
    window = None

    def reset_for_five_seconds(p):
        nonlocal window
        window = p.faults("reset", 5.0)

    run = _run_with_fault(project, proxy, bucket, fs, tmp_path / "run.log", PARAMS, reset_for_five_seconds)

    assert run.returncode == 0, run.stdout[-4000:]
    assert proxy.stats.reset > before  # the outage hit the run's connections
    root = f"{bucket}/{PREFIX}"
    csv = read_csv(fs, current_s3_output(fs, root, "features/image_features_pca.csv"))
    assert sorted(csv["path"]) == urls
    assert len(read_parquet_folder(fs, current_s3_output(fs, root, "features/rejected_images.parquet"))) == 0


def test_an_outage_longer_than_the_retries_fails_loudly_and_leaves_the_previous_outputs(
    project, proxy, photos, tmp_path
):
    bucket, urls, fs = photos
    root = f"{bucket}/{PREFIX}"
    if not fs.exists(f"{root}/{MANIFEST_NAME}"):
        pytest.skip("needs the outputs of the previous test's run")
    before = snapshot(fs, root)
    # A short retry budget per batch keeps the test short; Spark still tries each task 4 times.
    params = f"{PARAMS},feature_extraction.read_retry_seconds=2"

    def reset_for_good(p):
        p.mode = "reset"

    run = _run_with_fault(project, proxy, bucket, fs, tmp_path / "run.log", params, reset_for_good)

    assert run.returncode != 0
    assert f"Cannot read s3://{bucket}/{PREFIX}/raw/" in run.stdout
    assert "still failed" in run.stdout and "was not replaced" in run.stdout
    assert "failed 4 times" in run.stdout  # Spark retried the task before giving up
    assert "Rejected s3://" not in run.stdout  # an outage is not a property of any photo
    # S3 is down for the failed run's clean-up too: one line says so, no traceback buries the error.
    flat = " ".join(run.stdout.split())  # the console wraps log lines
    assert "Could not remove the failed run's" in flat and "the next run removes them." in flat
    assert "╭─ Traceback" not in run.stdout
    assert "Could not remove the run lock" in flat  # a warning, not an error raised over the run's own
    errors = [line for line in run.stdout.splitlines() if line.startswith("Error: ")]
    assert errors and errors[-1].startswith(f"Error: image_features: Cannot read s3://{bucket}/")
    after = snapshot(fs, root)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"a failed run changed the previous outputs: {changed[:5]}"
    assert (
        sorted(read_parquet_folder(fs, current_s3_output(fs, root, "features/image_features_pca.parquet"))["path"])
        == urls
    )


def test_an_unreachable_endpoint_fails_within_a_minute_saying_so(project, photos, tmp_path):
    bucket, _, _ = photos
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    command = [sys.executable, "-m", "kedro", "run", "--env", "s3", "--params", f"bucket={bucket},{RUN_PARAMS}"]
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=project, env=run_environment(nowhere), capture_output=True, text=True, timeout=300
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "cannot be reached" in output and nowhere in output, output[-3000:]
    assert elapsed < 60, f"took {elapsed:.0f} s to give up"
