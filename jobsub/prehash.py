"""Hash an upload's source files while the rest of the command starts (issue 22, fourth pass).

An upload must know each file's whole-file SHA-256 before its first request that stores anything (it goes
into the object's metadata). Hashing after the interpreter start, the imports, the S3 client, the bucket
check, the probe and the HEAD put ~0.2 s per 256 MiB in series with all of them; hashlib releases the GIL,
so the same pass on a thread started as soon as the sources are known overlaps that start on a second core.

Bounded on purpose: one thread per process, the files named on the command line (no folder walk: a
folder's files are chosen by transfer/sources.py, whose package is heavy to import), in order, each read in
1 MiB chunks. A file whose hash is already in the hash cache is not read. A result is handed out once, and
only for the same file identity (size, mtime_ns, ctime_ns, inode, device) as the caller's own stat: a file
that changed since it was hashed gets no value from here and is hashed again by the uploader, which checks
the identity again after sending (a change is "source changed during upload" as before). A file still
settling (changed within the last SETTLE_SECONDS, where a write could go unseen by stat) is not pre-hashed.

Import-light on purpose (no botocore, pydantic or jobsub.config) so that the CLI can start it first: it finds
the hash cache's entries (transfer/checksums.py) through platformdirs, as jobsub.config.state_dir does.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: A file modified this recently may still be changing within one timestamp tick: do not trust the cache.
RACY_SECONDS = 2.0
#: A file changed less recently than this has settled: any later write shows in its stat (upload.stable_stat).
SETTLE_SECONDS = 0.02
#: At most this many files are queued per start (a command line rarely names more; the rest hash as before).
MAX_FILES = 256

#: Large reads on purpose: this thread runs while the main thread imports and builds the client, holding the
#: GIL; each chunk costs one GIL hand-over (up to the 5 ms switch interval), so 1 MiB chunks spent ~1.2 s per
#: 256 MiB waiting for it (measured), 8 MiB ones at most ~0.16 s. The buffer is reused, and freed at the end.
_CHUNK = 8 << 20


def identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What says "same file, same bytes" without reading it: size, mtime_ns, ctime_ns, inode, device."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


def is_racy(stat: os.stat_result, now: float | None = None) -> bool:
    """True when the file changed so recently that a write in the same timestamp tick could go unseen."""
    now = time.time() if now is None else now
    return now - max(stat.st_mtime_ns, stat.st_ctime_ns) / 1e9 < RACY_SECONDS


def hash_cache_dir() -> Path:
    """Where remembered SHA-256 values live (jobsub.config.state_dir() / "hashes", without importing it)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("jobsub")) / "hashes"


def cache_key(path: Path, stat: os.stat_result) -> str:
    """The hash cache's file name for this path and identity (transfer/checksums.py writes the entries)."""
    key = "|".join(str(v) for v in (path.resolve(), *identity(stat)))
    return hashlib.sha1(key.encode()).hexdigest()


def _cached(path: Path, stat: os.stat_result) -> bool:
    """Whether the hash cache holds a value for this identity (then the uploader reads it, not this thread)."""
    if is_racy(stat):
        return False
    try:
        return len((hash_cache_dir() / cache_key(path, stat)).read_text().strip()) == 64
    except OSError:
        return False


class _Entry:
    """One queued file: ``started`` once the thread reads it, ``done`` when ``value`` is final (None: no use)."""

    __slots__ = ("done", "ident", "started", "value")

    def __init__(self) -> None:
        self.started = False
        self.done = threading.Event()
        self.ident: tuple[int, int, int, int, int] | None = None
        self.value: str | None = None


_lock = threading.Lock()
_entries: dict[str, _Entry] = {}
_queue: list[str] = []
_stop = threading.Event()
_thread: threading.Thread | None = None
_running = False  # under _lock: the thread will still look at the queue (it clears this as it decides to end)


def start(sources: Sequence[str | Path]) -> None:
    """Queue the regular files among ``sources`` (folders are left to the uploader) and start the thread.

    Cheap and safe to call more than once (the CLI, then the API, then the uploader): a file already
    queued is not queued again. Never raises: anything odd about a source is the uploader's to report.
    """
    global _thread, _running
    queued: list[str] = []
    for raw in sources[:MAX_FILES]:
        try:
            source = Path(raw).expanduser().resolve()
            if not source.is_file():
                continue
        except (OSError, RuntimeError, ValueError):
            continue
        queued.append(str(source))
    if not queued:
        return
    with _lock:
        _stop.clear()
        for name in queued:
            if name not in _entries:
                _entries[name] = _Entry()
                _queue.append(name)
        if not _running:
            _running = True
            _thread = threading.Thread(target=_run, name="prehash", daemon=True)
            _thread.start()


