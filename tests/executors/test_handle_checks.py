"""A record in the bucket is data, not an order (issue 17 item 3).

Whoever can write the jobs prefix can rewrite a job's executor.json. These tests rewrite it the way an
attacker would and check that `status`, `cancel` and `logs` refuse it with one line instead of acting:
a local pid of an unrelated process is never signalled; a Ray address of a listening capture server on
loopback never receives a request (so never the Ray token); a Slurm job id of another of the user's jobs
is never scancelled (Slurm harness: run under the heavy lock). Beside each, the happy path still works.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import Env, code_folder, free_port, make_env, poll, use_env
from tests.executors.harness import ExecutorHarness, configure


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> Env:
    result = make_env(tmp_path, "local")
    use_env(monkeypatch, result)
    return result


def _record(env: Env, job_id: str):
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    profile = resolve_profile()[1]
    return JobRecord(env.store(), ObjectURI.parse(profile.jobs_uri).as_prefix(), job_id)


def _sleeping_job(env: Env, tmp_path: Path) -> str:
    code = code_folder(tmp_path, "import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    job_id = env.run_json("submit", "python-script", "--code", str(code))["job_id"]
    poll(lambda: "ready" in env.run("logs", job_id).stdout, 120, 0.3, "the job running")
    return str(job_id)


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def _one_line(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# -- local: a pid that is not this job's runner is never signalled ------------------------------------------
def test_a_rewritten_local_record_pointing_at_an_unrelated_pid_does_not_signal_it(env: Env, tmp_path: Path) -> None:
    job_id = _sleeping_job(env, tmp_path)
    record = _record(env, job_id)
    real = dict(record.get_json("executor.json"))
    bystander = subprocess.Popen(["sleep", "600"])  # the user's own unrelated process, same uid
    try:
        forged = {**real, "pid": bystander.pid, "start_time": _start_time(bystander.pid)}
        record.put_json("executor.json", forged)
        for command in (["cancel", job_id], ["status", job_id]):
            line = _one_line(env.run(*command), 1)
            assert f"pid {bystander.pid}" in line and "not this job's runner" in line, line
        time.sleep(0.5)
        assert bystander.poll() is None, "the unrelated process was signalled"
        logs = env.run("logs", job_id)  # reading logs acts on nothing: still works
        assert logs.returncode == 0 and "ready" in logs.stdout
        # the happy path: the true handle back, cancel stops the job
        record.put_json("executor.json", real)
        cancelled = env.run("cancel", job_id, extra_env={"JOBSUB_CANCEL_GRACE_SECONDS": "2"})
        assert cancelled.returncode == 0, cancelled.stderr
        poll(lambda: env.run_json("status", job_id)["status"]["state"] == "CANCELLED", 60, 0.3, "CANCELLED")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        try:
            os.kill(int(real["pid"]), signal.SIGKILL)
        except (ProcessLookupError, KeyError):
            pass


def test_a_recycled_pid_with_another_start_time_is_not_signalled(env: Env, tmp_path: Path) -> None:
    """The pid of the job's own runner but the start time of another process: refused, nothing signalled."""
    job_id = _sleeping_job(env, tmp_path)
    record = _record(env, job_id)
    real = dict(record.get_json("executor.json"))
    try:
        record.put_json("executor.json", {**real, "start_time": "1"})
        line = _one_line(env.run("cancel", job_id), 1)
        assert "started at another time" in line, line
        assert Path(f"/proc/{real['pid']}").exists()
    finally:
        record.put_json("executor.json", real)
        env.run("cancel", job_id, extra_env={"JOBSUB_CANCEL_GRACE_SECONDS": "1"})
        poll(lambda: env.run_json("status", job_id)["status"]["state"] == "CANCELLED", 60, 0.3, "CANCELLED")


