"""Parsing and printing of sizes and durations the way users type and read them."""

from __future__ import annotations

import math
import re

from jobsub.errors import UsageError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Beyond these a number is a typo, and datetime / int arithmetic on it overflows (`--since 99999999999d`).
MAX_DURATION_SECONDS = 100 * 366 * 86400  # 100 years
MAX_SIZE_BYTES = 1 << 60  # 1 EiB


def parse_size(text: str | int) -> int:
    """'8MiB', '8MB', '8M', '8388608' -> bytes. Decimal units (MB) are powers of 1000, binary (MiB, M) 1024.

    A bare 'M' is read as MiB, as aws-cli and s5cmd users expect.
    """
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise UsageError(f"cannot read size {text!r}: use a number with an optional unit, e.g. 8MiB or 64M")
    number, prefix, binary, byte = match.groups()
    power = "kmgt".find(prefix.lower()) + 1 if prefix else 0
    base = 1000 if (prefix and byte and not binary) else 1024
    value = float(number) * base**power
    if not math.isfinite(value) or value > MAX_SIZE_BYTES:
        raise UsageError(f"size {text.strip()!r} is too large: at most 1 EiB")
    return int(value)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_duration(text: str) -> float:
    """'7d', '12h', '30m', '45s', '90' -> seconds."""
    match = _DURATION_RE.match(text)
    if not match:
        raise UsageError(f"cannot read duration {text!r}: use e.g. 45s, 30m, 12h or 7d")
    seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds > MAX_DURATION_SECONDS:
        raise UsageError(f"duration {text.strip()!r} is too long: at most 100 years (36600d)")
    return seconds


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def human_limit(nbytes: int) -> str:
    """A memory limit as people write it: '2 GiB', '512 MiB', '1.5 MiB' (OOM messages of runtime and docker)."""
    mib = nbytes / (1 << 20)
    if mib >= 1024 and mib % 1024 == 0:
        return f"{mib / 1024:.0f} GiB"
    return f"{mib:.0f} MiB" if mib == int(mib) else f"{mib:.1f} MiB"
