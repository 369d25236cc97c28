"""The conformance suite: the same cases on every executor kind (local, docker, slurm, ray) and store.

An executor is done when it passes every case that applies to it; a case that cannot apply skips with
the harness's reason. Every job here is real: a real runner on the real backend, real jobsub CLI calls.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder, poll, write_random
from tests.executors.harness import KILL_RUNNER, MEMORY_LIMIT, ExecutorHarness


def _submit_args(harness: ExecutorHarness, code: Path, *extra: str) -> list[str]:
    sets = [arg for s in harness.spec_sets for arg in ("--set", s)]
    return ["submit", "python-script", "--code", str(code), *sets, *extra]


def test_follow_shows_every_line_once_in_order_and_exits_with_the_job_code(
    xenv: tuple[Env, ExecutorHarness], tmp_path: Path
) -> None:
    env, harness = xenv
    code = code_folder(
        tmp_path,
        "import sys\nfor i in range(200):\n    print(f'line {i}', flush=True)\nsys.exit(7)\n",
    )
    result = env.run(*_submit_args(harness, code, "--follow"), timeout=300)
    assert result.returncode == 7, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(200)]
    job_id = result.stdout.splitlines()[0]
    status = env.run_json("status", job_id)
    assert status["status"]["state"] == "FAILED" and status["status"]["exit_code"] == 7
    assert harness.kind in json.dumps(status["executor"]).lower() or status["executor"]


def test_idempotent_submit_starts_one_job(xenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    env, harness = xenv
    code = code_folder(tmp_path, "print('hello')\n")
    first = env.run_json(*_submit_args(harness, code, "--idempotency-key", "k1"))
    second = env.run_json(*_submit_args(harness, code, "--idempotency-key", "k1"))
    assert first["job_id"] == second["job_id"] and first["created"] and not second["created"]
    done = env.run("logs", "-f", first["job_id"], timeout=300)
    assert done.returncode == 0 and "hello" in done.stdout


def _handle(env: Env, job_id: str) -> dict:
    """The executor's handle of a job (executor.json in its record): what the harness kills and inspects."""
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    store = env.store()
    profile = resolve_profile()[1]
    return dict(JobRecord(store, ObjectURI.parse(profile.jobs_uri).as_prefix(), job_id).get_json("executor.json"))


def _status(env: Env, job_id: str) -> dict:
    return env.run_json("status", job_id)["status"]


def _wait_for_line(env: Env, job_id: str, pattern: str, deadline_s: float = 120) -> re.Match:
    return poll(lambda: re.search(pattern, env.run("logs", job_id).stdout), deadline_s, 0.3, f"{pattern!r} in the log")


def test_cancel_ends_cancelled_within_the_grace_period_and_leaves_nothing_running(
    xenv: tuple[Env, ExecutorHarness], tmp_path: Path
) -> None:
    env, harness = xenv
    code = code_folder(
        tmp_path,
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the kill after the grace period stops it\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n",
    )
    grace = {"JOBSUB_CANCEL_GRACE_SECONDS": "2"}
    result = env.run(*_submit_args(harness, code, "--json"), extra_env=grace, timeout=300)
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    _wait_for_line(env, job_id, r"(?m)^ready$")
    handle = _handle(env, job_id)
    try:
        assert not harness.nothing_running(handle)  # the check below can fail
        started = time.monotonic()
        cancelled = env.run("cancel", job_id, timeout=120)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "CANCELLED" in cancelled.stdout
        assert time.monotonic() - started < 2 + 20
        status = _status(env, job_id)
        assert status["state"] == "CANCELLED" and status["reason"] == "cancelled by request"
        poll(lambda: harness.nothing_running(handle), 20, 0.2, "nothing of the job still running")
        again = env.run("cancel", job_id)
        assert again.returncode == 0 and "already final" in again.stdout
    finally:
        harness.reap(handle)