# -- ray: the token is never sent to an address the record names -------------------------------------------
class _Capture(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def _any(self) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "RUNNING", "ray_version": "2.0"}')

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, list]]:
    _Capture.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Capture.seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_rewritten_ray_record_never_sends_the_token_to_another_host(
    env: Env, tmp_path: Path, capture: tuple[str, list]
) -> None:
    """A job record rewritten to name a capture server (listening on loopback) as its Ray dashboard: status,
    cancel, logs and jobs make no request to it, so the Authorization header never leaves for it."""
    url, seen = capture
    job_id = _sleeping_job(env, tmp_path)  # a real running job (local), then its record rewritten
    record = _record(env, job_id)
    real = dict(record.get_json("executor.json"))
    token = "Bearer capture-me-" + os.urandom(8).hex()
    ray_settings = {"address": f"http://127.0.0.1:{free_port()}", "headers_env": {"Authorization": "TEST_RAY_TOKEN"}}
    ray_profile = {"executor": "ray", "ray": ray_settings}
    configure(env, ExecutorHarness(kind="ray", profile_settings=ray_profile, cli_env={"TEST_RAY_TOKEN": token}))
    try:
        record.put_json("executor.json", {"kind": "ray", "address": url, "submission_id": f"jobsub-{job_id}"})
        for command in (["status", job_id], ["cancel", job_id]):
            line = _one_line(env.run(*command), 2)
            assert "not this profile's" in line and "not contacting it" in line, line
        assert env.run("logs", job_id).returncode == 0
        env.run("jobs")
        assert seen == [], f"the capture server was contacted: {seen}"
        # the same submission at the profile's address but another job's id is refused too
        record.put_json(
            "executor.json", {"kind": "ray", "address": ray_settings["address"], "submission_id": "jobsub-x"}
        )
        line = _one_line(env.run("cancel", job_id), 2)
        assert "jobsub-x" in line and "not acting on it" in line, line
    finally:
        os.kill(int(real["pid"]), signal.SIGKILL)


# -- slurm: a Slurm job that is not this job is never scancelled -------------------------------------------
def test_a_rewritten_slurm_record_does_not_cancel_another_slurm_job(
    env: Env, tmp_path: Path, slurm_harness: ExecutorHarness, slurm_cluster
) -> None:
    configure(env, slurm_harness)
    job_id = _sleeping_job(env, tmp_path)
    record = _record(env, job_id)
    real = dict(record.get_json("executor.json"))
    other = slurm_cluster.run(
        "sbatch", "--parsable", f"--partition={slurm_cluster.partition}", "--output=/dev/null", "--wrap", "sleep 600"
    )
    assert other.returncode == 0, other.stderr
    other_id = other.stdout.strip().split(";")[0]

    def state(slurm_id: str) -> str:
        out = slurm_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={slurm_id}", "-o", "%T")
        return str(out.stdout.strip())

    try:
        poll(lambda: state(other_id) == "RUNNING" or state(other_id) == "PENDING", 60, 0.5, "the other job queued")
        # `status` first: a refused `cancel` still leaves the cancel request in the record (the runner acts on
        # that itself), so after it the job may already be final and its handle no longer looked at
        record.put_json("executor.json", {**real, "job_id": "1 --user=root"})
        line = _one_line(env.run("status", job_id), 1)
        assert "not a job id" in line, line
        record.put_json("executor.json", {**real, "job_id": other_id})
        line = _one_line(env.run("cancel", job_id), 1)
        assert f"Slurm job {other_id}" in line and "not this job" in line, line
        time.sleep(1)
        assert state(other_id) in ("RUNNING", "PENDING"), "the other Slurm job was cancelled"
        record.put_json("executor.json", real)
        assert env.run("cancel", job_id).returncode == 0
        poll(lambda: env.run_json("status", job_id)["status"]["state"] == "CANCELLED", 90, 0.5, "CANCELLED")
    finally:
        slurm_cluster.run("scancel", other_id)
        slurm_cluster.run("scancel", str(real["job_id"]))


# -- slurm: the container prefix keeps the image inert -----------------------------------------------------
@pytest.mark.parametrize("template", ["apptainer exec {image}", "apptainer exec '{image}'", 'apptainer exec "{image}"'])
def test_slurm_container_prefix_refuses_an_image_that_would_be_code(template: str, tmp_path: Path) -> None:
    from jobsub.config import Profile
    from jobsub.errors import ExecutorUnavailableError
    from jobsub.executors.base import LaunchRequest
    from jobsub.executors.slurm import SlurmExecutor, container_prefix

    profile = Profile.model_validate({"executor": "slurm", "slurm": {"container": template}})
    for hostile in ["x'; touch /tmp/pwned; '", 'x"; touch /tmp/pwned; "', "x$(touch /tmp/pwned)", "-x --bind /:/h"]:
        with pytest.raises(ExecutorUnavailableError, match="is not an image name"):
            container_prefix(template, hostile)
        request = LaunchRequest(job_id="j1", job_uri="s3://b/jobs/j1/", profile=profile, image=hostile)
        with pytest.raises(ExecutorUnavailableError, match="is not an image name"):
            SlurmExecutor(profile).batch_script(request, tmp_path)
    good = "docker://org/train:1.2@sha256:" + "a" * 64
    script = SlurmExecutor(profile).batch_script(
        LaunchRequest(job_id="j1", job_uri="s3://b/jobs/j1/", profile=profile, image=good), tmp_path
    )
    line = next(line for line in script.splitlines() if line.startswith("exec "))
    assert good in line
    # the shell reads the image back as one word equal to the name, whatever quotes the template used
    words = subprocess.run(
        ["bash", "-c", f"set -- {line.removeprefix('exec ')}; printf '%s\\n' \"$@\""],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert words[:3] == ["apptainer", "exec", good], words


def test_ray_profile_address_with_credentials_is_refused(env: Env) -> None:
    result = env.run(
        "profile",
        "add",
        "r",
        "--storage",
        "local",
        "--executor",
        "ray",
        "--ray-address",
        "http://admin:hunter22@head:8265",
    )
    assert result.returncode == 2, result.stderr
    assert "hunter22" not in result.stdout + result.stderr and "ray.headers_env" in result.stderr
    assert "profile r: ray.address: " in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("auto", "not a Ray dashboard address"),
        ("127.0.0.1:6379", "not a Ray dashboard address"),
        ("ray://head:10001", "not a Ray dashboard address"),
        ("http://u:s3cretpw@127.0.0.1:1", "must not hold credentials"),
    ],
)
def test_ray_address_env_other_forms_get_one_line(env: Env, tmp_path: Path, value: str, expect: str) -> None:
    configure(env, ExecutorHarness(kind="ray", profile_settings={"executor": "ray", "ray": {"address": None}}))
    code = code_folder(tmp_path, "print('x')\n")
    result = env.run("submit", "python-script", "--code", str(code), extra_env={"RAY_ADDRESS": value})
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("estimate:")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert expect in lines[0] and "s3cretpw" not in result.stderr, lines[0]
    if "dashboard" in expect:
        assert "http://HEAD:8265" in lines[0]
    assert env.run_json("jobs") == []


def test_ray_address_env_http_is_honoured_and_the_profile_comes_first(env: Env, tmp_path: Path) -> None:
    """RAY_ADDRESS=http://... is used when the profile has no address (nothing listens there: the error names
    it); a profile address wins over RAY_ADDRESS."""
    port, other = free_port(), free_port()
    code = code_folder(tmp_path, "print('x')\n")
    configure(env, ExecutorHarness(kind="ray", profile_settings={"executor": "ray", "ray": {"address": None}}))
    result = env.run(
        "submit", "python-script", "--code", str(code), extra_env={"RAY_ADDRESS": f"http://127.0.0.1:{port}"}
    )
    assert result.returncode == 2 and f"http://127.0.0.1:{port}" in result.stderr, result.stderr
    settings = {"executor": "ray", "ray": {"address": f"127.0.0.1:{other}"}}
    configure(env, ExecutorHarness(kind="ray", profile_settings=settings))
    result = env.run(
        "submit", "python-script", "--code", str(code), extra_env={"RAY_ADDRESS": f"http://127.0.0.1:{port}"}
    )
    assert result.returncode == 2 and f"http://127.0.0.1:{other}" in result.stderr, result.stderr
    assert json.loads(env.run("jobs", "--json").stdout) == []


def test_a_runner_that_is_exiting_is_gone_not_a_rewritten_record() -> None:
    """Check the handle of processes like the runner (threads, JOBSUB_JOB_ID) over and over while they exit:
    Linux answers ESRCH for /proc/PID/environ once a process has released its memory, while /proc still
    says R. Such a handle is a finishing runner; `status` said "cannot be inspected" (exit 1) on it."""
    import socket
    import sys

    from jobsub.executors.local import LocalExecutor, LocalHandle, _proc_start_time

    executor = LocalExecutor.__new__(LocalExecutor)
    script = (
        "import threading, time\n"
        "threads = [threading.Thread(target=time.sleep, args=(0.01,)) for _ in range(4)]\n"
        "[t.start() for t in threads]\ntime.sleep(0.02)\n"
    )
    checks = 0
    for _ in range(60):
        # -S -I: no site packages to import, so each child starts in a third of the time (the loop below checks
        # it busily meanwhile, 60 times over: the slowest local test under CI load otherwise)
        proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", script], env={"JOBSUB_JOB_ID": "job-exiting"})
        try:
            start = None
            while proc.poll() is None:
                start = start or _proc_start_time(proc.pid)
                handle = LocalHandle(kind="local", host=socket.gethostname(), pid=proc.pid, start_time=start)
                executor.verify_handle(handle, "job-exiting")  # never raises for the job's own runner
                checks += 1
        finally:
            proc.kill()
            proc.wait()
    assert checks > 60
