"""Small pure functions whose mistakes users would see: sizes, durations, URIs, part plans, profiles."""

from __future__ import annotations

import pytest

from jobsub.errors import InvalidURIError, UsageError
from jobsub.transfer.planning import MAX_PARTS, part_ranges, plan_part_size
from jobsub.units import parse_duration, parse_size
from jobsub.uri import ObjectURI, key_problem


@pytest.mark.parametrize(
    "text, expected", [("8MiB", 8 << 20), ("8M", 8 << 20), ("8MB", 8_000_000), ("1024", 1024), ("1.5GiB", 3 << 29)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90") == 90
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_uri_parsing_and_aliases() -> None:
    assert ObjectURI.parse("obs://bucket1/a/b") == ObjectURI("bucket1", "a/b")
    assert ObjectURI.parse("s3://bucket1").key == ""
    for bad in ("s3://", "bucket/key", "s3://ab/x", "s3://bucket1/a/../b", "s3://bucket1//a"):
        with pytest.raises(InvalidURIError):
            ObjectURI.parse(bad)


def test_key_problem() -> None:
    assert key_problem("a/b/c.txt") is None
    assert key_problem("a/") is None
    for bad in ("../x", "a/../b", "/abs", "a//b", "a\\b", "a/./b", "nul\x00"):
        assert key_problem(bad), bad


def test_part_plan_never_exceeds_10000_parts() -> None:
    size = 200 * (1 << 30)
    part = plan_part_size(size)
    assert part % (1 << 20) == 0 and -(-size // part) <= MAX_PARTS
    assert plan_part_size(100) == 8 << 20
    ranges = part_ranges(17, 8)
    assert ranges == [(1, 0, 8), (2, 8, 8), (3, 16, 1)]
    with pytest.raises(UsageError):
        plan_part_size(100, 1 << 20)
