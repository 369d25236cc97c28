"""Checksums of local files, on top of storage/checksums.py (the algorithm-and-value type the stores take).

* Per part on S3-compatible servers (`auto`): a SHA-256 signed as the SigV4 payload hash where the server
  verifies it (storage.checksums.SIGNED_SHA256), else MD5 (Content-MD5, compared with single-part ETags).
* Flexible checksums (crc32, crc32c, crc64nvme, sha256) computed by botocore's own implementations (awscrt's
  native code where botocore uses it), so a value we compute equals the one botocore and the server compute.
* A whole-file SHA-256 stored in object metadata, remembered in a small cache keyed by the file's identity
  (path, size, mtime_ns, ctime_ns, inode, device): a same-size rewrite with a restored mtime still changes
  the ctime, which no user can set, so it cannot reuse a stale hash.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobsub.config import private_mkdir, state_dir
from jobsub.storage.checksums import (  # noqa: F401 (moved to the stores that use them; imported from here too)
    CHECKSUM_MODES,
    Checksum,
    etag_is_md5,
    md5_b64,
    new_hasher,
    resolve_algorithm,
)

_CHUNK = 256 << 10  # small reads: hashing speed is the same, and each worker thread holds less

#: A file modified this recently may still be changing within one timestamp tick: do not trust the cache.
RACY_SECONDS = 2.0


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksum(path: Path, algorithm: str) -> Checksum:
    with open(path, "rb") as fh:
        return Checksum.of_range(algorithm, fh.fileno(), 0, os.fstat(fh.fileno()).st_size)


def identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What says "same file, same bytes" without reading it: size, mtime_ns, ctime_ns, inode, device."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


def is_racy(stat: os.stat_result, now: float | None = None) -> bool:
    """True when the file changed so recently that a write in the same timestamp tick could go unseen."""
    now = time.time() if now is None else now
    return now - max(stat.st_mtime_ns, stat.st_ctime_ns) / 1e9 < RACY_SECONDS


def _cache_path(path: Path, stat: os.stat_result) -> Path:
    key = "|".join(str(v) for v in (path.resolve(), *identity(stat)))
    return state_dir() / "hashes" / hashlib.sha1(key.encode()).hexdigest()


def lookup_sha256(path: Path, stat: os.stat_result) -> str | None:
    """The remembered SHA-256 for this file identity, or None (never for a file changed within RACY_SECONDS)."""
    if is_racy(stat):
        return None
    try:
        value = _cache_path(path, stat).read_text().strip()
    except OSError:
        return None
    return value if len(value) == 64 else None


_PASS_CHUNK = 1 << 20
#: threads that hash the parts in the plan's one read, beside the whole-file SHA-256 on the caller's thread
PASS_WORKERS = 2


def _pass_lanes(workers: int | None, parts: int) -> int:
    """Part-hash threads for a pass over ``parts`` parts: PASS_WORKERS (one per further core is what two
    cores allow: the caller's SHA-256 is the third stream), never more than the parts, at least one."""
    return max(1, min(PASS_WORKERS if workers is None else workers, parts))


def sha256_and_parts(
    path: Path,
    stat: os.stat_result,
    algorithm: str,
    ranges: list[tuple[int, int, int]],
    workers: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[str, dict[int, Checksum]]:
    """One read of the file for both its SHA-256 (remembered as cached_sha256 does) and each part's checksum.

    The SHA-256 must be known before CreateMultipartUpload (it goes into the metadata), so it cannot ride on
    the parts as they are sent; the part checksums ride on it instead, from the very same bytes: each chunk
    is read once (pread) and that one buffer feeds the whole-file SHA-256 (this thread) and its part's hasher.
    The parts are dealt round-robin to ``workers`` threads (each part's chunks in order to one thread, so
    its hash sees them in file order), which run beside this one (hashlib and CRT release the GIL): the pass
    costs about (SHA-256 + part checks) / cores instead of the slower of the two. A worker's queue is
    bounded (half a part, at most 8 chunks): the reader waits instead of holding the file in memory.

    ``stop``: asked between chunks; True abandons the pass (raises Cancelled: a request overlapped with it
    failed, or the transfer was interrupted).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    lanes = _pass_lanes(workers, len(ranges))
    part_size = max((length for _, _, length in ranges), default=0)
    limit = max(2, min(8, part_size // (2 * _PASS_CHUNK)))
    whole = hashlib.sha256()
    hashers: dict[int, Any] = {}
    executors = [ThreadPoolExecutor(1, thread_name_prefix=f"hash{i}") for i in range(lanes)]
    queues: list[deque[Future[Any]]] = [deque() for _ in range(lanes)]
    try:
        with open(path, "rb") as fh:
            fd = fh.fileno()
            for index, (number, offset, length) in enumerate(ranges):
                hasher = hashers[number] = new_hasher(algorithm)
                lane, queue = executors[index % lanes], queues[index % lanes]
                position, end = offset, offset + length
                while position < end:
                    if stop is not None and stop():
                        from jobsub.transfer.common import Cancelled

                        raise Cancelled()
                    chunk = os.pread(fd, min(_PASS_CHUNK, end - position), position)
                    if not chunk:
                        break  # the file shrank: the send sees it (fstat) and the upload fails "source changed"
                    while len(queue) >= limit:
                        queue.popleft().result()
                    queue.append(lane.submit(hasher.update, chunk))
                    whole.update(chunk)
                    position += len(chunk)
            for queue in queues:
                while queue:
                    queue.popleft().result()
    finally:
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)
    parts = {n: Checksum(algorithm, base64.b64encode(h.digest()).decode()) for n, h in hashers.items()}
    value = whole.hexdigest()
    if not is_racy(stat) and identity(path.stat()) == identity(stat):
        remember_sha256(path, stat, value)
    return value, parts


def cached_sha256(path: Path, stat: os.stat_result | None = None) -> str:
    """SHA-256 of a file, remembered per file identity so re-running an upload does not re-read it.

    A file changed within the last RACY_SECONDS is always re-hashed and its hash not remembered.
    """
    stat = stat or path.stat()
    cache = _cache_path(path, stat)
    racy = is_racy(stat)
    if not racy:
        try:
            value = cache.read_text().strip()
            if len(value) == 64:
                return value
        except OSError:
            pass
    value = file_digest(path)
    if racy or identity(path.stat()) != identity(stat):
        return value
    remember_sha256(path, stat, value)
    return value


def remember_sha256(path: Path, stat: os.stat_result, value: str) -> None:
    """Record a hash computed elsewhere (in the same pass as a copy) for the file identity ``stat``."""
    if is_racy(stat):
        return
    cache = _cache_path(path, stat)
    try:
        private_mkdir(cache.parent)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.replace(tmp, cache)
    except OSError:
        pass
