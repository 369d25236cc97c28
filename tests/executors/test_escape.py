"""Nothing escapes its job (issue 17): a child that leaves the job's process group still dies.

The job starts two hostile children before it says "ready": one in a new session (``setsid``: not in the
job's process group, so a group kill misses it) and one double-forked into a new session with an *empty*
environment (orphaned, no JOBSUB_* variable to recognise it by). Each case then ends the job one way —
cancel, timeout, runner kill -9, or the command simply exiting — and checks that both children are gone,
on the local executor (no daemon), and on the real Ray and Slurm harnesses (run those under the heavy
lock: ``flock /tmp/jobsub-heavy.lock pytest tests/executors/test_escape.py -k 'ray or slurm'``). The
Slurm node runs without cgroup process tracking (proctrack/linuxproc) when the machine has no writable
cgroup v1, or with ``TEST_SLURM_NO_CGROUP=1``: there the runner's own subreaper and watchdog are what
holds the job together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder, make_env, poll, use_env
from tests.executors.harness import ExecutorHarness, configure

#: prints the pids of its two escaped children, then waits (or exits at once when given the argument quick)
_HOSTILE = """
import os, subprocess, sys, time
setsid_child = subprocess.Popen(['sleep', '600'], start_new_session=True)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        os.execve('/bin/sleep', ['sleep', '601'], {})
    os._exit(0)
os.wait()
os.close(w)
double = int(os.read(r, 32))
print(f'escaped {setsid_child.pid} {double}', flush=True)
print('ready', flush=True)
if 'quick' in sys.argv[1:]:
    time.sleep(8)  # long enough for the test to see the children alive, then exit 0 leaving them behind
    sys.exit(0)
time.sleep(600)
"""

KINDS = ["local", "ray", "slurm"]


def _alive(pid: int) -> bool:
    """The pid is a live `sleep` (not a zombie, not a recycled pid running something else)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return state not in ("Z", "X") and cmdline.startswith(b"sleep\0")


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, 9)


@pytest.fixture(params=KINDS)
def kenv(request, tmp_path: Path, monkeypatch) -> tuple[Env, ExecutorHarness]:
    """A jobsub user on the local store whose profile runs jobs on one executor kind."""
    harness: ExecutorHarness = request.getfixturevalue(f"{request.param}_harness")
    env = make_env(tmp_path, "local")
    configure(env, harness)
    use_env(monkeypatch, env)
    return env, harness


def _start(env: Env, tmp_path: Path, *extra: str) -> tuple[str, list[int]]:
    code = code_folder(tmp_path, _HOSTILE)
    job_id = env.run_json("submit", "python-script", "--code", str(code), *extra)["job_id"]
    match = poll(
        lambda: re.search(r"(?m)^escaped (\d+) (\d+)$", env.run("logs", job_id).stdout), 180, 0.3, "the escaped pids"
    )
    pids = [int(match.group(1)), int(match.group(2))]
    assert all(_alive(p) for p in pids), "the hostile children should be running before the job ends"
    return job_id, pids


def _handle(env: Env, job_id: str) -> dict:
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    profile = resolve_profile()[1]
    record = JobRecord(env.store(), ObjectURI.parse(profile.jobs_uri).as_prefix(), job_id)
    return dict(record.get_json("executor.json"))


