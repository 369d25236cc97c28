"""The checksum type the stores send and compare: an algorithm name and a base64 value, as S3 writes them.

It lives with the stores (not the transfer engine) because the stores take checksum objects in their
signatures and must not import the floor above them; transfer/checksums.py builds on it (file hashes, the
SHA-256 cache).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from jobsub.config import Profile

_CHUNK = 256 << 10  # small reads: hashing speed is the same, and each worker thread holds less
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")

#: Profile values for `checksum`; "auto" is resolved per endpoint by resolve_algorithm().
CHECKSUM_MODES = ("auto", "md5", "crc32", "crc32c", "crc64nvme", "sha256")

#: Per-part check: the part's SHA-256 as the SigV4 payload hash (X-Amz-Content-SHA256, signed), which a
#: verifying server (Ceph RGW, AWS) checks against the body; no Content-MD5, no x-amz-checksum-* header.
SIGNED_SHA256 = "sha256-signed"
#: What `auto` resolves to on a non-AWS endpoint: SIGNED_SHA256 where a probe showed that the server refuses
#: a body that does not match its signed payload hash, else MD5 (Content-MD5 + the ETag comparison). The
#: uploader settles it once per endpoint (transfer/probes.py) before it plans; it never reaches a store call.
SIGNED_OR_MD5 = "sha256-signed-or-md5"


class _Hasher(Protocol):
    def update(self, chunk: bytes) -> Any: ...

    def digest(self) -> bytes: ...


def new_hasher(algorithm: str) -> _Hasher:
    """botocore's own checksum classes (CRT-backed when awscrt is installed); MD5/SHA-256 from hashlib."""
    if algorithm == "md5":
        return hashlib.md5()
    if algorithm in ("sha256", SIGNED_SHA256):
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

    @property
    def is_md5(self) -> bool:
        """MD5 travels as Content-MD5 (checked by most servers, compared with single-part ETags)."""
        return self.algorithm == "md5"

    @property
    def is_signed(self) -> bool:
        """A SIGNED_SHA256 checksum travels as the SigV4 payload hash (hex), checked by a verifying server."""
        return self.algorithm == SIGNED_SHA256

    def matches(self, data: bytes | memoryview) -> bool:
        """True when ``data`` has this checksum (a store that receives bytes checks them with this)."""
        return Checksum.of_bytes(self.algorithm, data).value == self.value

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
    """`auto`: CRC32 (what boto3 sends by default) on AWS; on other S3-compatible servers SIGNED_OR_MD5 (a
    signed per-part SHA-256 where the server is shown to verify it, else MD5 + Content-MD5)."""
    if mode != "auto":
        return mode
    if endpoint_url is None or ".amazonaws.com" in endpoint_url.lower():
        return "crc32"
    return SIGNED_OR_MD5


def profile_algorithm(profile: Profile) -> str:
    """The one place a profile's `checksum` becomes an algorithm: the transfer options carry the result.

    A local-folder store checks parts with MD5 (its part files are named by it) and an upload copies a
    file with SHA-256 (LocalStore.stage_file), so it is md5 there whatever the profile says.
    """
    if profile.storage == "local":
        return "md5"
    return resolve_algorithm(profile.checksum, profile.effective_endpoint())


def md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def etag_is_md5(etag: str) -> bool:
    """A single-part, unencrypted object's ETag is the hex MD5 of its bytes; multipart ETags end in -N."""
    return bool(_MD5_HEX.match(etag.strip('"').lower()))
