"""Was the command killed for memory? The runner's cgroup counts OOM kills; a SIGKILL with a new one is OOM.

Inside a container (docker --memory) or a Slurm job with cgroup limits, the kernel kills the biggest process
of the cgroup when it goes over its limit: that is the user's program, not the runner, so the runner sees
a SIGKILL and would report "killed by SIGKILL". Comparing the cgroup's oom_kill counter before and after
turns it into the reason a user can act on: "killed: out of memory (limit 2 GiB)".
"""

from __future__ import annotations

import os
from pathlib import Path

V2 = Path("/sys/fs/cgroup")
V1 = Path("/sys/fs/cgroup/memory")


def _own_cgroup(mount: Path, controller: str) -> Path:
    """This process's cgroup folder under `mount` (the mount root inside a container's cgroup view)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(",") or (controller == "" and controllers == ""):
                candidate = mount / path.lstrip("/")
                if candidate.is_dir():
                    return candidate
    except (OSError, ValueError):
        pass
    return mount


def _read_counter(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def oom_kills() -> int | None:
    """OOM kills so far in this process's memory cgroup (v2 memory.events, v1 memory.oom_control)."""
    v2 = _own_cgroup(V2, "") / "memory.events"
    if v2.is_file():
        return _read_counter(v2, "oom_kill")
    return _read_counter(_own_cgroup(V1, "memory") / "memory.oom_control", "oom_kill")


def memory_limit() -> int | None:
    """The memory limit the executor set (JOBSUB_MEMORY_LIMIT_BYTES), else the cgroup's when it has one."""
    if os.environ.get("JOBSUB_MEMORY_LIMIT_BYTES", "").isdigit():
        return int(os.environ["JOBSUB_MEMORY_LIMIT_BYTES"])
    for path in (_own_cgroup(V2, "") / "memory.max", _own_cgroup(V1, "memory") / "memory.limit_in_bytes"):
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 60:
            return int(value)
    return None


def human_bytes(n: int) -> str:
    """'2 GiB', '256 MiB', '1.5 GiB': a memory limit as a user writes it."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def oom_reason(exit_code: int, kills_before: int | None) -> str | None:
    """ "killed: out of memory (limit X)" when the command died by SIGKILL and the cgroup counted a new OOM kill."""
    if exit_code not in (-9, 128 + 9) or kills_before is None:
        return None
    after = oom_kills()
    if after is None or after <= kills_before:
        return None
    limit = memory_limit()
    return "killed: out of memory" + (f" (limit {human_bytes(limit)})" if limit else "")