def _describe(pid: int) -> str:
    """What a process is, for a failure message: parent, state, what it waits in, and its command line."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return f"{pid}: gone"
    except OSError as exc:
        return f"{pid}: unreadable ({exc.strerror})"
    return f"{pid}: ppid {rest[1]} state {rest[0]} wchan {wchan or '-'} cmd {cmdline!r}"


def _watchdogs() -> list[int]:
    """Live runner watchdogs on this machine (their command line carries the watchdog's code)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"JOBSUB_RUNNER_ID=" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _gone(pids: list[int], what: str) -> None:
    try:
        poll(lambda: not any(_alive(p) for p in pids), 30, 0.2, f"the setsid'd and double-forked children gone {what}")
    except AssertionError as exc:  # say who is left and which watchdogs live: a flake here must be diagnosable
        left = [_describe(p) for p in pids if _alive(p)]
        dogs = [_describe(p) for p in _watchdogs()]
        raise AssertionError(f"{exc}; still running: {left}; watchdogs: {dogs}") from None


def test_escaped_children_die_on_cancel(kenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    env, _ = kenv
    job_id, pids = _start(env, tmp_path)
    try:
        result = env.run("cancel", job_id, timeout=120, extra_env={"JOBSUB_CANCEL_GRACE_SECONDS": "2"})
        assert result.returncode == 0, result.stderr
        poll(lambda: env.run_json("status", job_id)["status"]["state"] == "CANCELLED", 60, 0.3, "CANCELLED")
        _gone(pids, "after cancel")
    finally:
        _kill(pids)


def test_escaped_children_die_when_the_command_ends(kenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    """A job that exits 0 leaving daemons behind: SUCCEEDED, and the daemons do not outlive it."""
    env, _ = kenv
    job_id, pids = _start(env, tmp_path, "--set", "params.args=quick")
    try:
        done = env.run("logs", "-f", job_id, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        _gone(pids, "after the command ended")
    finally:
        _kill(pids)


def test_escaped_children_die_on_timeout(kenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    env, _ = kenv
    job_id, pids = _start(env, tmp_path, "--set", "timeout=12s")
    try:
        done = env.run("logs", "-f", job_id, timeout=180, extra_env={"JOBSUB_CANCEL_GRACE_SECONDS": "2"})
        assert done.returncode != 0
        status = env.run_json("status", job_id)["status"]
        assert status["state"] == "FAILED" and "timed out" in status["reason"], status
        _gone(pids, "after the timeout")
    finally:
        _kill(pids)


def test_escaped_children_die_when_the_runner_is_killed(kenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    """kill -9 of the runner: the watchdog finds the children that left the group (one of them with an
    empty environment) and kills them; the job becomes LOST."""
    env, harness = kenv
    job_id, pids = _start(env, tmp_path)
    handle = _handle(env, job_id)
    try:
        assert harness.kill_runner is not None
        harness.kill_runner(handle)
        _gone(pids, "after kill -9 of the runner")
        status = poll(lambda: (s := env.run_json("status", job_id)["status"])["state"] == "LOST" and s, 90, 0.5, "LOST")
        assert "gone" in (status["reason"] or "")
        again = env.run("cancel", job_id)
        assert again.returncode == 0, again.stderr
        assert "already final" in again.stdout or "nothing of it is left" in again.stdout, again.stdout
    finally:
        _kill(pids)
        harness.reap(handle)


def test_a_runner_killed_the_moment_the_output_shows_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    """The job daemonizes (double fork, empty environment) and says so; whoever reads that line kills the
    runner at once. The watchdog snapshots every 0.1 s, so a kill inside that window used to leave the
    daemon running (a CI flake of the test above); the runner now has the watchdog snapshot before it
    ships each chunk, so the line cannot be read before the daemon is known. The record's chunks are
    read straight from the local store (no CLI start in between), to kill within milliseconds."""
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    env = make_env(tmp_path, "local")
    use_env(monkeypatch, env)
    code = code_folder(tmp_path, _HOSTILE)
    job_id = env.run_json("submit", "python-script", "--code", str(code))["job_id"]
    record = JobRecord(env.store(), ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix(), job_id)

    def escaped() -> re.Match[str] | None:
        for key in record.chunks_after(""):
            for line in record.read_chunk(key):
                if found := re.fullmatch(r"escaped (\d+) (\d+)", line.text):
                    return found
        return None

    runner = int(record.get_json("executor.json")["pid"])
    try:
        match = poll(escaped, 120, 0.005, "the escaped pids in the record")
    except AssertionError:
        os.kill(runner, 9)  # nothing of this test left behind when the job never said it
        raise
    os.kill(runner, 9)
    pids = [int(match.group(1)), int(match.group(2))]
    try:
        _gone(pids, "after kill -9 of the runner the moment they were shown")
    finally:
        _kill(pids)


_WATCHDOG_CLIENT = """
import json, os, resource, signal, subprocess, sys, time
from jobsub.runtime.procs import Watchdog
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the watchdog's pipes get fds over 1024
dummy = subprocess.Popen(["sleep", "60"], start_new_session=True)  # the "command": the only group it may kill
watchdog = Watchdog(dummy.pid, "protocol-test")
result = {"ready": watchdog.wait_ready()}

def timed(name, timeout):
    started = time.monotonic()
    result[name] = [watchdog.snapshot(timeout=timeout), round(time.monotonic() - started, 3)]

timed("answered", 5.0)
os.kill(watchdog.proc.pid, signal.SIGSTOP)  # alive but not answering
timed("stuck_first", 1.0)
timed("stuck_again", 1.0)
os.kill(watchdog.proc.pid, signal.SIGCONT)
timed("after", 5.0)
timed("after_again", 5.0)
watchdog.done()
result["dummy_alive"] = dummy.poll() is None
dummy.kill()
dummy.wait()
print(json.dumps(result))
"""


def test_the_watchdog_answers_snapshot_requests_and_a_stuck_one_does_not_hold_every_chunk(tmp_path: Path) -> None:
    """The runner asks its watchdog for a snapshot before each log chunk. With its pipes on file descriptors
    over 1024 (a runner with many open files) it still answers; once stopped (SIGSTOP), the first request
    waits its timeout but the next ones do not (log shipping is not held 2 s per chunk); after SIGCONT the
    late answers are counted and requests are answered again. `done` leaves the command alone. Run in a
    child process: a watchdog whose pipe closes without "done" kills what its runner started."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WATCHDOG_CLIENT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ready"] and result["answered"][0], result
    assert result["stuck_first"][0] is False and result["stuck_first"][1] >= 0.9, result
    assert result["stuck_again"][0] is False and result["stuck_again"][1] < 0.5, result
    assert result["after"][0] and result["after_again"][0] and result["after_again"][1] < 2.0, result
    assert result["dummy_alive"], "a watchdog told it is done must kill nothing"


def test_cancel_of_a_lost_job_says_what_it_checked(tmp_path: Path, monkeypatch) -> None:
    """`cancel` of a LOST job whose runner never named its host does not claim that nothing is running."""
    from jobsub.config import resolve_profile
    from jobsub.executors.base import RunnerPlace
    from jobsub.jobs.records import JobRecord, JobStatus, State
    from jobsub.jobs.service import JobService
    from jobsub.storage import open_store
    from jobsub.uri import ObjectURI

    use_env(monkeypatch, make_env(tmp_path, "local"))
    profile = resolve_profile()[1]
    store = open_store(profile)
    service = JobService(profile, store)
    record = JobRecord(store, ObjectURI.parse(profile.jobs_uri).as_prefix(), "j-lost-1")
    lost = JobStatus(state=State.LOST, created="2026-11-29T00:00:00+00:00", executor={})
    record.write_status(lost)
    said = service.cancel_leftovers("j-lost-1", lost)
    assert "nothing" not in said.replace("nothing was checked", ""), said
    lost.executor = RunnerPlace(host=os.uname().nodename, pgid=999999, runner="abcd1234")
    said = service.cancel_leftovers("j-lost-1", lost)
    assert said.startswith("checked ") and "nothing of it is left running" in said, said
