"""Keeping the job's processes tied to its runner: nothing the job started may outlive the runner.

Layers, because each alone has a gap:

- the runner is a child subreaper (PR_SET_CHILD_SUBREAPER): a process of the job that leaves its group
  (``setsid``) and is orphaned (a double fork) is re-parented to the runner, not to init, so the runner's
  process tree always holds the whole job; when the command ends, fails, is cancelled, times out or hits
  its cost limit, the runner kills its group *and* every descendant (``kill_descendants``);
- the group leader gets PR_SET_PDEATHSIG(SIGKILL) (Linux prctl through ctypes), so kill -9 of the runner
  kills it at once;
- a watchdog process, in a session of its own, holds a pipe from the runner and keeps a snapshot of the
  runner's descendants (pid and start time, every 0.1 s: one /proc scan costs about a millisecond; and on the
  runner's request before each chunk of the job's output is shipped, so a line a reader acts on was printed
  by processes the watchdog knows). The snapshot's processes are killed first, then the marked ones. When the
  runner dies in any way the pipe closes and the watchdog SIGKILLs the job's group, every snapshotted
  process that is still the same process, every process whose environment carries this runner's
  JOBSUB_RUNNER_ID, and their descendants. PDEATHSIG is not inherited across fork and a setsid'd child is not
  in the group: the snapshot and the marker catch those.

When even that was defeated (runner and watchdog killed together), `cancel` of the LOST job finds the
processes left over: those whose environment carries JOBSUB_JOB_ID=<job id> and that are in the recorded
group or carry the runner's id.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jobsub.executors.leftovers import RUNNER_ID_ENV

__all__ = ["RUNNER_ID_ENV"]

PR_SET_PDEATHSIG = 1

PR_SET_CHILD_SUBREAPER = 36

_WATCHDOG = r"""
import os, select, signal, sys, time
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
pgid = int(sys.argv[1])
marker = ("JOBSUB_RUNNER_ID=" + sys.argv[2]).encode()
runner, me = int(sys.argv[3]), os.getpid()
if os.getppid() != runner:  # the runner died before this started: its tree now hangs below init, not it
    runner = 0

def table():
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/" + name + "/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                found[int(name)] = (int(rest[1]), rest[19], rest[0])
            except (OSError, IndexError, ValueError):
                pass
    return found

def tree(t, roots):
    children = {}
    for pid, (ppid, _, _) in t.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found and child != me:
                found.add(child)
                todo.append(child)
    return found

def marked(t):
    found = set()
    for pid in t:
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.add(pid)
        except OSError:
            pass
    return found

# stdin from the runner: b"s" asks for a snapshot now (answered b"s" once taken), b"d" says the runner
# reaped the job itself; end of file without b"d" means the runner died
known, done, told = {}, False, False
while True:
    ready = select.select([0], [], [], 0 if not told else 0.1)[0]
    asked = 0
    if ready:
        chunk = os.read(0, 64)
        if not chunk:
            break
        done = done or b"d" in chunk
        asked = chunk.count(b"s")
        if not asked:
            continue
    t = table()
    known = {p: s for p, s in known.items() if p in t and t[p][1] == s}
    for pid in tree(t, [runner] if runner else []):
        known[pid] = t[pid][1]
    answer = b"" if told else b"r"  # the first snapshot is taken: the runner may show the job's output
    told = True
    try:
        if answer or asked:
            os.write(1, answer + b"s" * asked)
    except OSError:
        pass
if done:
    sys.exit(0)
try:
    os.killpg(pgid, signal.SIGKILL)
except OSError:
    pass
for round in range(50):
    t = table()
    targets = {p for p, s in known.items() if p in t and t[p][1] == s}
    if round == 0:  # the snapshot's processes first: the environment scan reads every process on the machine
        for pid in targets - {me}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    targets |= marked(t)
    targets |= tree(t, targets)
    alive = [p for p in targets if p != me and p in t and t[p][2] not in ("Z", "X")]
    if not alive:
        break
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.05)
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


def become_subreaper() -> bool:
    """Make this process (the runner) the reaper of its orphaned descendants; False where Linux prctl is absent."""
    libc = _LIBC
    if libc is None:
        return False
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


