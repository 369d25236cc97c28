"""The Slurm executor beyond the conformance suite, on the real one-node cluster of harness_slurm.py:
queue reasons a user sees, sbatch's own errors, credentials kept off disk, one squeue for many jobs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEY_ID, SECRET, Env, make_env, poll
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.slurm_cluster import SlurmCluster


def _slurm_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str = "local", **slurm: Any
) -> tuple[Env, ExecutorHarness]:
    harness: ExecutorHarness = request.getfixturevalue("slurm_harness")
    moto = request.getfixturevalue("moto_url") if store == "s3" else None
    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_")):
            monkeypatch.delenv(key)
    env = make_env(tmp_path, store, moto)
    settings = {**harness.profile_settings, "slurm": {**harness.profile_settings["slurm"], **slurm}}
    configure(env, ExecutorHarness(kind="slurm", profile_settings=settings, cli_env=harness.cli_env))
    for key, value in env.vars.items():
        monkeypatch.setenv(key, value)
    return env, harness


@pytest.fixture
def senv(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return _slurm_env(request, tmp_path, monkeypatch)[0]


def _code(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(body)
    return folder


def _submit(env: Env, code: Path, *extra: str, extra_env: dict[str, str] | None = None) -> str:
    result = env.run("submit", "python-script", "--code", str(code), "--json", *extra, extra_env=extra_env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["job_id"])


def _handle(env: Env, job_id: str) -> dict[str, Any]:
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    store = env.store()
    return dict(
        JobRecord(store, ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix(), job_id).get_json("executor.json")
    )


def _scontrol(cluster: SlurmCluster, slurm_id: str) -> dict[str, str]:
    out = cluster.run("scontrol", "show", "job", "--oneliner", slurm_id).stdout
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


def _held_job(senv: Env, tmp_path: Path, *extra: str) -> str:
    return _submit(senv, _code(tmp_path, "print('ran')\n"), "--set", "timeout=10m", *extra)


def test_queued_job_shows_the_queue_reason_in_status_follow_and_jobs_then_runs(
    senv: Env, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The node has 2 CPUs: a 2-CPU job holds it, and a second one waits with Slurm's reason 'Resources'."""
    busy = _submit(
        senv, _code(tmp_path, "import time\nprint('busy', flush=True)\ntime.sleep(600)\n"), "--set", "resources.cpus=2"
    )
    poll(lambda: "busy" in senv.run("logs", busy).stdout, 120, 0.3, "the first job running")
    (tmp_path / "second").mkdir()
    waiting = _submit(
        senv, _code(tmp_path / "second", "print('second ran', flush=True)\n"), "--set", "resources.cpus=2"
    )
    status = poll(
        lambda: (s := senv.run_json("status", waiting))["status"]["reason"] == "queued: Resources" and s,
        30,
        0.3,
        "the queue reason in status",
    )
    assert status["status"]["state"] == "QUEUED"
    assert re.match(r"slurm job \d+, partition debug", status["executor"]), status["executor"]
    rows = {row["id"]: row for row in senv.run_json("jobs")}
    assert rows[waiting]["reason"] == "queued: Resources" and rows[busy]["state"] == "RUNNING"
    follower = senv.popen("logs", "-f", waiting, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stderr is not None
        line = follower.stderr.readline()
        assert line.strip() == "[jobsub] waiting to start: queued: Resources"
        cancelled = senv.run("cancel", busy, timeout=120)
        assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout, cancelled.stderr
        out, _ = follower.communicate(timeout=120)
    finally:
        follower.kill()
    assert follower.returncode == 0 and "second ran" in out
    assert senv.run_json("status", waiting)["status"]["state"] == "SUCCEEDED"


def test_spec_maps_to_sbatch_and_a_held_job_cancels_to_cancelled(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    env, _ = _slurm_env(request, tmp_path, monkeypatch, sbatch_args=["--hold", "--comment=from-profile"])
    job_id = _held_job(env, tmp_path, "--set", "resources.cpus=1.5", "--set", "resources.memory=300MiB")
    handle = _handle(env, job_id)
    job = _scontrol(slurm_cluster, handle["job_id"])
    assert job["JobName"] == job_id and job["Partition"] == "debug" and job["Comment"] == "from-profile"
    assert job["CPUs/Task"] == "2" and job["MinMemoryNode"] == "300M"
    assert job["TimeLimit"] == "00:15:00"  # 10 min + a 5 min backstop margin: the runtime's own timeout acts first
    assert job["JobState"] == "PENDING" and job["Reason"] == "JobHeldUser"
    assert env.run_json("status", job_id)["status"]["reason"] == "queued: JobHeldUser"
    done = env.run("cancel", job_id, timeout=60)
    assert done.returncode == 0 and "CANCELLED" in done.stdout, done.stdout + done.stderr
    status = env.run_json("status", job_id)["status"]
    assert status["state"] == "CANCELLED" and status["reason"] == "cancelled by request before it started"
    assert _scontrol(slurm_cluster, handle["job_id"])["JobState"] == "CANCELLED"


def test_jobs_asks_squeue_once_for_many_jobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    """A real squeue behind a shim on PATH that counts its calls."""
    env, _ = _slurm_env(request, tmp_path, monkeypatch, sbatch_args=["--hold"])
    shim, calls = tmp_path / "shim", tmp_path / "squeue-calls"
    shim.mkdir()
    real = subprocess.run(["which", "squeue"], capture_output=True, text=True, check=True).stdout.strip()
    (shim / "squeue").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    (shim / "squeue").chmod(0o755)
    ids = [_held_job(env, tmp_path, "--name", f"many{i}") for i in range(4)]
    try:
        rows = json.loads(
            env.run("jobs", "--json", extra_env={"PATH": f"{shim}:{os.environ['PATH']}"}, check=True).stdout
        )
        assert {r["id"]: r["reason"] for r in rows if r["id"] in ids} == dict.fromkeys(ids, "queued: JobHeldUser")
        assert len(calls.read_text().splitlines()) == 1, calls.read_text()
    finally:
        for job_id in ids:
            env.run("cancel", job_id, "--no-wait")


def test_a_partition_that_does_not_exist_fails_before_any_upload_with_sbatch_reason(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _ = _slurm_env(request, tmp_path, monkeypatch, partition="nope")
    result = env.run("submit", "python-script", "--code", str(_code(tmp_path, "print(1)\n")))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid partition" in result.stderr.lower(), result.stderr
    assert env.run_json("jobs") == []  # no record, nothing uploaded


def test_missing_slurm_commands_and_a_silent_controller_are_one_line_errors(
    senv: Env, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    code = _code(tmp_path, "print(1)\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = senv.run("submit", "python-script", "--code", str(code), extra_env={"PATH": str(empty)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "sbatch not found on PATH" in result.stderr and "login node" in result.stderr
    dead = tmp_path / "dead.conf"
    text = slurm_cluster.conf.read_text()
    text = re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=1", text).replace("MessageTimeout=10", "MessageTimeout=2")
    dead.write_text(text)
    started = time.monotonic()
    result = senv.run("submit", "python-script", "--code", str(code), extra_env={"SLURM_CONF": str(dead)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "Unable to contact slurm controller" in result.stderr and "is slurmctld up?" in result.stderr
    assert time.monotonic() - started < 60
    assert senv.run_json("jobs") == []


def test_credentials_reach_the_job_but_no_file_on_disk_outside_the_controller_state(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    """On the S3 store the runner needs the resolved credentials: the job succeeding proves they arrived."""
    env, harness = _slurm_env(request, tmp_path, monkeypatch, store="s3")
    code = _code(
        tmp_path,
        "import os, hashlib\n"
        "print('key id sha', hashlib.sha256(os.environ['AWS_ACCESS_KEY_ID'].encode()).hexdigest()[:12])\n"
        "print('secret sha', hashlib.sha256(os.environ['AWS_SECRET_ACCESS_KEY'].encode()).hexdigest()[:12])\n",
    )
    job_id = _submit(env, code)
    done = env.run("logs", "-f", job_id, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"key id sha {hashlib.sha256(KEY_ID.encode()).hexdigest()[:12]}" in done.stdout
    assert f"secret sha {hashlib.sha256(SECRET.encode()).hexdigest()[:12]}" in done.stdout
    handle = _handle(env, job_id)
    script = Path(handle["run_dir"]) / "job.sbatch"
    assert script.stat().st_mode & 0o077 == 0 and Path(handle["run_dir"]).stat().st_mode & 0o077 == 0
    assert "exec " in script.read_text() and "AWS_" not in script.read_text()
    work_root = Path(harness.profile_settings["slurm"]["work_root"])
    holders = []
    for root in (work_root, slurm_cluster.root, env.root):
        for path in root.rglob("*"):
            if path.is_file() and SECRET.encode() in path.read_bytes():
                holders.append(path)
    state = slurm_cluster.root / "state"
    assert holders, "the controller keeps the job's environment: this check must see it"
    for path in holders:  # only the controller's private job state (where Slurm keeps every job's environment)
        assert state in path.parents and path.stat().st_mode & 0o077 == 0, path
    shown = slurm_cluster.run("scontrol", "show", "job", "-dd", handle["job_id"]).stdout
    assert SECRET not in shown and SECRET not in env.run("status", job_id).stdout
