"""SHA-256 of a file that is written out of order (parallel ranged GETs), computed in order as parts land.

Why: a download's end-to-end check is the SHA-256 of the whole file. Computed after the last part, it is a
second full pass over the file that nothing overlaps (a third of a 512 MiB download's time on Ceph). Here a
background thread hashes each part as soon as it and every part before it are on disk, reading from the page
cache right after the write, so the hash is done when the last part lands. The bytes hashed are the bytes
in the file, exactly what the final check hashed before.

Once a part is hashed, its writeback to the disk is started without waiting for it
(`sync_file_range(SYNC_FILE_RANGE_WRITE)`, Linux): the download still ends with one `fsync` before the
rename (a crash never leaves a file that looks complete), but that fsync then finds most pages already
written instead of writing the whole file while the user waits (docs/performance.md, "Issue 22, fourth
pass"). Unlike `posix_fadvise(DONTNEED)` (tried in the third pass: more CPU, no wall won) it drops nothing
from the page cache and does not drain the LRU lists. It is only a hint: where the call is missing or
fails, nothing changes but the fsync's length.

Measured and not done (docs/performance.md, "Issue 22, third pass: download"): hashing a part straight from
its receive buffer (only the part at the hash position can be, 1 of every `concurrency`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
from collections.abc import Callable

_CHUNK = 1 << 20
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
    """Feed it `completed(part_number)` as parts are written to `fd`; `hexdigest()` once all are done."""

    def __init__(self, fd: int, ranges: list[tuple[int, int, int]], done: set[int] | None = None) -> None:
        self._fd = fd
        self._ranges = sorted(ranges, key=lambda r: r[1])
        self._ready = set(done or ())
        self._next = 0
        self._digest = hashlib.sha256()
        self._cond = threading.Condition()
        self._stopped = False
        self._error: OSError | None = None
        self._writeback = start_writeback()
        self._thread = threading.Thread(target=self._run, name="sha256-in-order", daemon=True)
        self._thread.start()

    def completed(self, number: int) -> None:
        with self._cond:
            self._ready.add(number)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and self._next < len(self._ranges):
                    if self._ranges[self._next][0] in self._ready:
                        break
                    self._cond.wait()
                if self._stopped or self._next >= len(self._ranges):
                    return
                _, offset, length = self._ranges[self._next]
            try:
                start, end = offset, offset + length
                while offset < end:  # hashlib releases the GIL on large buffers: parts keep arriving meanwhile
                    chunk = os.pread(self._fd, min(_CHUNK, end - offset), offset)
                    if not chunk:
                        break
                    self._digest.update(chunk)
                    offset += len(chunk)
                if self._writeback is not None and length:
                    self._writeback(self._fd, start, length)  # not read again: let the disk have it now
            except OSError as exc:
                self._error = exc
                return
            with self._cond:
                self._next += 1

    def hexdigest(self) -> str | None:
        """The file's SHA-256 once every part was reported, else None (stopped early, or a read failed)."""
        with self._cond:
            if any(r[0] not in self._ready for r in self._ranges):
                self._stopped = True  # a part never came: do not wait for it
                self._cond.notify()
        self._thread.join()
        if self._error is not None or self._next < len(self._ranges):
            return None
        return self._digest.hexdigest()

    def stop(self) -> None:
        """Stop hashing (a failed or cancelled download); safe to call more than once."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()