#: `jobsub` and `jobsub upload` options that take a value (the next word is no source)
_VALUED = frozenset({"--profile", "--part-size", "--concurrency", "-j", "--max-bandwidth", "--read-timeout"})


def start_from_argv(argv: list[str]) -> None:
    """`jobsub [--profile P] [--debug] upload SOURCES... DEST [options]` run as a program (the `jobsub` script
    or `python -m jobsub`): queue SOURCES before the CLI's own imports (~0.3 s, measured), which come before
    click can parse them. Anything else (another command, a caller of jobsub.cli such as a test runner,
    `--dry-run`, `--help`) starts nothing. A word taken for a source by mistake costs CPU only: values are
    handed out per path and identity to the upload that asks for them."""
    program = argv[0] if argv else ""
    if Path(program).name != "jobsub" and not program.endswith(os.path.join("jobsub", "__main__.py")):
        return
    words: list[str] = []
    skip = False
    for word in argv[1:]:
        if word in ("--dry-run", "-h", "--help", "--"):
            return
        if skip or word.startswith("-"):
            skip = not skip and word in _VALUED
            continue
        words.append(word)
    if len(words) >= 3 and words[0] == "upload":
        start(words[1:-1])


def stop() -> None:
    """Stop hashing (Ctrl-C, a cancelled transfer): the file in progress and the queued ones give no value."""
    _stop.set()
    with _lock:
        for name in _queue:
            _entries.pop(name, _Entry()).done.set()
        _queue.clear()


def wait(timeout: float) -> bool:
    """Wait until the thread has nothing left to hash (or ``timeout`` seconds); True when it is idle."""
    thread = _thread
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


def forget(paths: list[Path]) -> None:
    """Drop what is queued or kept for ``paths`` (an upload that ended without taking them: failed, cancelled)."""
    with _lock:
        for path in paths:
            name = str(path)
            entry = _entries.get(name)
            if entry is not None and (entry.done.is_set() or not entry.started):
                del _entries[name]
                if name in _queue:
                    _queue.remove(name)


def claim(path: Path) -> bool:
    """True when ``path`` is being hashed here, was, or is next (``take`` then gives its value or None); a file
    queued behind others is taken off the queue and False returned (the caller hashes it as it reads it)."""
    name = str(path)
    with _lock:
        entry = _entries.get(name)
        if entry is None:
            return False
        next_up = _running and bool(_queue) and _queue[0] == name
        if not entry.started and not next_up:  # (the next one is the thread's to take, not yet scheduled)
            del _entries[name]
            if name in _queue:
                _queue.remove(name)
            return False
        return True


def take(path: Path, stat: os.stat_result) -> str | None:
    """The SHA-256 hashed here for ``path`` if it was hashed with the identity of ``stat``, else None.

    Waits for a file being hashed; a file still only queued is taken off the queue (the caller hashes it
    itself rather than wait behind others). Each result is handed out once.
    """
    if not claim(path):
        return None
    name = str(path)
    with _lock:
        entry = _entries.get(name)
    if entry is None:
        return None
    entry.done.wait()
    with _lock:
        if _entries.get(name) is entry:
            del _entries[name]
    return entry.value if entry.ident == identity(stat) else None


def _run() -> None:
    global _running
    while True:
        with _lock:
            if not _queue or _stop.is_set():
                _running = False
                return
            name = _queue.pop(0)
            entry = _entries.get(name)
            if entry is None:
                continue
            entry.started = True
        try:
            entry.ident, entry.value = _hash_one(Path(name))
        except Exception:  # unreadable, gone: no value here; the uploader reports it as it reads the file
            entry.ident, entry.value = None, None
        finally:
            entry.done.set()


def _hash_one(path: Path) -> tuple[tuple[int, int, int, int, int] | None, str | None]:
    """(identity, SHA-256) of a settled file read whole with that identity unchanged, else (None, None)."""
    with open(path, "rb") as fh:
        fd = fh.fileno()
        before = os.fstat(fd)
        for _ in range(50):  # as upload.stable_stat: wait for a just-written file to settle, then stat it again
            age = time.time() - max(before.st_mtime_ns, before.st_ctime_ns) / 1e9
            if age >= SETTLE_SECONDS or age < -1.0 or _stop.is_set():
                break
            time.sleep(SETTLE_SECONDS - age)
            before = os.fstat(fd)
        else:
            return None, None  # still changing: the uploader stats and hashes it itself
        if _cached(path, before):
            return None, None  # the uploader finds it in the cache first
        digest = hashlib.sha256()
        offset = 0
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while got := os.preadv(fd, [buffer], offset):  # no new bytes object per chunk
            if _stop.is_set():
                return None, None
            digest.update(view[:got])  # hashlib releases the GIL for the update
            offset += got
    after = path.stat()
    if identity(after) != identity(before) or offset != before.st_size:
        return None, None
    return identity(before), digest.hexdigest()
