"""Was the command killed for memory? The runner's own memory cgroup says so.

Under a memory limit (Slurm's task/cgroup, a container's --memory) the kernel's OOM killer picks the
biggest process: the user's command, not the runner. The runner outlives it and sees only SIGKILL, while
the scheduler marks the job OUT_OF_MEMORY only after the runner has written its final state. So the
runner reads the OOM-kill counter of the cgroup it shares with its command (cgroup v1
``memory.oom_control``, v2 ``memory.events``) before and after the command, and names the limit (the
smallest ``memory.limit_in_bytes`` / ``memory.max`` on the way to the root) in the reason.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from jobsub.units import human_limit

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 60


def _own_memory_cgroups() -> list[Path]:
    """The runner's memory cgroup folders, most specific first (v1 memory controller, then v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            mount = CGROUP_ROOT / "memory"
        elif controllers == "":
            mount = CGROUP_ROOT / "unified" if (CGROUP_ROOT / "unified").is_dir() else CGROUP_ROOT
        else:
            continue
        # inside a container the mount is the container's own cgroup, whatever /proc/self/cgroup names
        for candidate in (mount / path.lstrip("/"), mount):
            if (candidate / "memory.oom_control").exists() or (candidate / "memory.events").exists():
                found.append(candidate)
                break
    return found


def _read_key(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def oom_kills() -> int:
    """OOM kills counted in the runner's memory cgroups (0 where the kernel does not say)."""
    total = 0
    for folder in _own_memory_cgroups():
        count = _read_key(folder / "memory.oom_control", "oom_kill")
        if count is None:
            count = _read_key(folder / "memory.events", "oom_kill")
        total += count or 0
    return total


def memory_limit() -> int | None:
    """The tightest memory limit over the runner's cgroups and their ancestors, in bytes; None if unlimited."""
    best: int | None = None
    for folder in _own_memory_cgroups():
        current = folder
        while True:
            for name in ("memory.limit_in_bytes", "memory.max"):
                try:
                    text = (current / name).read_text().strip()
                except OSError:
                    continue
                if text.isdigit() and int(text) < _UNLIMITED:
                    best = int(text) if best is None else min(best, int(text))
            if current == CGROUP_ROOT or current.parent == current or CGROUP_ROOT not in current.parents:
                break
            current = current.parent
    return best


#: a file the command's wrapper writes when the command ran in a cgroup of its own, not the runner's (docker
#: on the local store, executors/docker_local.py): the memory limit in bytes when the kernel killed it for that
REPORT_ENV = "JOBSUB_OOM_REPORT"


class OomWatch:
    """Take the OOM-kill count before the command starts; ``reason(exit code)`` after it ended."""

    def __init__(self) -> None:
        self.before = oom_kills()
        self.report = Path(os.environ[REPORT_ENV]) if os.environ.get(REPORT_ENV) else None
        if self.report is not None:
            self.report.unlink(missing_ok=True)  # one attempt's report is not the next one's

    def reason(self, code: int | None) -> str | None:
        killed = code is not None and (code == -signal.SIGKILL or code == 128 + signal.SIGKILL)
        if killed and self.report is not None and self.report.is_file():
            text = self.report.read_text()[:40].strip()
            return "killed: out of memory" + (f" (limit {human_limit(int(text))})" if text.isdigit() else "")
        if not killed or oom_kills() <= self.before:
            return None
        limit = memory_limit()
        return "killed: out of memory" + (f" (limit {human_limit(limit)})" if limit else "")
