"""Log shipping: lines from the job's stdout/stderr become ordered, immutable chunks in the job record.

A chunk number only advances after its PUT succeeded, so a storage error delays lines but never loses or
repeats them: the next tick writes the same lines (plus new ones) under the same number.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import IO

from jobsub.errors import JobsubError
from jobsub.jobs.models import LogLine
from jobsub.jobs.records import JobRecord
from jobsub.redact import redact

log = logging.getLogger(__name__)
MAX_CHUNK_LINES = 5000
TICK = 0.2


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
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)
        self.on_tick: list = []  # small callables run after each flush (metrics sync); never a long upload

    def start(self) -> LogShipper:
        self._thread.start()
        return self

    def add(self, stream: str, line: str) -> None:
        entry = LogLine(time=round(time.time(), 3), stream=stream, text=redact(line.rstrip("\r\n")))
        with self._lock:
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
        """Wake every TICK; ship when lines wait and the last chunk is at least `interval` old. So the first
        line after a quiet spell goes out within TICK, and a busy stream costs one PUT per interval."""
        last_flush = last_hooks = 0.0
        while not self._stop.wait(TICK):
            now = time.monotonic()
            if now - last_flush >= self.interval and self._has_pending():
                self.flush()
                last_flush = now
            if now - last_hooks >= self.interval:
                last_hooks = now
                for hook in self.on_tick:
                    try:
                        hook()
                    except Exception as exc:  # a failed side task must not stop log shipping
                        log.warning("periodic task failed: %s", exc)

    def _has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def close(self, deadline: float = 60.0) -> None:
        """Stop the thread and flush everything, retrying until the deadline."""
        self._stop.set()
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
