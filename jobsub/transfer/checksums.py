"""Checksums, one abstraction for all of them: an algorithm name and a base64 value, as S3 writes them.

* MD5 per part (Content-MD5, compared with single-part ETags), the default for S3-compatible servers.
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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jobsub.config import private_mkdir, state_dir

_CHUNK = 256 << 10  # small reads: hashing speed is the same, and each worker thread holds less
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")

#: Profile values for `checksum`; "auto" is resolved per endpoint by resolve_algorithm().
CHECKSUM_MODES = ("auto", "md5", "crc32", "crc32c", "crc64nvme", "sha256")
#: A file modified this recently may still be changing within one timestamp tick: do not trust the cache.
RACY_SECONDS = 2.0


class _Hasher(Protocol):
    def update(self, chunk: bytes) -> Any: ...

    def digest(self) -> bytes: ...


def new_hasher(algorithm: str) -> _Hasher:
    """botocore's own checksum classes (CRT-backed when awscrt is installed); MD5/SHA-256 from hashlib."""
    if algorithm == "md5":
        return hashlib.md5()
    if algorithm == "sha256":
        return hashlib.sha256()
    from botocore import httpchecksum as hc

    try:
        if algorithm == "crc32":
            return hc.CrtCrc32Checksum() if _has_crt() else hc.Crc32Checksum()
        if algorithm == "crc32c":
            return hc.CrtCrc32cChecksum()
        if algorithm == "crc64nvme":
            return hc.CrtCrc64NvmeChecksum()
    except Exception as exc:  # MissingDependencyException without awscrt
        from jobsub.errors import ConfigError

        raise ConfigError(f"checksum {algorithm} needs awscrt (pip install awscrt): {type(exc).__name__}") from None
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def _has_crt() -> bool:
    try:
        import awscrt  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Checksum:
    """One checksum: an algorithm (md5, crc32, crc32c, crc64nvme, sha256) and its base64 value."""

    algorithm: str
    value: str

    @property
    def hex(self) -> str:
        return base64.b64decode(self.value).hex()

    def as_dict(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "value": self.value}

    @classmethod
    def of_bytes(cls, algorithm: str, data: bytes | memoryview) -> Checksum:
        hasher = new_hasher(algorithm)
        hasher.update(bytes(data) if isinstance(data, memoryview) else data)
        return cls(algorithm, base64.b64encode(hasher.digest()).decode())

    @classmethod
    def of_range(cls, algorithm: str, fd: int, offset: int, length: int) -> Checksum:
        hasher = new_hasher(algorithm)
        end = offset + length
        while offset < end:
            chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
            if not chunk:
                break
            hasher.update(chunk)
            offset += len(chunk)
        return cls(algorithm, base64.b64encode(hasher.digest()).decode())


def resolve_algorithm(mode: str, endpoint_url: str | None) -> str:
    """`auto`: CRC32 (what boto3 sends by default) on AWS; MD5 + Content-MD5 on other S3-compatible servers."""
    if mode != "auto":
        return mode
    if endpoint_url is None or ".amazonaws.com" in endpoint_url.lower():
        return "crc32"
    return "md5"


def md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def etag_is_md5(etag: str) -> bool:
    """A single-part, unencrypted object's ETag is the hex MD5 of its bytes; multipart ETags end in -N."""
    return bool(_MD5_HEX.match(etag.strip('"').lower()))


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
