"""The loopback Spark cluster: real daemons on free ports and a temporary state folder, a real job in a
separate driver process, and a check that ``down`` leaves no executor or Python worker behind.

The ``cluster`` tests share one cluster and one driver (JVM start-ups dominate their time) and run in
file order: the driver is held open until ``down`` so that ``down`` meets live executors, and the
history server reads its event log once the driver has stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from fruits_kedro.cloud import local_cluster
from tests.conftest import PROJECT_ROOT

LINUX = sys.platform.startswith("linux")
# Variables that must not reach the daemons; the driver below is given none of them either.
LEAKY_ENV = {
    "AWS_ACCESS_KEY_ID": "must-not-reach-the-cluster",
    "AWS_SECRET_ACCESS_KEY": "must-not-reach-the-cluster",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "FSSPEC_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "PYSPARK_PYTHON": "/nonexistent/python",
    "PYSPARK_DRIVER_PYTHON": "/nonexistent/python",
}
CLI = [sys.executable, "-m", "fruits_kedro.cloud.local_cluster"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The driver: waits for both executors, runs 8 tasks that report where they ran, writes that to a file,
# then holds the application open until its stdin closes.
JOB = r"""
import json, os, sys, time
from pyspark.sql import SparkSession

master, event_dir, result_path = sys.argv[1:4]
spark = (
    SparkSession.builder.master(master).appName("local-cluster-test")
    .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.enabled", "false").config("spark.executor.memory", "512m")
    .config("spark.cores.max", "2").config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
    .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "60s")
    .config("spark.eventLog.enabled", "true").config("spark.eventLog.dir", event_dir)
    .getOrCreate()
)

def probe(index, rows):
    import psutil
    total = sum(x * x for x in rows)
    time.sleep(0.2)
    chain = psutil.Process().parents()
    pids = [p.pid for p in chain]
    executor = next(p for p in chain if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in p.cmdline())
    cmd = executor.cmdline()
    yield {
        "total": total,
        "python_pid": os.getpid(),
        "executor_pid": executor.pid,
        "executor_parent": pids[pids.index(executor.pid) + 1],
        "executor_host": cmd[cmd.index("--hostname") + 1],
        "cwd": os.getcwd(),
        "leaked_env": sorted(k for k in os.environ if k.startswith(("AWS_", "FSSPEC_"))),
    }

rows = spark.sparkContext.parallelize(range(1000), 8).mapPartitionsWithIndex(probe).collect()
with open(result_path + ".tmp", "w") as f:
    json.dump(rows, f)
os.replace(result_path + ".tmp", result_path)
sys.stdin.read()
spark.stop()
"""


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def get_json(url: str):
    with NO_PROXY.open(url, timeout=5) as response:
        return json.load(response)


def pid_files(state: Path) -> dict[str, int]:
    return {path.stem: int(path.read_text()) for path in sorted(state.glob("*.pid"))}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def processes_of(state: Path) -> list[tuple[int, str]]:
    """Live processes started for the cluster in ``state``: they run in it or name it on their command line."""
    inside = f"{state}{os.sep}"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["pid"] == os.getpid():
            continue
        cmdline = " ".join(info["cmdline"] or [])
        cwd = f"{info['cwd'] or ''}{os.sep}"
        if inside in f"{cmdline}{os.sep}" or f"={state} " in f"{cmdline} " or cwd.startswith(inside):
            found.append((info["pid"], cmdline))
    return found


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)


@dataclass
class Cluster:
    state: Path
    port: int
    webui_port: int
    status: local_cluster.ClusterStatus


@dataclass
class App:
    proc: subprocess.Popen
    rows: list[dict]
    event_dir: Path

    def release(self) -> None:
        """Let the driver stop its session, which completes its event log."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("spark-cluster").resolve()
    port, webui_port = free_ports(2)
    try:
        status = local_cluster.cluster_up(
            workers=2,
            memory="1g",
            port=port,
            webui_port=webui_port,
            state_dir=state,
            timeout=90,
            env={**os.environ, **LEAKY_ENV},
        )
        yield Cluster(state, port, webui_port, status)
    finally:
        local_cluster.history_down(state_dir=state)
        local_cluster.cluster_down(state_dir=state)


