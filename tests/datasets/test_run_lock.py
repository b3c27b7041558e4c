"""One run at a time per set of outputs: the lock beside current_outputs.json, on disk and on S3."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from fruits_kedro.datasets import run_lock
from fruits_kedro.datasets.run_lock import LOCK_NAME, RunLockedError


@pytest.fixture(autouse=True)
def _no_lock_outlives_a_test():
    yield
    run_lock.release_all()


def test_a_second_run_is_refused_with_the_holders_id_until_the_first_ends(tmp_path):
    first = run_lock.acquire(str(tmp_path), "run-1")
    with pytest.raises(RunLockedError) as refused:
        run_lock.acquire(str(tmp_path), "run-2")
    message = str(refused.value)
    assert f"run run-1 (pid {os.getpid()} on {socket.gethostname()}" in message
    assert f"holds {tmp_path}/{LOCK_NAME}; wait for it to end, or stop it" in message and "\n" not in message
    assert run_lock.held_runs() == ["run-1"]
    first.release()
    run_lock.acquire(str(tmp_path), "run-2").release()


def test_a_killed_runs_local_lock_is_never_stale(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from fruits_kedro.datasets import run_lock; "
            f"run_lock.acquire({str(tmp_path)!r}, 'killed-run'); print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=r"run killed-run \(pid \d+"):
            run_lock.acquire(str(tmp_path), "run-2")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    run_lock.acquire(str(tmp_path), "run-2").release()  # the OS released it with the process


def test_the_start_up_clean_up_keeps_the_folder_of_a_run_that_holds_the_lock(tmp_path):
    """A run that does not write a set removes its old run folders only while no run holds it."""
    from fruits_kedro.datasets.output_set import OutputSet
    from fruits_kedro.hooks import _remove_old_runs

    output_set = OutputSet(str(tmp_path))
    running = tmp_path / "04_feature" / "runs" / "running-run" / "table.parquet"
    running.parent.mkdir(parents=True)
    running.write_text("being written")
    lock = output_set.lock("running-run")
    _remove_old_runs(output_set, ["04_feature/table.parquet"], "other-run", locked=False)
    assert running.read_text() == "being written"
    lock.release()
    _remove_old_runs(output_set, ["04_feature/table.parquet"], "other-run", locked=False)
    assert not running.parent.exists()  # once it is over, an unnamed folder is a leftover


# ---- S3: a conditional-put lock object ------------------------------------------------


@pytest.fixture
def s3_root(aws_env):
    from tests.s3_server import new_bucket

    return f"s3://{new_bucket()}/fruits"


def _lock_object(root: str) -> dict:
    import s3fs

    return json.loads(s3fs.S3FileSystem(skip_instance_cache=True).cat_file(f"{root}/{LOCK_NAME}"))


def _put_lock(root: str, **record) -> None:
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).pipe_file(f"{root}/{LOCK_NAME}", json.dumps(record).encode())


def test_on_s3_a_second_run_is_refused_and_told_how_to_clear_a_stale_lock(s3_root):
    first = run_lock.acquire(s3_root, "run-1")
    record = _lock_object(s3_root)
    assert (record["run_id"], record["pid"], record["host"]) == ("run-1", os.getpid(), socket.gethostname())
    with pytest.raises(RunLockedError) as refused:
        run_lock.acquire(s3_root, "run-2")
    message = str(refused.value)
    assert message.startswith(f"Another run is writing these outputs: run run-1 (pid {os.getpid()}")
    assert f"aws s3 rm {s3_root}/{LOCK_NAME}" in message and "\n" not in message
    first.release()
    second = run_lock.acquire(s3_root, "run-2")
    assert _lock_object(s3_root)["run_id"] == "run-2"
    second.release()


def test_on_s3_the_lock_of_an_ended_process_on_this_host_is_taken_over(s3_root, caplog):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    now = datetime.now(tz=UTC).isoformat(timespec="seconds")
    _put_lock(s3_root, run_id="dead-run", host=socket.gethostname(), pid=int(ended.stdout), started=now, heartbeat=now)
    lock = run_lock.acquire(s3_root, "run-2")
    assert _lock_object(s3_root)["run_id"] == "run-2"
    assert "Taking over the lock of run dead-run" in caplog.text and "has ended" in caplog.text
    lock.release()


def test_on_s3_a_lock_without_a_recent_heartbeat_is_taken_over_and_a_live_one_is_not(s3_root):
    old = (datetime.now(tz=UTC) - timedelta(seconds=run_lock.STALE_AFTER_SECONDS + 60)).isoformat(timespec="seconds")
    _put_lock(s3_root, run_id="lost-run", host="another-host", pid=1, started=old, heartbeat=old)
    run_lock.acquire(s3_root, "run-2").release()

    recent = datetime.now(tz=UTC).isoformat(timespec="seconds")
    _put_lock(s3_root, run_id="live-run", host="another-host", pid=1, started=recent, heartbeat=recent)
    with pytest.raises(RunLockedError, match=r"run live-run \(pid 1 on another-host"):
        run_lock.acquire(s3_root, "run-3")


def test_on_s3_an_outage_while_the_lock_is_held_is_said_in_a_warning_and_raises_nowhere(
    aws_env, s3_root, monkeypatch, caplog
):
    """S3 down for the heartbeat and the release: the run's own error stays the one reported."""
    import threading

    from fruits_kedro.cloud.s3_retries import use_s3_retry_settings
    from tests.fault_proxy import FaultProxy
    from tests.s3_server import forget_cached_s3_clients

    use_s3_retry_settings(s3_root)  # bounded retries, as a run sets them before it locks
    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.2)
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    with FaultProxy.for_url(aws_env) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        forget_cached_s3_clients()
        lock = run_lock.acquire(s3_root, "run-1")
        proxy.mode = "reset"
        deadline = time.monotonic() + 60
        while "Could not renew the run lock" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        lock.release()
    assert "Could not renew the run lock" in caplog.text and "EndpointConnectionError" in caplog.text
    assert "Could not remove the run lock" in caplog.text
    assert uncaught == []
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    forget_cached_s3_clients()
    assert _lock_object(s3_root)["run_id"] == "run-1"  # left to age out; the next run takes it over
