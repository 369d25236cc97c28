"""SHA-256 of a file that is written out of order (parallel ranged GETs), computed in order as parts land.

Why: a download's end-to-end check is the SHA-256 of the whole file. Computed after the last part, it is a
second full pass over the file that nothing overlaps (a third of a 512 MiB download's time on Ceph). Here a
background thread hashes each part as soon as it and every part before it are on disk, reading from the page
cache right after the write, so the hash is done when the last part lands. The bytes hashed are the bytes
in the file, exactly what the final check hashed before.

Measured and not done (docs/performance.md, "Issue 22, third pass: download"): hashing a part straight from
its receive buffer (only the part at the hash position can be, 1 of every `concurrency`), and starting each
hashed part's writeback at once with `posix_fadvise(DONTNEED)` (the fsync at the end waited 0.03 s instead
of 0.18 s, but whole downloads on Ceph used 0.04-0.15 CPU s more, and no wall time was won).
"""

from __future__ import annotations

import hashlib
import os
import threading

_CHUNK = 1 << 20


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
                end = offset + length
                while offset < end:  # hashlib releases the GIL on large buffers: parts keep arriving meanwhile
                    chunk = os.pread(self._fd, min(_CHUNK, end - offset), offset)
                    if not chunk:
                        break
                    self._digest.update(chunk)
                    offset += len(chunk)
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