@pytest.fixture(scope="module")
def app(cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("driver").resolve()
    event_dir = work / "events"
    event_dir.mkdir()
    result = work / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV and not k.startswith(("AWS_", "FSSPEC_"))}
    # PySpark ships the driver's PYSPARK_PYTHON with each task: the executors' Python, with no cluster setting.
    env["PYSPARK_PYTHON"] = sys.executable
    with (work / "driver.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", JOB, cluster.status.master_url, event_dir.as_uri(), str(result)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
    held = App(proc, [], event_dir)
    try:
        deadline = time.monotonic() + 120
        while not result.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (work / "driver.log").read_text()[-3000:]
                pytest.fail(f"the driver gave no result (exit {proc.poll()}):\n{log}")
            time.sleep(0.25)
        held.rows = json.loads(result.read_text())
        yield held
    finally:
        held.release()


# ---- without a cluster ---------------------------------------------------------------
def test_workers_get_distinct_loopback_hosts_on_linux_only():
    assert local_cluster.worker_hosts(3, platform="linux") == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert local_cluster.worker_hosts(2, platform="darwin") == ["127.0.0.1", "127.0.0.1"]
    with pytest.raises(local_cluster.ClusterError):
        local_cluster.worker_hosts(0)


def test_daemon_env_strips_what_executors_must_get_from_spark_conf(tmp_path):
    env = local_cluster.daemon_env(
        {"PATH": "/bin", "AWS_PROFILE": "x", **LEAKY_ENV}, state_dir=tmp_path, local_ip="127.0.0.2"
    )
    assert not [k for k in env if k in LEAKY_ENV or k.startswith(("AWS_", "FSSPEC_"))]
    assert env["PATH"] == "/bin" and env["SPARK_LOCAL_IP"] == "127.0.0.2"
    assert Path(env["SPARK_HOME"], "bin", "spark-class").is_file()
    assert env["SPARK_CONF_DIR"].startswith(str(tmp_path)) and env["SPARK_LOG_DIR"].startswith(str(tmp_path))


def test_down_and_status_without_a_cluster_say_so(tmp_path):
    down = cli("down", "--state-dir", str(tmp_path))
    assert down.returncode == 0 and "no cluster running" in down.stdout
    status = cli("status", "--state-dir", str(tmp_path))
    assert status.returncode == 0 and "not running" in status.stdout
    history = cli("history-down", "--state-dir", str(tmp_path))
    assert history.returncode == 0 and "no history server running" in history.stdout


def test_down_never_kills_a_process_that_reused_a_daemons_pid(tmp_path):
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "master.pid").write_text(f"{stranger.pid}\n")
        (tmp_path / "worker-1.pid").write_text(f"{stranger.pid}\n")
        assert local_cluster.cluster_down(state_dir=tmp_path, timeout=1) == []
        assert stranger.poll() is None
        assert not list(tmp_path.glob("*.pid"))
    finally:
        stranger.kill()
        stranger.wait()


