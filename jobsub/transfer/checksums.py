"""Checksums: per-part MD5 (Content-MD5 and ETag comparison) and whole-file SHA-256 with a small cache."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from jobsub.config import state_dir

_CHUNK = 256 << 10  # small reads: hashing speed is the same, and each worker thread holds less
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")


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


def range_md5(fd: int, offset: int, length: int) -> str:
    digest = hashlib.md5()
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _cache_path(path: Path, size: int, mtime_ns: int) -> Path:
    identity = f"{path.resolve()}|{size}|{mtime_ns}".encode()
    return state_dir() / "hashes" / hashlib.sha1(identity).hexdigest()


def cached_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime_ns) so re-running an upload does not re-read it."""
    stat = path.stat()
    cache = _cache_path(path, stat.st_size, stat.st_mtime_ns)
    try:
        value = cache.read_text().strip()
        if len(value) == 64:
            return value
    except OSError:
        pass
    value = file_digest(path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(value)
        os.replace(tmp, cache)
    except OSError:
        pass
    return value
