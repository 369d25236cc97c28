"""Keeping the job's processes tied to its runner: nothing the job started may outlive the runner.

Three layers, because each alone has a gap:

- the command runs in its own process group, and the runner kills the whole group (not only the leader)
  when the command ends, fails, is cancelled or times out;
- the group leader gets PR_SET_PDEATHSIG(SIGKILL) (Linux prctl through ctypes), so kill -9 of the runner
  kills it at once;
- a watchdog process (in the runner's own group, not the job's) holds a pipe from the runner; when the
  runner dies in any way the pipe closes and the watchdog SIGKILLs the job's group, which catches the
  children the leader started (PDEATHSIG is not inherited across fork).

When even that was defeated (runner and watchdog killed together), `cancel` of the LOST job finds the
processes left over: those in the recorded group whose environment carries JOBSUB_JOB_ID=<job id>.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1

_WATCHDOG = """
import os, signal, sys
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
said = sys.stdin.buffer.read()
if said != b"done":
    try:
        os.killpg(int(sys.argv[1]), signal.SIGKILL)
    except OSError:
        pass
"""


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded here, in the runner: dlopen in a forked child of a threaded process can deadlock


def die_with_parent(parent_pid: int) -> None:
    """preexec_fn for the job's leader: SIGKILL when the runner dies (and exit now if it already did)."""
    libc = _LIBC
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(137)


class Watchdog:
    """Kills the job's process group if the runner goes away without saying it is done."""

    def __init__(self, pgid: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )

    def done(self) -> None:
        """The runner has killed and reaped the group itself: let the watchdog go without killing anything."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"done")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def signal_group(pgid: int, sig: int) -> bool:
    """Send a signal to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_leader_exit(pid: int) -> None:
    """Block until the leader exits, without reaping it: while its zombie exists, its pid (= the group id)
    cannot be reused, so killing the group afterwards can never hit another program."""
    while True:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return