def test_up_refuses_a_busy_port_before_starting_anything(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(local_cluster.ClusterError, match=f"port {port}"):
            local_cluster.cluster_up(port=port, webui_port=free_ports(1)[0], state_dir=tmp_path)
    assert not list(tmp_path.glob("*.pid"))


def test_make_targets_run_the_cli():
    result = subprocess.run(
        [
            shutil.which("make"),
            "-n",
            "-C",
            str(PROJECT_ROOT),
            "cluster-up",
            "cluster-status",
            "cluster-down",
            "history",
            "history-down",
            "WORKERS=3",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for command in ("up --workers 3", "status", "down", "history-up", "history-down"):
        assert f"-m fruits_kedro.cloud.local_cluster {command}" in result.stdout


# ---- with a cluster ------------------------------------------------------------------
@pytest.mark.cluster
def test_up_that_times_out_stops_what_it_started(tmp_path):
    port, webui_port = free_ports(2)
    with pytest.raises(local_cluster.ClusterError, match=r"master\.log"):
        local_cluster.cluster_up(port=port, webui_port=webui_port, state_dir=tmp_path, timeout=0.01)
    assert not list(tmp_path.glob("*.pid"))
    assert processes_of(tmp_path) == []


@pytest.mark.cluster
def test_up_starts_a_master_and_workers_on_distinct_hosts(cluster):
    master = get_json(f"http://127.0.0.1:{cluster.webui_port}/json/")
    alive = [w for w in master["workers"] if w["state"] == "ALIVE"]
    assert master["url"] == cluster.status.master_url == f"spark://127.0.0.1:{cluster.port}"
    assert len(alive) == 2 and len(cluster.status.workers) == 2
    if LINUX:
        assert sorted(w["host"] for w in alive) == ["127.0.0.2", "127.0.0.3"]
    pids = pid_files(cluster.state)
    assert set(pids) == {"master", "worker-1", "worker-2"}
    for name, pid in pids.items():
        proc = psutil.Process(pid)
        # spark-class execs java: the pid in the file is the daemon's JVM itself.
        assert proc.name() == "java"
        expected = local_cluster.MASTER_CLASS if name == "master" else local_cluster.WORKER_CLASS
        assert expected in proc.cmdline()
        assert f"-D{local_cluster.STATE_PROPERTY}={cluster.state}" in proc.cmdline()


@pytest.mark.cluster
def test_daemons_do_not_inherit_aws_fsspec_or_pyspark_python(cluster):
    for name, pid in pid_files(cluster.state).items():
        env = psutil.Process(pid).environ()
        leaked = [k for k in env if k in LEAKY_ENV or k.startswith(("AWS_", "FSSPEC_"))]
        assert leaked == [], name
        assert env["SPARK_LOG_DIR"].startswith(str(cluster.state))
        if name.startswith("worker"):
            assert env["SPARK_LOCAL_DIRS"] == str(cluster.state / "local" / name)


@pytest.mark.cluster
def test_a_job_runs_in_executor_jvms_of_both_workers(cluster, app):
    assert sum(row["total"] for row in app.rows) == sum(x * x for x in range(1000))
    workers = pid_files(cluster.state)
    # Each executor is a JVM child of one of this cluster's workers, with its own Python workers.
    assert {row["executor_parent"] for row in app.rows} == {workers["worker-1"], workers["worker-2"]}
    assert len({row["executor_pid"] for row in app.rows}) == 2
    assert not {row["python_pid"] for row in app.rows} & {row["executor_pid"] for row in app.rows}
    if LINUX:
        assert {row["executor_host"] for row in app.rows} == {"127.0.0.2", "127.0.0.3"}
    for row in app.rows:
        assert Path(row["cwd"]).is_relative_to(cluster.state / "work")
        assert row["leaked_env"] == []


@pytest.mark.cluster
def test_up_refuses_while_the_cluster_runs(cluster):
    port, webui_port = free_ports(2)
    before = pid_files(cluster.state)
    result = cli("up", "--state-dir", str(cluster.state), "--port", str(port), "--webui-port", str(webui_port))
    assert result.returncode == 1
    assert "already running" in result.stderr and "make cluster-down" in result.stderr
    assert pid_files(cluster.state) == before


@pytest.mark.cluster
def test_status_prints_the_master_and_its_workers(cluster):
    result = cli("status", "--state-dir", str(cluster.state))
    assert result.returncode == 0
    assert cluster.status.master_url in result.stdout and "workers alive (2)" in result.stdout
    for worker in cluster.status.workers:
        assert worker in result.stdout


@pytest.mark.cluster
def test_down_stops_the_daemons_their_executors_and_python_workers(cluster, app):
    assert app.proc.poll() is None, "the driver must still hold its executors"
    before = processes_of(cluster.state)
    assert any(local_cluster.EXECUTOR_CLASS in cmd for _, cmd in before)
    pids = pid_files(cluster.state)
    python_workers = {row["python_pid"] for row in app.rows}
    assert not any(gone(pid) for pid in python_workers)

    result = cli("down", "--state-dir", str(cluster.state))
    assert result.returncode == 0, result.stderr
    assert "stopped master, worker-1, worker-2" in result.stdout
    assert all(gone(pid) for pid in [*pids.values(), *python_workers])
    assert processes_of(cluster.state) == []
    assert pid_files(cluster.state) == {}

    again = cli("down", "--state-dir", str(cluster.state))
    assert again.returncode == 0 and "no cluster running" in again.stdout
    assert "not running" in cli("status", "--state-dir", str(cluster.state)).stdout


@pytest.mark.cluster
def test_history_server_lists_the_finished_application(cluster, app):
    app.release()
    assert app.proc.returncode == 0
    port = free_ports(1)[0]
    url = local_cluster.history_up(event_logs=app.event_dir, port=port, state_dir=cluster.state)
    history_pid = pid_files(cluster.state)["history"]
    try:
        assert url == f"http://127.0.0.1:{port}"
        again = cli(
            "history-up",
            "--event-logs",
            str(app.event_dir),
            "--port",
            str(free_ports(1)[0]),
            "--state-dir",
            str(cluster.state),
        )
        assert again.returncode == 1 and "make history-down" in again.stderr
        deadline = time.monotonic() + 30
        while not (apps := get_json(f"{url}/api/v1/applications")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [a["name"] for a in apps] == ["local-cluster-test"]
        assert apps[0]["attempts"][0]["completed"] is True
    finally:
        assert local_cluster.history_down(state_dir=cluster.state) is True
    assert gone(history_pid)
    assert processes_of(cluster.state) == []
