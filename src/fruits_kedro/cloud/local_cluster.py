"""A standalone Spark cluster on this machine's loopback, started and stopped by the project.

    python -m fruits_kedro.cloud.local_cluster up [--workers 2]     # make cluster-up
    python -m fruits_kedro.cloud.local_cluster status               # make cluster-status
    python -m fruits_kedro.cloud.local_cluster down                 # make cluster-down
    python -m fruits_kedro.cloud.local_cluster history-up           # make history
    python -m fruits_kedro.cloud.local_cluster history-down         # make history-down

Why: ``local[*]`` runs every task inside the driver's JVM and hands its environment to the Python
workers, which hides what EMR does differently. Here, as on EMR, a master hands each application
executors that are separate JVMs started by workers, and each executor starts its own Python workers.
The daemons get an environment without ``AWS_*``, ``FSSPEC_*``, ``PYSPARK_PYTHON`` and
``PYSPARK_DRIVER_PYTHON``, so the interpreter and the S3 settings reach executors only when the
project passes them through Spark configuration, which is the only way they reach EMR's executors.

On Linux each worker binds its own loopback address (127.0.0.2, 127.0.0.3, ...; all of 127/8 is
loopback there): Spark never starts a speculative copy of a task on a host that already runs an
attempt of it, so speculation needs distinct hosts. Elsewhere every worker binds 127.0.0.1.

Only the installed PySpark is used (its ``bin/spark-class``). Pid files, logs, the workers' work
folders and Spark's local folders live in a state folder, ``.spark-cluster/`` by default.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

DEFAULT_STATE_DIR = Path(".spark-cluster")
DEFAULT_EVENT_LOGS = Path("logs/spark-events")
DEFAULT_PORT = 7077
DEFAULT_WEBUI_PORT = 8080
DEFAULT_HISTORY_PORT = 18080
# Two 4g workers and a driver beside them fit a 24 GiB machine.
DEFAULT_WORKER_MEMORY = "4g"
LOOPBACK = "127.0.0.1"

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
HISTORY_CLASS = "org.apache.spark.deploy.history.HistoryServer"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"

# Executors must get these through Spark configuration, as on EMR, so the daemons never inherit them.
STRIPPED_PREFIXES = ("AWS_", "FSSPEC_")
STRIPPED_NAMES = frozenset({"PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"})
# A JVM system property naming the state folder: a daemon's command line then says which cluster it serves.
STATE_PROPERTY = "fruits_kedro.cluster.state"
STATE_FILE = "cluster.json"
HISTORY_PID = "history.pid"
MASTER_PID = "master.pid"

# Loopback requests must never go through a proxy named in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ClusterError(RuntimeError):
    """The cluster or history server cannot start or stop; the message says what to do or which log to read."""


@dataclass(frozen=True)
class ClusterStatus:
    """What the master reports: where to connect and which workers are alive."""

    master_url: str
    webui_url: str
    workers: tuple[str, ...]  # host:port of each ALIVE worker


# ---- environment ---------------------------------------------------------------------
def spark_home() -> Path:
    """The installed ``pyspark`` package folder: its bin/ and jars/ are a whole Spark distribution."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ClusterError("pyspark is not installed in this Python; run `make install`")
    return Path(spec.origin).resolve().parent


def worker_hosts(count: int, *, platform: str = sys.platform) -> list[str]:
    """Worker i's bind address: 127.0.0.(i+1) on Linux, so each worker is a distinct Spark host."""
    if not 1 <= count <= 253:
        raise ClusterError(f"--workers must be between 1 and 253, not {count}")
    if not platform.startswith("linux"):
        return [LOOPBACK] * count
    return [f"127.0.0.{i + 1}" for i in range(1, count + 1)]


