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

import hashlib
import os
import time
from pathlib import Path

from jobsub.config import private_mkdir, state_dir
from jobsub.prehash import RACY_SECONDS, cache_key, identity, is_racy  # noqa: F401 (import-light, shared)
from jobsub.storage.checksums import (  # noqa: F401 (moved to the stores that use them; imported from here too)
    CHECKSUM_MODES,
    Checksum,
    etag_is_md5,
    md5_b64,
    new_hasher,
    resolve_algorithm,
)

_CHUNK = 256 << 10  # small reads: hashing speed is the same, and each worker thread holds less


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksum(path: Path, algorithm: str) -> Checksum:
    with open(path, "rb") as fh:
        return Checksum.of_range(algorithm, fh.fileno(), 0, os.fstat(fh.fileno()).st_size)


def range_md5(fd: int, offset: int, length: int) -> str:
    return Checksum.of_range("md5", fd, offset, length).hex


def _cache_path(path: Path, stat: os.stat_result) -> Path:
    """The hash cache entry (made here with the state folder, so an unusable one fails the file in one line;
    jobsub.prehash reads the same entries without creating anything)."""
    return state_dir() / "hashes" / cache_key(path, stat)


def lookup_sha256(path: Path, stat: os.stat_result) -> str | None:
    """The remembered SHA-256 for this file identity, or None (never for a file changed within RACY_SECONDS).

    An unusable state folder raises (OSError): the upload cannot keep its hash cache or journal, and that
    file fails in one line saying why, whether or not its hash came from elsewhere (jobsub.prehash)."""
    cache = _cache_path(path, stat)
    if is_racy(stat):
        return None
    try:
        value = cache.read_text().strip()
    except OSError:
        return None
    return value if len(value) == 64 else None


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
