"""Log shipping: lines from the job's stdout/stderr become ordered, immutable chunks in the job record.

A chunk number only advances after its PUT succeeded, so a storage error delays lines but never loses or
repeats them: the next tick writes the same lines (plus new ones) under the same number.

When a chunk goes out: the first line after a quiet spell wakes the shipper at once, and PUTs are paced by
a small token bucket (BURST chunks, one more earned per `interval`). So the command's first line is not
held back by the chunk that carried jobsub's own staging lines a moment before (with a plain "one chunk
per interval" it waited up to a second for that: most of a job's start-to-first-line on a fast engine),
while a busy stream still costs one PUT per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import IO

from jobsub.errors import JobsubError
from jobsub.jobs.models import LogLine
from jobsub.jobs.records import JobRecord
from jobsub.redact import redact

log = logging.getLogger(__name__)
MAX_CHUNK_LINES = 5000
TICK = 0.2
#: chunks that may go out back to back after a quiet spell (then one per interval)
BURST = 3


class LogShipper:
    def __init__(self, record: JobRecord, interval: float = 1.0, first_chunk: int = 0, writer: str = "") -> None:
        self.record = record
        self.writer = writer  # the runner's id, part of every chunk name
        self.interval = interval
        self.next_chunk = first_chunk
        self._pending: list[LogLine] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by the first line after a flush, and by close()
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)
        self.on_tick: list = []  # small callables run after each flush (metrics sync); never a long upload
        #: called with the chunk's lines taken and before they are written (the runner's watchdog snapshot:
        #: whatever printed them is known to it before anyone can read them); None when nothing is to be done
        self.before_write: Callable[[], object] | None = None

    def start(self) -> LogShipper:
        self._thread.start()
        return self

    def add(self, stream: str, line: str) -> None:
        entry = LogLine(time=round(time.time(), 3), stream=stream, text=redact(line.rstrip("\r\n")))
        with self._lock:
            if not self._pending:
                self._wake.set()  # only the first line after a flush: a busy stream does not spin the loop
            self._pending.append(entry)

    def say(self, text: str) -> None:
        """A line from jobsub itself (staging, retries, cancel), shown in `logs` like the program's own."""
        self.add("jobsub", f"[jobsub] {text}")

    def pump(self, stream: IO[bytes], name: str) -> threading.Thread:
        def read() -> None:
            for raw in iter(stream.readline, b""):
                self.add(name, raw.decode("utf-8", errors="replace"))
            stream.close()

        thread = threading.Thread(target=read, name=f"pump-{name}", daemon=True)
        thread.start()
        return thread

    def flush(self) -> bool:
        """Write what is pending as the next chunk; False (lines kept) when the store refused."""
        with self._flush_lock:
            with self._lock:
                lines = self._pending[:MAX_CHUNK_LINES]
            if not lines:
                return True
            before = self.before_write
            if before is not None:
                before()
            try:
                self.record.write_chunk(self.next_chunk, lines, self.writer)
            except JobsubError as exc:
                log.warning("log chunk %d not written yet (%s); will retry", self.next_chunk, exc)
                return False
            with self._lock:
                del self._pending[: len(lines)]
            self.next_chunk += 1
            return True

    def _loop(self) -> None:
        """Wake on the first pending line (else every TICK); ship when lines wait and a token is left. Tokens
        refill at one per `interval` up to BURST: the first lines after a quiet spell go out at once, a busy
        stream costs one PUT per interval."""
        last_hooks = 0.0
        tokens, refilled = float(BURST), time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            tokens = min(float(BURST), tokens + (now - refilled) / self.interval)
            refilled = now
            if tokens >= 1 and self._has_pending():
                if self.flush():
                    tokens -= 1
                else:
                    tokens = 0  # the store refused: the next try waits a whole interval
            if now - last_hooks >= self.interval:
                last_hooks = now
                for hook in self.on_tick:
                    try:
                        hook()
                    except Exception as exc:  # a failed side task must not stop log shipping
                        log.warning("periodic task failed: %s", exc)
            if tokens >= 1 and self._has_pending():
                continue  # lines came during the PUT and a token is left
            self._wake.wait(TICK if tokens >= 1 else min(TICK, (1 - tokens) * self.interval))
            self._wake.clear()

    def _has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def close(self, deadline: float = 60.0) -> None:
        """Stop the thread and flush everything, retrying until the deadline."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        end = time.monotonic() + deadline
        while True:
            with self._lock:
                empty = not self._pending
            if empty:
                return
            if not self.flush():
                if time.monotonic() > end:
                    log.error("gave up shipping %d log lines", len(self._pending))
                    return
                time.sleep(1)
