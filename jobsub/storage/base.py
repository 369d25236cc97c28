"""The ObjectStore protocol: the few S3 operations jobsub needs, with one meaning in every backend.

Backends translate their own failures into the jobsub.errors tree, so callers never see botocore or OSError.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, Union

if TYPE_CHECKING:
    from jobsub.storage.checksums import Checksum

ProgressCallback = Callable[[int], None]
"""Called with a byte count as a body is sent; a negative count means a retry rewound the body."""


@dataclass(frozen=True)
class FileRange:
    """A part of an open local file, read on demand while it is sent.

    Holding a part as a FileRange instead of bytes keeps a transfer's memory at socket buffers whatever
    the part size and concurrency (the model of s3transfer's ReadFileChunk).
    """

    fd: int
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length

    def read(self, start: int, size: int) -> bytes:
        size = max(0, min(size, self.length - start))
        return os.pread(self.fd, size, self.offset + start) if size else b""


PartData = Union[bytes, FileRange]  # noqa: UP007 (a runtime alias on Python 3.10)

#: User metadata key holding the hex SHA-256 of the whole object.
SHA256_META = "jobsub-sha256"


@dataclass
class ObjectInfo:
    key: str
    size: int
    etag: str = ""
    last_modified: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    #: flexible checksums the server returned (algorithm -> base64 value; composite ones end in -N)
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str = ""  # FULL_OBJECT | COMPOSITE | "" (not said)


@dataclass
class ListResult:
    objects: list[ObjectInfo]
    prefixes: list[str]


@dataclass
class PartInfo:
    number: int
    size: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64, when the server lists them


@dataclass
class UploadInfo:
    key: str
    upload_id: str
    initiated: datetime | None = None


class ObjectStore(Protocol):
    """What the transfer engine and the job records need from any S3-compatible store.

    Checksums: a write takes at most one ``Checksum`` (the transfer options' algorithm, computed by the
    caller): MD5 goes as Content-MD5, the others as x-amz-checksum-*; a store that receives the bytes itself
    (the local folder) recomputes it and refuses a mismatch.
    """

    description: str
    #: the algorithm the profile resolved to (storage.checksums.profile_algorithm), for callers without options
    checksum_algorithm: str

    def check_bucket(self, bucket: str) -> None:
        """Raise BucketNotFoundError / CredentialsError early, before any work is done."""

    def list_buckets(self) -> list[str]: ...

    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def get_range(
        self, bucket: str, key: str, start: int, length: int, progress: ProgressCallback | None = None
    ) -> bytes: ...

    def get(self, bucket: str, key: str) -> bytes: ...

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        metadata: dict[str, str] | None = None,
        progress: ProgressCallback | None = None,
        checksum: Checksum | None = None,
    ) -> str: ...

    def put_if_absent(self, bucket: str, key: str, data: bytes) -> bool:
        """Write only when no object has this key (S3 If-None-Match: *); False when one exists.
        Raises ConditionalWriteUnsupported where the server ignores or refuses the condition."""
        ...

    def iter_objects(self, bucket: str, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]: ...

    def list(self, bucket: str, prefix: str = "", delimiter: str = "/") -> ListResult: ...

    def delete(self, bucket: str, key: str) -> None: ...

    def presigned_get_url(self, bucket: str, key: str, seconds: int) -> str | None:
        """A URL that GETs this object without credentials for `seconds` (signed locally, nothing is sent);
        None where the store has no such thing (the local store)."""
        ...

    def create_multipart(
        self, bucket: str, key: str, metadata: dict[str, str] | None = None, checksum_algorithm: str | None = None
    ) -> str: ...

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: PartData,
        checksum: Checksum,
        progress: ProgressCallback | None = None,
    ) -> str: ...

    def list_parts(self, bucket: str, key: str, upload_id: str) -> builtins.list[PartInfo]: ...

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: builtins.list[tuple[int, str]],
        checksums: dict[int, Checksum] | None = None,
    ) -> str: ...

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None: ...

    def list_uploads(self, bucket: str, prefix: str = "") -> builtins.list[UploadInfo]: ...
