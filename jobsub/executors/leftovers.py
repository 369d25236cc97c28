"""What is left of a local job whose runner died: found by its process group and JOBSUB_JOB_ID, then killed.

It lives with the executors (not the runtime) because `jobsub cancel` of a LOST job calls it from the client
side, through the executor that owns the job (BaseExecutor.kill_leftovers, with the place the runner
recorded: executors/base.py RunnerPlace); the runtime imports RUNNER_ID_ENV from here (runtime/procs.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

#: set in the environment of everything a runner starts (runtime/runner.py): a child that left the job's
#: process group (setsid, double fork) still carries it, so `cancel` of a LOST job finds it
RUNNER_ID_ENV = "JOBSUB_RUNNER_ID"


def leftover_processes(pgid: int | None, job_id: str, runner_id: str | None = None) -> list[int]:
    """Processes of this job left behind by a runner that is gone: their environment names the job, and they
    are in its recorded group `pgid` or carry the runner's id (a child that left the group). Linux /proc only."""
    found = []
    marker = f"JOBSUB_JOB_ID={job_id}".encode()
    runner_marker = f"{RUNNER_ID_ENV}={runner_id}".encode() if runner_id else None
    me = os.getpid()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            in_group = pgid is not None and os.getpgid(pid) == pgid
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X") or marker not in environ:
            continue
        if in_group or (runner_marker is not None and runner_marker in environ):
            found.append(pid)
    return found


def kill_leftovers(pgid: int | None, job_id: str, runner_id: str | None = None) -> list[int]:
    """SIGKILL what is left of a job whose runner is gone; the pids killed."""
    pids = leftover_processes(pgid, job_id, runner_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids
