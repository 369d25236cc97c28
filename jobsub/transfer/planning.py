"""Transfer planning: how a file is cut into parts, and the typed plan an upload makes before any byte moves."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # the S3 minimum for every part but the last
DEFAULT_PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB


def plan_part_size(size: int, requested: int | None = None) -> int:
    """The part size for a file: the request (or 8 MiB), raised to a whole MiB so no file needs > 10,000 parts."""
    part = requested or DEFAULT_PART_SIZE
    if requested is not None and requested < MIN_PART_SIZE:
        from jobsub.errors import UsageError

        raise UsageError(f"part size {requested} is below the S3 minimum of 5 MiB: use --part-size 5MiB or more")
    needed = math.ceil(size / MAX_PARTS)
    if needed > part:
        part = math.ceil(needed / MiB) * MiB
    return min(part, MAX_PART_SIZE)


def part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """(part number from 1, offset, length) for every part of a file of ``size`` bytes."""
    count = max(1, math.ceil(size / part_size))
    return [(i + 1, i * part_size, min(part_size, size - i * part_size)) for i in range(count)]


#: a streamed download's ranges: the bulk in ranges of up to this size (fewer requests: each GetObject costs
#: botocore ~2 ms of CPU), the last wave in DOWNLOAD_TAIL_RANGE ranges so the streams end close together
DOWNLOAD_MAX_RANGE = 64 * MiB
DOWNLOAD_TAIL_RANGE = DEFAULT_PART_SIZE


def plan_download_ranges(
    size: int, concurrency: int, requested: int | None = None
) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(bulk range size, tail range size, ranges) for a download streamed into a file by ranged GETs.

    Why not upload's part size: a download has no 5 MiB minimum nor 10,000-part cap of its own, and every
    GetObject costs 1.6-2.2 ms of botocore CPU (docs/performance.md, "Issue 22, fifth pass"), so the bulk goes in
    ranges of up to 64 MiB (a 1 GiB object: 23 requests instead of 128). The in-order hash follows each range
    as it is written, but ranges in flight together end together, so the last ``concurrency`` ranges are
    8 MiB: the hash catches up on the bulk while they arrive, and what is left to hash after the last byte is
    about one 8 MiB range per stream. A ``requested`` part size (``--part-size``) is used for every range.
    The layout is a pure function of its inputs: a resumed download recomputes it and finds the same ranges.
    """
    if requested is not None or size <= 0:
        part = plan_part_size(size, requested)
        return part, part, part_ranges(size, part) if size else []
    workers = max(1, concurrency)
    tail_part = DOWNLOAD_TAIL_RANGE
    tail = min(size, workers * tail_part)
    bulk = size - tail
    bulk_part = tail_part
    if bulk > 0:
        per_stream = math.ceil(bulk / workers)
        bulk_part = max(tail_part, min(DOWNLOAD_MAX_RANGE, math.ceil(per_stream / MiB) * MiB))
    ranges: list[tuple[int, int, int]] = []
    offset = 0
    while offset < size:
        length = min(bulk_part if offset < bulk else tail_part, (bulk if offset < bulk else size) - offset)
        ranges.append((len(ranges) + 1, offset, length))
        offset += length
    return bulk_part, tail_part, ranges


# -- the typed transfer plan ---------------------------------------------------------------------------------
#: What an upload does with one file: nothing (unchanged), one PUT, a multipart upload, or a local-folder copy.
Action = Literal["skip", "put", "multipart", "copy"]


@dataclass
class FilePlan:
    """What the upload of one file will do, decided before any byte moves (read-only: HEAD, ListParts, reads).

    The figures (``parts_to_send``, ``bytes_to_send``, ``requests``) are what the transfer then does when no
    request fails; the uploader carries out exactly this plan, so ``jobsub upload --dry-run`` cannot drift
    from the real run. ``requests`` counts the requests that write (PUT, UploadPart, Create/Complete/Abort
    multipart, a local copy); retries come on top.
    """

    source: str
    bucket: str
    key: str
    size: int
    action: Action
    reason: str
    sha256: str | None = None
    part_size: int = 0
    parts: int = 0  # parts of a multipart upload (0 otherwise)
    reused: list[int] = field(default_factory=list)  # part numbers on the server that hold our bytes (re-read)
    upload_id: str = ""  # the upload resumed ("" for a new one)
    resumed_from: Literal["", "journal", "pending"] = ""
    abort_upload_id: str = ""  # a stale upload of a changed file, aborted before the new one starts
    #: how each part (or the one PUT) is checked: md5 (Content-MD5 + ETag), sha256-signed (the SigV4 payload
    #: hash, checked by the server), a flexible checksum, or sha256 (a local copy); the journal records the
    #: same, so a resume never mixes two checks in one upload
    part_check: str = ""
    #: the carrying out: stat taken before the first read, the journal to resume, reused parts' checksums
    stat: os.stat_result | None = field(default=None, repr=False, compare=False)
    journal: Any = field(default=None, repr=False, compare=False)
    stale_journal: Any = field(default=None, repr=False, compare=False)
    reused_parts: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    #: part checksums made in the same read as the SHA-256 (none when the SHA-256 came from the cache)
    part_checksums: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def parts_to_send(self) -> int:
        if self.action == "multipart":
            return self.parts - len(self.reused)
        return 0 if self.action == "skip" else 1

    @property
    def bytes_to_send(self) -> int:
        if self.action == "skip":
            return 0
        if self.action != "multipart":
            return self.size
        reused = sum(length for n, _, length in part_ranges(self.size, self.part_size) if n in set(self.reused))
        return self.size - reused

    @property
    def bytes_reused(self) -> int:
        return self.size - self.bytes_to_send if self.action == "multipart" else 0

    @property
    def requests(self) -> int:
        if self.action == "skip":
            return 0
        if self.action != "multipart":
            return 1
        create = 0 if self.upload_id else 1
        return create + self.parts_to_send + 1 + (1 if self.abort_upload_id else 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "uri": f"s3://{self.bucket}/{self.key}",
            "size": self.size,
            "action": self.action,
            "reason": self.reason,
            "part_size": self.part_size,
            "parts": self.parts,
            "parts_to_send": self.parts_to_send,
            "parts_reused": len(self.reused),
            "bytes_to_send": self.bytes_to_send,
            "bytes_reused": self.bytes_reused,
            "requests": self.requests,
            "upload_id": self.upload_id or None,
            "abort_upload_id": self.abort_upload_id or None,
            "part_check": self.part_check or None,
        }


@dataclass
class UploadPlan:
    """Every file's plan plus the totals a user checks before committing to a transfer."""

    files: list[FilePlan]

    def totals(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "files_to_send": sum(1 for f in self.files if f.action != "skip"),
            "files_unchanged": sum(1 for f in self.files if f.action == "skip"),
            "files_resumed": sum(1 for f in self.files if f.reused or f.upload_id),
            "bytes_total": sum(f.size for f in self.files),
            "bytes_to_send": sum(f.bytes_to_send for f in self.files),
            "bytes_reused": sum(f.bytes_reused for f in self.files),
            "parts_to_send": sum(f.parts_to_send for f in self.files),
            "parts_reused": sum(len(f.reused) for f in self.files),
            "requests": sum(f.requests for f in self.files),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, **self.totals(), "plan": [f.as_dict() for f in self.files]}
