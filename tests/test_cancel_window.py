"""A cancel that lands while the runner is starting the command (after its last stop check, before the command
is published to the stop path) must still stop that command: before the fix it was recorded as CANCELLED but
the command ran to its end (found by the fifth pass's review).

Real components: the local store, a real runner in a child process (its stop path signals every process below
it, so it must not run inside the test process with the session's servers), a real `bash -c` command and its
watchdog. The one stand-in: the watchdog's `wait_ready` is wrapped in the child to deliver the SIGTERM inside
that window (a signal cannot be aimed at a 1 ms window otherwise); the job's launch is skipped so the test
drives the runner itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobsub.jobs.models import JobStatus, State
from jobsub.jobs.service import JobService
from jobsub.jobs.spec import JobSpec
from tests.conftest import _isolated_env, code_folder

RUNNER = """
import signal, sys, time
from pathlib import Path
from jobsub.config import resolve_profile
from jobsub.jobs.service import JobService
from jobsub.runtime import procs, runner as runner_mod
from jobsub.storage import open_store

name, profile = resolve_profile()
service = JobService(profile, open_store(profile), name, executor="local")
runner = runner_mod.Runner(service.store, service.record(sys.argv[1]), Path(sys.argv[2]))
real_wait_ready = procs.Watchdog.wait_ready

def wait_ready(self, timeout=10.0):
    runner._signal = signal.SIGTERM  # what the runner's SIGTERM handler sets (a cancel, `docker stop`)
    deadline = time.monotonic() + 5
    while runner.stop_reason is None and time.monotonic() < deadline:  # the monitor acts on it, no command yet
        time.sleep(0.02)
    return real_wait_ready(self, timeout)

procs.Watchdog.wait_ready = wait_ready
runner.run()
"""


def test_a_cancel_while_the_command_starts_stops_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolated_env(tmp_path, monkeypatch, "local", None)
    from jobsub.config import resolve_profile
    from jobsub.storage import open_store

    name, profile = resolve_profile()
    service = JobService(profile, open_store(profile), name, executor="local")
    executor = type(service.executor)
    monkeypatch.setattr(executor, "starts_before_record", lambda self, request: False)
    monkeypatch.setattr(executor, "check", lambda self, request: None)
    monkeypatch.setattr(executor, "submit", lambda self, request: (_ for _ in ()).throw(RuntimeError("no launch")))
    marker = tmp_path / "ran_to_end"
    code = code_folder(tmp_path, f"import time; time.sleep(4); open({str(marker)!r}, 'w').write('x')\n")
    plan = service.plan(JobSpec(name="window", command="python main.py", code=str(code)))
    with pytest.raises(RuntimeError):
        service.submit(plan)
    record = service.record(plan.job_id)
    record.write_status(JobStatus(state=State.QUEUED))  # the failed launch marked it FAILED: a runner may take it
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", RUNNER, plan.job_id, str(tmp_path / "work")], timeout=60, check=False)
    status = record.read_status()
    assert status.state == State.CANCELLED
    assert not marker.exists(), "the command ran to its end after the cancel"
    assert time.monotonic() - started < 4, "the runner waited for the command instead of stopping it"