def daemon_env(base: Mapping[str, str], *, state_dir: Path, local_ip: str) -> dict[str, str]:
    """``base`` without what executors must get from Spark configuration, plus the state folder's paths."""
    env = {k: v for k, v in base.items() if k not in STRIPPED_NAMES and not k.startswith(STRIPPED_PREFIXES)}
    env.update(
        SPARK_HOME=str(spark_home()),
        # An empty configuration folder: no spark-env.sh or spark-defaults.conf of the user's undoes the stripping.
        SPARK_CONF_DIR=str(state_dir / "conf"),
        # Web UIs bind this address instead of every interface.
        SPARK_LOCAL_IP=local_ip,
        SPARK_LOG_DIR=str(state_dir / "logs"),
    )
    return env


def _java_options(existing: str | None, state_dir: Path, properties: Mapping[str, str] | None = None) -> str:
    """``existing`` plus ``-Dkey=value`` options and the state marker, quoted for Spark's launcher, ours last."""
    ours = {**(properties or {}), STATE_PROPERTY: str(state_dir)}
    return " ".join([existing or "", *(f'"-D{key}={value}"' for key, value in ours.items())]).strip()


# ---- processes -----------------------------------------------------------------------
def _spawn(state_dir: Path, name: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen:
    """Start ``spark-class ARGS`` in its own session (it outlives `make`), logging to logs/NAME.log.

    spark-class execs java, so the pid written to NAME.pid is the daemon's JVM.
    """
    log = state_dir / "logs" / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=dict(env),
            start_new_session=True,
        )
    (state_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc


def _expected_class(pid_file: Path) -> str:
    if pid_file.name == MASTER_PID:
        return MASTER_CLASS
    if pid_file.name == HISTORY_PID:
        return HISTORY_CLASS
    return WORKER_CLASS


def _daemon(pid_file: Path, state_dir: Path) -> psutil.Process | None:
    """The live process that ``pid_file`` names, or None when it is gone or is not that daemon (recycled pid)."""
    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    if _expected_class(pid_file) not in cmdline:
        return None
    # Before spark-class execs java the command line has no marker; after, it must name this state folder.
    prefix = f"-D{STATE_PROPERTY}="
    markers = [arg for arg in cmdline if arg.startswith(prefix)]
    if markers and markers[-1] != prefix + str(state_dir):
        return None
    return proc


def _pid_files(state_dir: Path, *, history: bool) -> list[Path]:
    if history:
        return [state_dir / HISTORY_PID]
    return [state_dir / MASTER_PID, *sorted(state_dir.glob("worker-*.pid"))]


def _live(state_dir: Path, *, history: bool) -> dict[str, psutil.Process]:
    """Daemon name -> live process, for the pid files of the cluster (or of the history server)."""
    found = {}
    for pid_file in _pid_files(state_dir, history=history):
        proc = _daemon(pid_file, state_dir)
        if proc is not None:
            found[pid_file.stem] = proc
    return found


def _signal_and_wait(procs: Iterable[psutil.Process], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; psutil refuses to signal a pid that was recycled."""
    procs = list(procs)
    for proc in procs:
        _send(proc, psutil.Process.terminate)
    alive = _wait_gone(procs, timeout)
    for proc in alive:
        _send(proc, psutil.Process.kill)
    _wait_gone(alive, 5.0)


def _send(proc: psutil.Process, signal_it) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        signal_it(proc)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running after ``timeout``; a zombie counts as gone (its parent may be anyone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [proc for proc in procs if _running(proc)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for proc in procs:
        if proc in alive:
            continue
        # Reaps a daemon this process started itself (the API used in-process); others are not ours to wait for.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)
    return alive


def _stop(procs: Iterable[psutil.Process], timeout: float) -> None:
    """Stop daemons and then whatever they started and left behind (executor JVMs, Python workers)."""
    procs = list(procs)
    descendants = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            descendants.extend(proc.children(recursive=True))
    _signal_and_wait(procs, timeout)
    _signal_and_wait([p for p in descendants if _running(p)], timeout)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise ClusterError(f"port {port} ({what}) is in use on {LOOPBACK}: {exc.strerror}; choose another") from exc


def _get_json(url: str, timeout: float = 2.0) -> Any | None:
    try:
        with _opener.open(url, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _master_json(webui_port: int) -> dict | None:
    data = _get_json(f"http://{LOOPBACK}:{webui_port}/json/")
    return data if isinstance(data, dict) else None


def _alive_workers(data: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(f"{w.get('host')}:{w.get('port')}" for w in data.get("workers", []) if w.get("state") == "ALIVE")


def _wait_until(ready, procs: Mapping[str, subprocess.Popen], state_dir: Path, deadline: float, what: str) -> Any:
    """Poll ``ready()`` until it returns a value; fail early when a daemon exits, late at ``deadline``."""
    while True:
        result = ready()
        if result:
            return result
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = state_dir / "logs" / f"{name}.log"
                raise ClusterError(f"{what}: {name} exited with code {proc.returncode}; see {log}")
        if time.monotonic() >= deadline:
            logs = ", ".join(str(state_dir / "logs" / f"{name}.log") for name in procs)
            raise ClusterError(f"{what}: not ready in time; see {logs}")
        time.sleep(0.25)


def _prepare(state_dir: Path | str) -> Path:
    state_dir = Path(state_dir).resolve()
    for sub in ("logs", "conf", "work", "local"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    return state_dir


# ---- the cluster ---------------------------------------------------------------------
def cluster_up(
    *,
    workers: int = 2,
    cores: int = 1,
    memory: str = DEFAULT_WORKER_MEMORY,
    port: int = DEFAULT_PORT,
    webui_port: int = DEFAULT_WEBUI_PORT,
    state_dir: Path | str = DEFAULT_STATE_DIR,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> ClusterStatus:
    """Start a master and ``workers`` workers; return once the master reports them all ALIVE.

    The daemons' environment is ``env`` (default: this process's) stripped of what executors must get
    from Spark configuration. On failure everything started is stopped and the message names the logs.
    """
    if not re.fullmatch(r"\d+[kmgt]?", memory, flags=re.IGNORECASE):
        raise ClusterError(f"--memory must look like 4g or 512m, not {memory!r}")
    hosts = worker_hosts(workers)
    state_dir = _prepare(state_dir)
    running = _live(state_dir, history=False)
    if running:
        pids = ", ".join(f"{name} {proc.pid}" for name, proc in running.items())
        raise ClusterError(f"a cluster is already running from {state_dir} ({pids}); make cluster-down first")
    _remove([*_pid_files(state_dir, history=False), state_dir / STATE_FILE])
    _check_port_free(port, "master")
    _check_port_free(webui_port, "master web UI")

    base = os.environ if env is None else env
    master_url = f"spark://{LOOPBACK}:{port}"
    deadline = time.monotonic() + timeout
    procs: dict[str, subprocess.Popen] = {}
    try:
        master_env = daemon_env(base, state_dir=state_dir, local_ip=LOOPBACK)
        master_env["SPARK_MASTER_OPTS"] = _java_options(
            master_env.get("SPARK_MASTER_OPTS"),
            state_dir,
            {
                # A busy port fails the master instead of moving it to the next port, where nobody would look.
                "spark.port.maxRetries": "0",
                # Its REST submission server would take the fixed port 6066, which a second cluster cannot share.
                "spark.master.rest.enabled": "false",
            },
        )
        master_args = [MASTER_CLASS, "--host", LOOPBACK, "--port", str(port), "--webui-port", str(webui_port)]
        procs["master"] = _spawn(state_dir, "master", master_args, master_env)
        # Workers that find no master wait seconds before retrying, so start them once the master answers.
        _wait_until(
            lambda: (_master_json(webui_port) or {}).get("status") == "ALIVE",
            procs,
            state_dir,
            deadline,
            "the master did not start",
        )
        for i, host in enumerate(hosts, start=1):
            name = f"worker-{i}"
            work_dir, local_dir = state_dir / "work" / name, state_dir / "local" / name
            local_dir.mkdir(parents=True, exist_ok=True)
            worker_env = daemon_env(base, state_dir=state_dir, local_ip=host)
            worker_env.update(SPARK_WORKER_DIR=str(work_dir), SPARK_LOCAL_DIRS=str(local_dir))
            worker_env["SPARK_WORKER_OPTS"] = _java_options(worker_env.get("SPARK_WORKER_OPTS"), state_dir)
            worker_args = [
                WORKER_CLASS,
                master_url,
                "--cores",
                str(cores),
                "--memory",
                memory,
                "--host",
                host,
                "--webui-port",
                "0",
                "--work-dir",
                str(work_dir),
            ]
            procs[name] = _spawn(state_dir, name, worker_args, worker_env)

        def all_alive() -> ClusterStatus | None:
            data = _master_json(webui_port)
            if not data or data.get("url") != master_url or len(_alive_workers(data)) < workers:
                return None
            return ClusterStatus(master_url, f"http://{LOOPBACK}:{webui_port}", _alive_workers(data))

        status = _wait_until(all_alive, procs, state_dir, deadline, f"{workers} workers did not register")
    except BaseException:
        started = []
        for proc in procs.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                started.append(psutil.Process(proc.pid))
        _stop(started, timeout=10)
        for proc in procs.values():
            proc.poll()  # reaps a child that is already gone
        _remove(_pid_files(state_dir, history=False))
        raise
    state = {"master_url": master_url, "webui_port": webui_port, "worker_hosts": hosts}
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return status


def cluster_down(*, state_dir: Path | str = DEFAULT_STATE_DIR, timeout: float = 10.0) -> list[str]:
    """Stop the daemons named by the pid files (only if they still are those daemons) and their executors.

    Returns the names stopped, e.g. ``["master", "worker-1"]``; an empty list when nothing ran.
    """
    state_dir = Path(state_dir).resolve()
    running = _live(state_dir, history=False)
    _stop(running.values(), timeout)
    _remove([*_pid_files(state_dir, history=False), state_dir / STATE_FILE])
    return list(running)


def cluster_status(*, state_dir: Path | str = DEFAULT_STATE_DIR) -> ClusterStatus | None:
    """What the master of the cluster in ``state_dir`` reports, or None when it does not run."""
    state_dir = Path(state_dir).resolve()
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if _daemon(state_dir / MASTER_PID, state_dir) is None:
        return None
    data = _master_json(int(state["webui_port"]))
    if not data or data.get("url") != state["master_url"]:
        return None
    return ClusterStatus(state["master_url"], f"http://{LOOPBACK}:{state['webui_port']}", _alive_workers(data))


# ---- the history server --------------------------------------------------------------
def history_up(
    *,
    event_logs: Path | str = DEFAULT_EVENT_LOGS,
    port: int = DEFAULT_HISTORY_PORT,
    state_dir: Path | str = DEFAULT_STATE_DIR,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> str:
    """Start Spark's history server on the event-log folder ``event_logs``; return its URL once it answers."""
    state_dir = _prepare(state_dir)
    event_logs = Path(event_logs).resolve()
    # The history server exits when its log folder is missing; a fresh checkout has none yet.
    event_logs.mkdir(parents=True, exist_ok=True)
    running = _live(state_dir, history=True)
    if running:
        raise ClusterError(
            f"a history server is already running from {state_dir} "
            f"(pid {running['history'].pid}); make history-down first"
        )
    _check_port_free(port, "history server")
    history_env = daemon_env(os.environ if env is None else env, state_dir=state_dir, local_ip=LOOPBACK)
    history_env["SPARK_HISTORY_OPTS"] = _java_options(
        history_env.get("SPARK_HISTORY_OPTS"),
        state_dir,
        {
            "spark.history.fs.logDirectory": event_logs.as_uri(),
            "spark.history.ui.port": str(port),
            "spark.port.maxRetries": "0",
        },
    )
    proc = _spawn(state_dir, "history", [HISTORY_CLASS], history_env)
    url = f"http://{LOOPBACK}:{port}"
    try:
        _wait_until(
            lambda: isinstance(_get_json(f"{url}/api/v1/applications"), list),
            {"history": proc},
            state_dir,
            time.monotonic() + timeout,
            "the history server did not start",
        )
    except BaseException:
        with contextlib.suppress(psutil.NoSuchProcess):
            _stop([psutil.Process(proc.pid)], timeout=10)
        proc.poll()
        _remove([state_dir / HISTORY_PID])
        raise
    return url


def history_down(*, state_dir: Path | str = DEFAULT_STATE_DIR, timeout: float = 10.0) -> bool:
    """Stop the history server of ``state_dir``; False when none ran."""
    state_dir = Path(state_dir).resolve()
    running = _live(state_dir, history=True)
    _stop(running.values(), timeout)
    _remove([state_dir / HISTORY_PID])
    return bool(running)


# ---- command line --------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"pid files, logs and work folders (default: {DEFAULT_STATE_DIR}/)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m fruits_kedro.cloud.local_cluster",
        description="A standalone Spark cluster on loopback: separate executor JVMs and Python workers, as on EMR.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="start a master and workers")
    up.add_argument("--workers", type=int, default=2, help="number of workers (default: 2)")
    up.add_argument("--cores", type=int, default=1, help="cores per worker (default: 1)")
    up.add_argument(
        "--memory",
        default=DEFAULT_WORKER_MEMORY,
        help=f"memory each worker offers its executors (default: {DEFAULT_WORKER_MEMORY})",
    )
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"master port (default: {DEFAULT_PORT})")
    up.add_argument(
        "--webui-port", type=int, default=DEFAULT_WEBUI_PORT, help=f"master web UI port (default: {DEFAULT_WEBUI_PORT})"
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the workers (default: 60)")
    down = commands.add_parser("down", parents=[common], help="stop the master, the workers and their executors")
    down.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL (default: 10)")
    commands.add_parser("status", parents=[common], help="print the master URL and the workers alive")
    history = commands.add_parser("history-up", parents=[common], help="start the Spark history server")
    history.add_argument(
        "--event-logs",
        type=Path,
        default=DEFAULT_EVENT_LOGS,
        help=f"folder of Spark event logs (default: {DEFAULT_EVENT_LOGS})",
    )
    history.add_argument(
        "--port", type=int, default=DEFAULT_HISTORY_PORT, help=f"web UI port (default: {DEFAULT_HISTORY_PORT})"
    )
    history.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it (default: 60)")
    history_stop = commands.add_parser("history-down", parents=[common], help="stop the history server")
    history_stop.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL (default: 10)")
    return parser.parse_args(argv)


def _print_status(status: ClusterStatus) -> None:
    print(f"master:  {status.master_url}")
    print(f"web UI:  {status.webui_url}")
    print(f"workers alive ({len(status.workers)}): {', '.join(status.workers) or '-'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "up":
            status = cluster_up(
                workers=args.workers,
                cores=args.cores,
                memory=args.memory,
                port=args.port,
                webui_port=args.webui_port,
                state_dir=args.state_dir,
                timeout=args.timeout,
            )
            _print_status(status)
            print(f"pids and logs in {args.state_dir.resolve()}; stop it with `make cluster-down`")
            print(
                "executors get no PYSPARK_PYTHON or AWS_* from the environment: pass spark.pyspark.python "
                "and the S3 settings in the Spark configuration"
            )
        elif args.command == "down":
            stopped = cluster_down(state_dir=args.state_dir, timeout=args.timeout)
            print(f"stopped {', '.join(stopped)}" if stopped else f"no cluster running from {args.state_dir}")
        elif args.command == "status":
            status = cluster_status(state_dir=args.state_dir)
            if status is None:
                print("not running")
            else:
                _print_status(status)
        elif args.command == "history-up":
            url = history_up(event_logs=args.event_logs, port=args.port, state_dir=args.state_dir, timeout=args.timeout)
            print(f"history server: {url} (event logs in {args.event_logs.resolve()})")
        elif args.command == "history-down":
            stopped = history_down(state_dir=args.state_dir, timeout=args.timeout)
            print("stopped the history server" if stopped else f"no history server running from {args.state_dir}")
    except ClusterError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
