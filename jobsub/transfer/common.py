"""What upload and download share: options, the run summary, per-part retries and the file-level runner."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jobsub.errors import (
    BucketNotFoundError,
    CredentialsError,
    EndpointTimeoutError,
    JobsubError,
    TransferInterrupted,
    UsageError,
)
from jobsub.transfer.events import EventHub
from jobsub.transfer.planning import DEFAULT_PART_SIZE

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside workers once the transfer was interrupted or the file already failed."""


DEFAULT_RETRY_BACKOFF = 0.5


def retry_backoff_from_env() -> float:
    """JOBSUB_RETRY_BACKOFF (seconds, 0 to 60) or 0.5; a value that is not such a number is a usage error."""
    raw = os.environ.get("JOBSUB_RETRY_BACKOFF", "").strip()
    if not raw:
        return DEFAULT_RETRY_BACKOFF
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:  # also refuses nan and inf
        raise UsageError(f"JOBSUB_RETRY_BACKOFF={raw[:40]!r} is not a number of seconds from 0 to 60: set e.g. 0.5")
    return value


@dataclass
class TransferOptions:
    part_size: int | None = None  # None: 8 MiB, raised for files that would need more than 10,000 parts
    concurrency: int = 8
    multipart_threshold: int = DEFAULT_PART_SIZE
    part_attempts: int = 4  # on top of botocore's own retries, for errors that outlast them
    #: seconds before the 2nd attempt (then 2x, 3x ...); JOBSUB_RETRY_BACKOFF overrides it (fault tests: 0)
    retry_backoff: float = field(default_factory=lambda: retry_backoff_from_env())
    max_bandwidth: int | None = None  # bytes per second across all workers; None: unlimited
    #: the part checksum algorithm (md5 | crc32 | crc32c | crc64nvme | sha256), resolved once from the profile
    #: (storage.checksums.profile_algorithm); None: what the store was opened with (its checksum_algorithm)
    checksum: str | None = None


class RateLimiter:
    """A shared pacing clock: each part waits for its slot so the whole transfer stays under a byte rate."""

    def __init__(self, bytes_per_second: int | None) -> None:
        self.rate = bytes_per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: int, stop: Callable[[], bool]) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + n / self.rate
        while (remaining := start - time.monotonic()) > 0:
            if stop():
                raise Cancelled()
            time.sleep(min(remaining, 0.05))


@dataclass
class TransferSummary:
    files: int = 0
    files_transferred: int = 0
    files_resumed: int = 0
    files_skipped: int = 0
    bytes_total: int = 0
    bytes_transferred: int = 0
    parts_sent: int = 0
    parts_reused: int = 0
    requests: int = 0  # requests that wrote (PUT, UploadPart, Create/Complete/Abort multipart, local copy)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    #: local entries an upload did not send: "PATH: why" (links out of the folder, FIFOs; transfer/sources.py)
    skipped: list[str] = field(default_factory=list)
    #: per file: how its bytes were checked (sha256 | md5 | crc32 | crc32c | crc64nvme | size only)
    verified_by: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def verified(self, label: str, how: str) -> None:
        with self._lock:
            self.verified_by[label] = how

    def verification_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for how in self.verified_by.values():
            counts[how] = counts.get(how, 0) + 1
        return dict(sorted(counts.items()))

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        data["mb_per_s"] = round(self.bytes_transferred / 1e6 / self.seconds, 2) if self.seconds else 0.0
        data["seconds"] = round(self.seconds, 3)
        return data


def retryable(exc: BaseException) -> bool:
    """The one answer: a jobsub error says so by its class (errors.py's tree); an OSError (a reset socket, a
    short read) may pass on the next attempt."""
    if isinstance(exc, JobsubError):
        return exc.retryable
    return isinstance(exc, OSError)


def with_retries(
    action: Callable[[Callable[[int], None]], T],
    report: Callable[[int], None],
    options: TransferOptions,
    stop: Callable[[], bool],
) -> T:
    """Run ``action(progress)`` until it succeeds; a failed attempt rewinds the progress it reported.

    What is retried is answered by ``retryable`` (the exception classes' attribute): final errors are raised
    at once, the rest after ``options.part_attempts`` attempts with a growing pause (``retry_backoff``).
    """
    for attempt in range(1, options.part_attempts + 1):
        if stop():
            raise Cancelled()
        moved = 0

        def progress(n: int) -> None:
            nonlocal moved
            moved += n
            report(n)

        try:
            return action(progress)
        except (JobsubError, OSError) as exc:
            report(-moved)
            if not retryable(exc) or attempt == options.part_attempts:
                raise
            time.sleep(options.retry_backoff * attempt)
    raise AssertionError("unreachable")


def run_files(
    items: list[T],
    work: Callable[[T], str],
    label: Callable[[T], str],
    hub: EventHub,
    summary: TransferSummary,
    options: TransferOptions,
    cancel: threading.Event,
    verb: str,
) -> TransferSummary:
    """Run ``work`` for every item on a file-level pool; failures are collected, Ctrl-C becomes TransferInterrupted."""
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, min(options.concurrency, len(items))), thread_name_prefix="file")
    futures: dict[Future[str], T] = {pool.submit(work, item): item for item in items}
    try:
        for future in as_completed(futures):
            item = futures[future]
            try:
                outcome = future.result()
            except Cancelled:
                continue
            except JobsubError as exc:
                if isinstance(exc, CredentialsError | BucketNotFoundError | EndpointTimeoutError):
                    cancel.set()  # every other file would fail the same way
                summary.failures.append(f"{label(item)}: {exc}")
                hub.emit("done", path=label(item), outcome="failed", error=str(exc))
                continue
            except OSError as exc:
                summary.failures.append(f"{label(item)}: {exc.strerror or exc}")
                hub.emit("done", path=label(item), outcome="failed", error=str(exc))
                continue
            counter = {"skipped": "files_skipped", "resumed": "files_resumed"}.get(outcome)
            summary.add(files_transferred=0 if outcome == "skipped" else 1, **({counter: 1} if counter else {}))
            hub.emit("done", path=label(item), outcome=outcome)
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        summary.seconds = time.monotonic() - started
        raise TransferInterrupted(f"{verb} interrupted; run the same command again to resume") from None
    pool.shutdown(wait=True)
    summary.seconds = time.monotonic() - started
    if cancel.is_set() and not summary.failures:
        raise TransferInterrupted(f"{verb} interrupted; run the same command again to resume")
    return summary
