"""What is left of a local job whose runner died: found by its process group and JOBSUB_JOB_ID, then killed.

It lives with the executors (not the runtime) because `jobsub cancel` of a LOST job calls it from the client
side: the service may use the floors below it, and the runtime imports it from here (runtime/procs.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def leftover_processes(pgid: int, job_id: str) -> list[int]:
    """Processes of the group `pgid` that belong to this job (their environment names it). Linux /proc only."""
    found = []
    marker = f"JOBSUB_JOB_ID={job_id}".encode()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != pgid:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(pid)
    return found


def kill_leftovers(pgid: int, job_id: str) -> list[int]:
    """SIGKILL what is left of a job whose runner is gone; the pids killed."""
    pids = leftover_processes(pgid, job_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids
