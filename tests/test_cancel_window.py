"""A cancel that lands while the runner is starting the command (after its last stop check, before the command
is published to the stop path) must still stop that command: before the fix it was recorded as CANCELLED but
the command ran to its end (found by the fifth pass's review).

Real components: the local store, a real runner in this process, a real `bash -c` command and its watchdog.
The one stand-in: the watchdog's `wait_ready` is wrapped to deliver the SIGTERM inside that window (a signal
cannot be aimed at a 1 ms window otherwise); the job's launch is skipped so the test drives the runner itself.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from jobsub.jobs.models import JobStatus, State
from jobsub.jobs.service import JobService
from jobsub.jobs.spec import JobSpec
from jobsub.runtime import procs
from jobsub.runtime import runner as runner_mod
from tests.conftest import _isolated_env, code_folder


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
    runner = runner_mod.Runner(service.store, record, tmp_path / "work")
    real_wait_ready = procs.Watchdog.wait_ready

    def wait_ready(self: procs.Watchdog, timeout: float = 10.0) -> None:
        runner._signal = signal.SIGTERM  # what the runner's SIGTERM handler sets (a cancel, `docker stop`)
        deadline = time.monotonic() + 5
        while runner.stop_reason is None and time.monotonic() < deadline:  # the monitor acts on it, no command
            time.sleep(0.02)
        return real_wait_ready(self, timeout)

    monkeypatch.setattr(procs.Watchdog, "wait_ready", wait_ready)
    started = time.monotonic()
    runner.run()
    status = record.read_status()
    assert status.state == State.CANCELLED
    assert not marker.exists(), "the command ran to its end after the cancel"
    assert time.monotonic() - started < 4, "the runner waited for the command instead of stopping it"