class Watchdog:
    """Kills the job's processes if the runner goes away without saying it is done (see the module doc)."""

    def __init__(self, pgid: int, runner_id: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid), runner_id, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # b"r" once its first snapshot is taken, b"s" for each one asked for
            stderr=subprocess.DEVNULL,
            close_fds=True,
            # its own session: whoever kills the runner's group (Ray's supervisor does once the entrypoint
            # is gone) must not kill the watchdog before it has killed what the runner left behind
            start_new_session=True,
            bufsize=0,  # unbuffered: the answers are read with os.read beside select
        )
        self._lock = threading.Lock()  # one request at a time (the log shipper's thread, the runner's)
        self._owed = 0  # snapshots asked for and not answered yet
        self._ready = False  # the first snapshot was taken

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Block until the watchdog has taken its first snapshot of the runner's descendants (at most
        `timeout` s). Why: a child double-forked out of the job's session is known to the watchdog only from
        a snapshot; the runner shows the job's output (where a test, or a user, learns the job is running and
        may kill the runner) only after this, so a runner killed at once still leaves nothing behind."""
        with self._lock:
            return self._ready or self._answer(b"r", timeout)

    def snapshot(self, timeout: float = 2.0) -> bool:
        """Have the watchdog snapshot the runner's descendants now, and wait (at most `timeout` s) until it
        has. The runner calls this before it ships the job's output: lines shown to a user were printed by
        processes the watchdog knows, so a runner killed by whoever read them (kill -9 a moment after the
        job printed that it daemonized) still leaves nothing behind. Between snapshots (every 0.1 s) a child
        that escapes and whose runner dies within that window can still be missed. False when the watchdog
        did not answer (gone): the caller goes on, as it would without one."""
        with self._lock:
            if self._owed > 0:  # an earlier request is still unanswered: the watchdog is stuck or slow, so
                timeout = 0.05  # do not hold every chunk for the whole timeout (a late answer ends this)
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"s")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                return False
            self._owed += 1
            return self._answer(b"s", timeout)

    def _answer(self, wanted: bytes, timeout: float) -> bool:
        """Read the watchdog's answers until `wanted` came: b"r" once, or b"s" for every snapshot asked (a
        late answer to an earlier request that timed out is counted, so it is never taken for this one's)."""
        import select

        out = self.proc.stdout
        if out is None:
            return False
        deadline = time.monotonic() + timeout
        try:
            waiting = select.poll()  # not select(): a runner with over 1024 open files is no exception
            waiting.register(out.fileno(), select.POLLIN)
            while (left := deadline - time.monotonic()) > 0:
                if not waiting.poll(left * 1000):
                    return False
                got = os.read(out.fileno(), 64)
                if not got:
                    return False
                self._ready = self._ready or b"r" in got
                self._owed -= got.count(b"s")
                if (wanted == b"r" and self._ready) or (wanted == b"s" and self._owed <= 0):
                    return True
        except (OSError, ValueError):
            return False
        return False

    def done(self) -> None:
        """The runner has killed and reaped the group itself: let the watchdog go without killing anything."""
        with self._lock:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(b"d")
            except (OSError, ValueError):
                pass  # the watchdog is gone already
            finally:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            if self.proc.stdout is not None:
                self.proc.stdout.close()
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


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time in ticks, state letter) of every process (Linux /proc)."""
    table: dict[int, tuple[int, str, str]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return table
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(rest[1]), rest[19], rest[0])
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(root: int, table: dict[int, tuple[int, str, str]] | None = None) -> set[int]:
    """Every process below `root` in the parent tree (with the runner a subreaper: all the job left behind)."""
    table = _proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_descendants(sig: int = signal.SIGKILL, exclude: frozenset[int] = frozenset(), keep_zombie: int = 0) -> int:
    """Signal every descendant of this process except `exclude` (the watchdog) and reap the orphans the
    subreaper inherited (never `keep_zombie`, the leader whose zombie keeps the group id taken, nor anything
    in `exclude`: subprocess reaps those). With SIGKILL, repeats until none is left (at most ~5 s: a
    process forking in a loop is caught within a few rounds). How many processes were signalled."""
    me = os.getpid()
    signalled: set[int] = set()
    deadline = time.monotonic() + 5.0
    while True:
        table = _proc_table()
        below = descendants(me, table)
        shielded = set(exclude)
        for pid in exclude:
            shielded |= descendants(pid, table)
        alive = [p for p in below - shielded if table[p][2] not in ("Z", "X")]
        for pid in alive:
            try:
                os.kill(pid, sig)
                signalled.add(pid)
            except OSError:
                pass
        for pid in below - shielded - {keep_zombie}:
            if table[pid][0] == me:  # an orphan re-parented to us (a child of ours Popen does not know)
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        if sig != signal.SIGKILL or not alive or time.monotonic() > deadline:
            return len(signalled)
        time.sleep(0.02)
