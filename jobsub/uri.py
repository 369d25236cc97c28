"""Object addresses: ``s3://bucket/key`` (``obs://`` is an alias) and the key rules every store enforces."""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobsub.errors import InvalidURIError

SCHEMES = ("s3://", "obs://")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def is_remote(text: str) -> bool:
    return text.lower().startswith(SCHEMES)


def validate_bucket(bucket: str) -> str:
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidURIError(f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-'")
    return bucket


def key_problem(key: str) -> str | None:
    """Why a key is unsafe to store or to map onto a local path, or None when it is fine."""
    if "\x00" in key:
        return "contains a NUL character"
    if key.startswith("/"):
        return "starts with '/'"
    if "\\" in key:
        return "contains a backslash"
    segments = key.split("/")
    body = segments[:-1] if key.endswith("/") else segments
    if any(s in ("..", ".") for s in segments):
        return "has a '.' or '..' segment"
    if any(s == "" for s in body):
        return "has an empty segment ('//')"
    return None


def validate_key(key: str) -> str:
    problem = key_problem(key)
    if problem:
        raise InvalidURIError(f"invalid object key {key!r}: it {problem}")
    return key


@dataclass(frozen=True)
class ObjectURI:
    """A bucket and a key (or key prefix). An empty key means the whole bucket."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str) -> ObjectURI:
        lowered = text.lower()
        scheme = next((s for s in SCHEMES if lowered.startswith(s)), None)
        if scheme is None:
            raise InvalidURIError(f"invalid object URI {text!r}: expected s3://bucket/key (or obs://bucket/key)")
        rest = text[len(scheme) :]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise InvalidURIError(f"invalid object URI {text!r}: the bucket name is missing")
        validate_bucket(bucket)
        if key:
            validate_key(key)
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def join(self, *parts: str) -> ObjectURI:
        key = self.key
        for part in parts:
            if not part:
                continue
            if key and not key.endswith("/"):
                key += "/"
            key += part.lstrip("/")
        return ObjectURI(self.bucket, key)

    def as_prefix(self) -> ObjectURI:
        return self if self.is_prefix else ObjectURI(self.bucket, self.key + "/")

    @property
    def name(self) -> str:
        return self.key.rstrip("/").rsplit("/", 1)[-1]
