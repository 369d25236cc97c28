"""The local executor: the runtime as a detached process on this machine.

The runner gets its own session (it survives the CLI exiting and the terminal closing). The handle keeps
the pid *and* the process start time, so a recycled pid is never mistaken for the runner.

A handle read from the store is data (anyone who can write the jobs prefix may have rewritten it):
``verify_handle`` acts on a pid only when that process is this job's runner: its environment names the job
(JOBSUB_JOB_ID, set at submit), its start time is the recorded one, and it is readable by us (our user).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from jobsub.config import state_dir
from jobsub.errors import JobError
from jobsub.executors.base import (
    MAX_PID,
    BaseExecutor,
    BaseHandle,
    Capabilities,
    LaunchRequest,
    Liveness,
    Observation,
)

#: How long a runner whose environment reads empty (it is exiting) is given to be gone before its record
#: is called suspect.
EXITING_GRACE_SECONDS = 2.0


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) from /proc (Linux), or None where absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]  # fields 3 and 22 of the whole line


def _exits_within(pid: int, seconds: float) -> bool:
    """True once `pid` is gone or a zombie, polled until `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _proc_start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def spawn_runner(request: LaunchRequest, run_dir: Path, work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the job's runner detached on this machine: its own session (it outlives the CLI and the
    terminal), its output in run_dir/runner.log (what it says before the job log starts)."""
    with (run_dir / "runner.log").open("ab") as log:
        return subprocess.Popen(
            request.runtime_argv(str(work), python=sys.executable),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=str(run_dir),
        )


class LocalHandle(BaseHandle):
    """The runner process: its pid and start time (a recycled pid is another process) on `host`."""

    kind: Literal["local"]
    host: str
    pid: int = Field(gt=0, le=MAX_PID)
    #: clock ticks since boot (/proc/PID/stat field 22); None where /proc is absent
    start_time: str | None = None
    run_dir: str | None = None

    def runner_log(self) -> str | None:
        return str(Path(self.run_dir) / "runner.log") if self.run_dir else None


class LocalExecutor(BaseExecutor[LocalHandle]):
    kind = "local"
    shares_client_environment = True
    capabilities = Capabilities(gpus=True, secret_env=True, local_process=True)
    handle_model = LocalHandle

    def submit(self, request: LaunchRequest) -> LocalHandle:
        run_dir = state_dir() / "runs" / request.job_id
        run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **request.runtime_env(), "JOBSUB_JOB_ID": request.job_id}
        proc = spawn_runner(request, run_dir, run_dir / "work", env)
        return LocalHandle(
            kind="local",
            host=socket.gethostname(),
            pid=proc.pid,
            start_time=_proc_start_time(proc.pid),
            run_dir=str(run_dir),
        )

    def starts_before_record(self, request: LaunchRequest) -> bool:
        """The runner process is started beside the submit's record writes (jobs/service.py): its
        interpreter and storage client start while the record is written, and it waits for its record
        (runtime/runner.py, wait_for_record)."""
        return True

    def abandon(self, handle: LocalHandle) -> None:
        """The submit failed after starting the runner and before writing its record: SIGKILL the runner's
        session (it started one of its own), only while the pid is still the process just started."""
        if handle.host != socket.gethostname() or _proc_start_time(handle.pid) != handle.start_time:
            return  # gone already (and maybe the pid reused): nothing of ours to stop
        try:
            os.killpg(handle.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def verify_handle(self, handle: LocalHandle, job_id: str) -> None:
        """Raise JobError unless the pid in `handle` is gone or is this job's runner (see the module doc)."""
        if handle.host != socket.gethostname():
            return  # another machine's runner: never signalled from here
        pid = handle.pid
        if pid <= 1:
            raise JobError(f"job {job_id}: its executor record names pid {pid}: not acting on it")
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return  # gone (a zombie included): nothing will be signalled
        problem = None
        try:
            if os.stat(f"/proc/{pid}").st_uid != os.getuid():
                problem = "belongs to another user"
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        if problem is None and environ in ([], [b""]):
            # Linux answers ESRCH, or no bytes, for the environment of a process that has released its memory:
            # it is exiting (the runner finishing, its threads winding down while /proc still says R). Give it
            # a moment to be gone before calling the record suspect; nothing is signalled either way.
            if _exits_within(pid, EXITING_GRACE_SECONDS):
                return
            problem = problem or "cannot be inspected"
        if problem is None and f"JOBSUB_JOB_ID={job_id}".encode() not in environ:
            problem = "is not this job's runner"
        if problem is None and stat[1] != str(handle.start_time):
            problem = "started at another time than the runner"
        if problem:
            raise JobError(
                f"job {job_id}: its executor record names pid {pid} on this machine, which {problem}: not acting "
                "on it (the record was rewritten?)"
            )

    def poll(self, handle: LocalHandle) -> Observation:
        return Observation(self._liveness(handle))

    def _liveness(self, handle: LocalHandle) -> Liveness:
        if handle.host != socket.gethostname():
            return "unknown"
        pid = handle.pid
        stat = _proc_stat(pid)
        if stat is None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return "dead"
            except PermissionError:
                return "alive"
            return "alive" if not Path("/proc").is_dir() else "dead"
        state, started = stat
        if handle.start_time and started != handle.start_time:
            return "dead"  # the pid now belongs to another process
        return "dead" if state in ("Z", "X") else "alive"

    def cancel(self, handle: LocalHandle) -> None:
        if self._liveness(handle) == "alive":
            try:
                os.kill(handle.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def describe(self, handle: LocalHandle) -> str:
        return f"local pid {handle.pid} on {handle.host}"
