"""The Ray executor's harness: a real one-node Ray cluster (`ray start --head`) on loopback, once per session.

What makes the cluster honest for jobsub:
- **Its Python lacks jobsub.** The head runs from its own virtual environment whose only link to the test
  environment is a .pth line naming the test venv's site-packages: Ray and jobsub's dependencies import,
  but jobsub does not (the editable install's own .pth is not processed from there, and PYTHONPATH is
  removed). Every job therefore runs the jobsub the executor ships as a py_modules package, as on a stock
  cluster whose image has jobsub's dependencies. `cluster_python` lets a test prove the lack.
- **Token authentication is on** (RAY_AUTH_MODE=token): every jobsub call sends the Authorization header
  from the variable the profile names in ray.headers_env, so 401/403 handling meets a real dashboard.
- **Its own temp dir and free ports** for every Ray component, so parallel sessions never collide.

Stopping: `ray stop` stops *every* Ray cluster of the machine's users, so it is not used. The fixture
ends the processes whose command line names its own temp dir, and their descendants, by pid (SIGTERM,
then SIGKILL after 10 s).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.backends import backend_unavailable
from tests.conftest import free_port
from tests.executors.harness import KILL_RUNNER, ExecutorHarness, processes_with_env

#: the variable the test profile names for the Authorization header (not JOBSUB_*: those go to runners)
AUTH_VAR = "TEST_RAY_AUTHORIZATION"


class RayCluster:
    """A running head: its dashboard URL, token, temp dir and the Python its jobs run with."""

    def __init__(self, root: Path, url: str, token: str) -> None:
        self.root = root
        self.url = url
        self.token = token
        self.cluster_python = root / "venv" / "bin" / "python"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def processes(self) -> list[Any]:
        """This cluster's processes: those whose command line names its temp dir, and their descendants."""
        import psutil

        mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
        found: dict[int, Any] = {}
        marker = str(self.root)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.pid in mine or not any(marker in arg for arg in proc.info["cmdline"] or []):
                    continue
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
            except psutil.Error:
                continue
        return list(found.values())

    def stop(self) -> None:
        import psutil

        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)


def _cluster_venv(root: Path) -> Path:
    """A venv whose site-packages reach the test venv's packages through a .pth path line (no jobsub)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test-env-packages.pth").write_text("\n".join(sorted(paths)) + "\n")
    return venv


def start_ray_cluster(root: Path, cpus: int = 2) -> RayCluster:
    """`ray start --head` on loopback with every port chosen free; waits for the Jobs API (deadline)."""
    if importlib.util.find_spec("ray") is None:
        backend_unavailable("ray is not installed: pip install -e '.[test]' (the test extra has ray[default])")
    venv = _cluster_venv(root)
    token = secrets.token_hex(32)
    run_dir = root / "run"  # Ray runs job entrypoints in the folder `ray start` ran in
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "XDG_", "AWS_", "JOBSUB_", "RAY_"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # else Ray swaps 127.0.0.1 for the machine's address
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        HOME=str(root),  # keeps ~/.ray (token files, caches) out of the user's home
    )
    command = [str(venv / "bin" / "python"), "-m", "ray.scripts.scripts", "start", "--head"]
    command += [f"--num-cpus={cpus}", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
    command += ["--node-ip-address=127.0.0.1", f"--temp-dir={root / 'r'}", "--disable-usage-stats"]
    failure = ""
    for _attempt in range(2):  # Ray gives its raylet a fixed 30 s to register: a busy machine may need two
        dashboard = free_port()
        ports = {
            "--port": free_port(),
            "--dashboard-port": dashboard,
            "--ray-client-server-port": free_port(),
            "--dashboard-agent-listen-port": free_port(),
            "--dashboard-agent-grpc-port": free_port(),
            "--runtime-env-agent-port": free_port(),
            "--metrics-export-port": free_port(),
            "--node-manager-port": free_port(),
            "--object-manager-port": free_port(),
            "--min-worker-port": 0,  # 0 and 0: any free port per worker
            "--max-worker-port": 0,
        }
        cluster = RayCluster(root, f"http://127.0.0.1:{dashboard}", token)
        try:
            started = subprocess.run(
                [*command, *(f"{flag}={value}" for flag, value in ports.items())],
                env=env,
                cwd=run_dir,
                capture_output=True,
                text=True,
                timeout=240,
            )
        except subprocess.TimeoutExpired:
            cluster.stop()
            failure = "ray start --head did not finish in 240 s"
            continue
        if started.returncode == 0:
            break
        cluster.stop()
        tail = " | ".join((started.stdout + started.stderr).strip().splitlines()[-3:])
        failure = f"ray start --head failed ({started.returncode}): {tail}"
    else:
        backend_unavailable(failure)
    deadline = time.monotonic() + 120
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{cluster.url}/api/jobs/", headers=cluster.headers, timeout=5)
            if answer.status_code == 200:
                return cluster
            last = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    cluster.stop()
    backend_unavailable(f"the Ray Jobs API at {cluster.url} did not answer within 120 s ({last})")


def job_processes(job_id: str, runtime_only: bool = False) -> list[int]:
    """Live processes of a job: those whose environment carries JOBSUB_JOB_ID=<job id>, except Ray's own
    worker processes (the job's supervisor actor runs with the job's runtime_env too)."""
    return [
        pid
        for pid, cmdline in processes_with_env("JOBSUB_JOB_ID", job_id).items()
        if not (cmdline.startswith(b"ray::") or b"default_worker.py" in cmdline)
        and (not runtime_only or b"jobsub.runtime" in cmdline)
    ]


def _job_id(handle: dict[str, Any]) -> str:
    return str(handle["submission_id"]).removeprefix("jobsub-")


def _kill_runner(handle: dict[str, Any]) -> None:
    pids = job_processes(_job_id(handle), runtime_only=True)
    assert pids, f"no runtime process for {handle}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _nothing_running(handle: dict[str, Any]) -> bool:
    return not job_processes(_job_id(handle))


def _reaper(cluster: RayCluster):
    def reap(handle: dict[str, Any]) -> None:
        if not handle.get("submission_id"):
            return
        try:
            requests.post(f"{cluster.url}/api/jobs/{handle['submission_id']}/stop", headers=cluster.headers, timeout=10)
        except requests.RequestException:
            pass
        for pid in job_processes(_job_id(handle)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    return reap


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    root = Path(tempfile.mkdtemp(prefix="jobsub-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    cluster = start_ray_cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_harness(ray_cluster: RayCluster) -> ExecutorHarness:
    return ExecutorHarness(
        kind="ray",
        profile_settings={
            "executor": "ray",
            "ray": {"address": ray_cluster.url, "headers_env": {"Authorization": AUTH_VAR}},
        },
        cli_env={AUTH_VAR: f"Bearer {ray_cluster.token}"},
        capabilities=frozenset({KILL_RUNNER}),
        kill_runner=_kill_runner,
        nothing_running=_nothing_running,
        reap=_reaper(ray_cluster),
        notes={
            "memory_limit": "Ray's entrypoint_memory reserves memory for scheduling; it does not cap the job "
            "(Ray's memory monitor acts only when the whole node runs short)"
        },
    )