def test_runner_killed_from_outside_is_lost_and_leaves_nothing_running(
    xenv: tuple[Env, ExecutorHarness], tmp_path: Path
) -> None:
    env, harness = xenv
    if not harness.supports(KILL_RUNNER) or harness.kill_runner is None:
        pytest.skip(harness.notes.get(KILL_RUNNER, f"{harness.kind}: the runner cannot be killed from outside"))
    code = code_folder(tmp_path, "import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    job_id = env.run_json(*_submit_args(harness, code))["job_id"]
    _wait_for_line(env, job_id, r"(?m)^ready$")
    handle = _handle(env, job_id)
    try:
        harness.kill_runner(handle)
        status = poll(lambda: (s := _status(env, job_id))["state"] == "LOST" and s, 60, 0.3, "state LOST")
        assert status["reason"] and "gone" in status["reason"]
        followed = env.run("logs", "-f", job_id, timeout=60)
        assert followed.returncode == 1 and "ready" in followed.stdout
        if "orphans" in harness.known_gaps and not harness.nothing_running(handle):
            pytest.xfail(harness.known_gaps["orphans"])
        poll(lambda: harness.nothing_running(handle), 20, 0.2, "nothing of the job still running")
    finally:
        harness.reap(handle)


def test_memory_limit_exceeded_fails_with_an_out_of_memory_reason(
    xenv: tuple[Env, ExecutorHarness], tmp_path: Path
) -> None:
    env, harness = xenv
    if not harness.supports(MEMORY_LIMIT):
        pytest.skip(harness.notes.get(MEMORY_LIMIT, f"{harness.kind} enforces no memory limit here"))
    code = code_folder(
        tmp_path,
        "import time\n"
        "print('allocating', flush=True)\n"
        "blocks = []\n"
        "for i in range(64):  # up to 4 GiB, touched page by page, far over the 256 MiB limit\n"
        "    blocks.append(bytearray(64 << 20))\n"
        "print('not killed', flush=True)\n",
    )
    result = env.run(*_submit_args(harness, code, "--set", "resources.memory=256MiB", "--follow"), timeout=300)
    assert result.returncode != 0, result.stdout
    assert "not killed" not in result.stdout
    job_id = result.stdout.splitlines()[0]
    status = _status(env, job_id)
    assert status["state"] == "FAILED", status
    assert "out of memory" in status["reason"] and "256 MiB" in status["reason"], status["reason"]
    handle = _handle(env, job_id)
    try:
        poll(lambda: harness.nothing_running(handle), 20, 0.2, "nothing of the job still running")
    finally:
        harness.reap(handle)


def test_local_inputs_are_staged_and_outputs_collected(xenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    env, harness = xenv
    data = tmp_path / "data"
    odd = "a b;$(touch x)'q'.bin"  # shell metacharacters in a file name reach the job as a plain name
    write_random(data / odd, 3 << 20, seed=7)
    (data / "sub").mkdir()
    (data / "sub" / "small.txt").write_text("small\n")
    code = code_folder(
        tmp_path,
        "import hashlib, os, pathlib\n"
        "src = pathlib.Path(os.environ['JOBSUB_INPUT_DATA'])\n"
        "out = pathlib.Path(os.environ['JOBSUB_OUTPUT_DIR'])\n"
        "names = sorted(p.relative_to(src).as_posix() for p in src.rglob('*') if p.is_file())\n"
        "print('input has', names, flush=True)\n"
        "for name in names:\n"
        "    target = out / 'copy' / name\n"
        "    target.parent.mkdir(parents=True, exist_ok=True)\n"
        "    target.write_bytes((src / name).read_bytes()[::-1])\n"
        "(out / 'digest.txt').write_text(hashlib.sha256((src / names[0]).read_bytes()).hexdigest())\n",
    )
    result = env.run(*_submit_args(harness, code, "--input", f"data={data}", "--follow"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"input has {sorted([odd, 'sub/small.txt'])!r}" in result.stdout
    job_id = result.stdout.splitlines()[0]
    fetched = tmp_path / "fetched"
    got = env.run("download", job_id, str(fetched), "-q", timeout=120)
    assert got.returncode == 0, got.stderr
    assert (fetched / "copy" / odd).read_bytes() == (data / odd).read_bytes()[::-1]
    assert (fetched / "copy" / "sub" / "small.txt").read_text() == "\nllams"
    assert (fetched / "digest.txt").read_text() == hashlib.sha256((data / odd).read_bytes()).hexdigest()
    assert not (tmp_path / "x").exists() and not (fetched / "x").exists()
