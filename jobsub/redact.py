"""Keeping credentials out of every line jobsub prints or writes (logs, job records, --debug output)."""

from __future__ import annotations

import logging
import os
import re

SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
KEY_ID_ENV_VARS = ("AWS_ACCESS_KEY_ID",)
_SIGNATURE_RE = re.compile(r"(Signature=|X-Amz-Signature=|X-Amz-Credential=|Credential=)[^,\s&\"']+")


def _secrets() -> list[tuple[str, str]]:
    pairs = []
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            pairs.append((value, "***"))
    for name in KEY_ID_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 8:
            pairs.append((value, "..." + value[-4:]))
    return pairs


def redact(text: str) -> str:
    """Replace known secret values (from the environment) and request signatures with placeholders."""
    for value, placeholder in _secrets():
        text = text.replace(value, placeholder)
    return _SIGNATURE_RE.sub(lambda m: m.group(1) + "***", text)


def is_secret_env(name: str) -> bool:
    """Environment variable names that must never be copied into a job record."""
    upper = name.upper()
    return (
        upper in SECRET_ENV_VARS
        or upper in KEY_ID_ENV_VARS
        or any(word in upper for word in ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "PRIVATE_KEY"))
    )


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True
