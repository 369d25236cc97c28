"""Part planning: how a file is cut into multipart parts."""

from __future__ import annotations

import math

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
