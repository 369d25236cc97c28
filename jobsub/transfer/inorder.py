"""SHA-256 of a file that is written out of order (parallel ranged GETs), computed in order as parts land.

Why: a download's end-to-end check is the SHA-256 of the whole file. Computed after the last part, it is a
second full pass over the file that nothing overlaps (a third of a 512 MiB download's time on Ceph). Here a
background thread hashes the file in order as it is written: the part at the hash position as far as its
written prefix reaches (parts are ranges of up to 64 MiB, so waiting for whole parts would leave most of the
hash for the end), then the next, reading from the page cache right after the write. Only bytes a writer
reported as written are hashed, and a downloader never writes them again, so the bytes hashed are the
bytes in the file, exactly what the final check hashed before.

Once 8 MiB (or a part's end) is hashed, its writeback to the disk is started without waiting for it
(`sync_file_range(SYNC_FILE_RANGE_WRITE)`, Linux): the download still ends with one `fsync` before the
rename (a crash never leaves a file that looks complete), but that fsync then finds most pages already
written instead of writing the whole file while the user waits (docs/performance.md, "Issue 22, fourth
pass"). Unlike `posix_fadvise(DONTNEED)` (tried in the third pass: more CPU, no wall won) it drops nothing
from the page cache and does not drain the LRU lists. It is only a hint: where the call is missing or
fails, nothing changes but the fsync's length.

A chunk written exactly at the hash position is hashed from the writer's receive buffer instead of being
read back (docs/performance.md, "Issue 22, fifth pass: download"); the rest is read back from the page cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
from collections.abc import Callable

_CHUNK = 1 << 20
_WRITEBACK_EVERY = 8 << 20  # hashed bytes handed to the writeback at a time
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages in the range, do not wait


@functools.cache
def start_writeback() -> Callable[[int, int, int], None] | None:
    """`start(fd, offset, length)`: libc's sync_file_range(SYNC_FILE_RANGE_WRITE), or None off Linux. Loaded
    once per process, on first use (only a download that hashes imports ctypes).

    ctypes' CDLL releases the GIL around the call, so the parts keep arriving while the kernel queues the
    writes. Errors are ignored on purpose: it is a hint, and the fsync at the end is what makes the file durable.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start


class InOrderHasher:
    """Feed it what is written to `fd` (`wrote` as a part's bytes land, `completed` once a part is whole);
    `hexdigest()` once all parts are done.

    It hashes the file in order, following the growing written prefix of the part at the hash position (a
    part need not be whole: downloads use ranges of up to 64 MiB, and waiting for each whole range would
    leave most of the hash for after the last byte). A chunk that lands exactly at the hash position is
    hashed from the writer's buffer (`wrote(..., chunk)`), without reading it back; everything else is read
    back with `pread` from the page cache. Only bytes a caller reported as written are ever hashed.
    """

    def __init__(
        self,
        fd: int,
        ranges: list[tuple[int, int, int]],
        done: set[int] | None = None,
        written: dict[int, int] | None = None,
    ) -> None:
        """`done`: parts already whole in the file; `written`: part -> bytes from its start already in it."""
        self._fd = fd
        self._ranges = sorted(ranges, key=lambda r: r[1])
        self._lengths = {n: length for n, _, length in self._ranges}
        self._have: dict[int, int] = dict(written or {})  # part -> bytes from its start known written
        for number in done or ():
            if number in self._lengths:
                self._have[number] = self._lengths[number]
        self._next = 0  # index in _ranges of the part at the hash position
        self._hashed = 0  # bytes of that part hashed
        self._hinted = 0  # bytes of that part handed to the writeback
        self._busy = False  # a thread is updating the digest (the hasher's, or a writer's in wrote())
        self._digest = hashlib.sha256()
        self._cond = threading.Condition()
        self._stopped = False
        self._error: OSError | None = None
        self._writeback = start_writeback()
        self._skip_finished()
        self._thread = threading.Thread(target=self._run, name="sha256-in-order", daemon=True)
        self._thread.start()

    def completed(self, number: int) -> None:
        """Part `number` is whole in the file."""
        with self._cond:
            self._have[number] = self._lengths.get(number, 0)
            self._cond.notify()

    def wrote(self, number: int, upto: int, chunk: bytes | memoryview | None = None) -> None:
        """The first `upto` bytes of part `number` are in the file, `chunk` (when given) being the last of
        them: hashed here from the caller's buffer when it sits exactly at the hash position. Call it only
        after the bytes are written; the caller may reuse `chunk` once it returns."""
        with self._cond:
            if upto > self._have.get(number, 0):
                self._have[number] = upto
            mine = (
                chunk is not None
                and not self._busy
                and not self._stopped
                and self._next < len(self._ranges)
                and self._ranges[self._next][0] == number
                and self._hashed == upto - len(chunk)
                and len(chunk) > 0
            )
            if not mine:
                if self._next < len(self._ranges) and self._ranges[self._next][0] == number:
                    self._cond.notify()  # only the part at the hash position can let the hasher move
                return
            self._busy = True
        assert chunk is not None
        self._digest.update(chunk)  # hashlib drops the GIL on large buffers
        self._advance(len(chunk))

    def _advance(self, n: int) -> None:
        """`n` more bytes of the part at the hash position were hashed (by the caller, who held _busy)."""
        hint: tuple[int, int] | None = None
        with self._cond:
            self._hashed += n
            _, offset, length = self._ranges[self._next]
            if self._writeback is not None and (
                self._hashed == length or self._hashed - self._hinted >= _WRITEBACK_EVERY
            ):
                hint = (offset + self._hinted, self._hashed - self._hinted)
                self._hinted = self._hashed
            if self._hashed >= length:
                self._next += 1
                self._hashed = self._hinted = 0
                self._skip_finished()
            self._busy = False
            self._cond.notify_all()
        if hint is not None and hint[1] and self._writeback is not None:
            self._writeback(self._fd, *hint)  # not read again: let the disk have it now

    def _skip_finished(self) -> None:
        while self._next < len(self._ranges) and self._ranges[self._next][2] == 0:
            self._next += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped or self._next >= len(self._ranges):
                        return
                    if not self._busy:
                        number, offset, length = self._ranges[self._next]
                        avail = self._have.get(number, 0) - self._hashed
                        if avail > 0 and (avail >= _CHUNK or self._hashed + avail >= length):
                            break
                    self._cond.wait()
                self._busy = True
                start = offset + self._hashed
            try:
                chunk = os.pread(self._fd, min(_CHUNK, avail), start)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._busy = False
                    self._cond.notify_all()
                return
            if not chunk:  # the file is shorter than what was reported written: never hash a guess
                with self._cond:
                    self._error = OSError(f"the file ends at {start}, before what was written")
                    self._busy = False
                    self._cond.notify_all()
                return
            self._digest.update(chunk)
            self._advance(len(chunk))

    def hexdigest(self) -> str | None:
        """The file's SHA-256 once every part was reported, else None (stopped early, or a read failed)."""
        with self._cond:
            if any(self._have.get(n, 0) < length for n, _, length in self._ranges):
                self._stopped = True  # a part never came: do not wait for it
                self._cond.notify_all()
        self._thread.join()
        with self._cond:
            while self._busy:  # a writer's wrote() may still be hashing its last chunk
                self._cond.wait()
            if self._error is not None or self._next < len(self._ranges):
                return None
            return self._digest.hexdigest()

    def stop(self) -> None:
        """Stop hashing (a failed or cancelled download); safe to call more than once."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()
