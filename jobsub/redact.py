"""Keeping credentials out of every line jobsub prints or writes (logs, job records, --debug output).

Redaction knows every credential value botocore resolved, wherever it came from (environment, shared
credentials/config files, SSO, assume-role, container or instance metadata), not only environment values:
the S3 store registers its session's credentials when it is opened and again before each request is
signed (refreshed temporary credentials included). Secrets passed with ``--secret-env`` are registered too.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "HUAWEICLOUD_SDK_SK",  # the ModelArts executor (Huawei Cloud SDK conventions)
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
)
KEY_ID_ENV_VARS = ("AWS_ACCESS_KEY_ID", "HUAWEICLOUD_SDK_AK")
_SIGNATURE_RE = re.compile(r"(Signature=|X-Amz-Signature=|X-Amz-Credential=|Credential=)[^,\s&\"']+")
_HEADER_RE = re.compile(r"((?:X-Amz-Security-Token|Authorization)['\"]?\s*[:=]\s*['\"]?(?:b['\"])?)[^,\s\"'}]+", re.I)
#: Words that make an environment variable name look like a secret (matched per '_'-separated segment).
SECRET_WORDS = (
    "KEY",
    "SECRET",
    "TOKEN",
    "PASS",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "PWD",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "AUTHORIZATION",
    "DSN",
)
#: A URL that carries a password in its userinfo (scheme://user:password@host): postgres://, redis://,
#: https://x-access-token:TOKEN@github.com, amqp://, a Sentry-style DSN ...
_URL_USERINFO_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s@?#]*:[^/\s@?#]*@")
#: Shortest credential looked for *inside* a value (shorter ones would match ordinary text; equality still counts).
MIN_CONTAINED_SECRET = 8

_registered: dict[str, str] = {}  # value -> placeholder
_lock = threading.Lock()


def register_secret(value: str | None, placeholder: str = "***") -> None:
    """Redact this value from now on (only values long enough not to blank out ordinary words)."""
    if value and len(value) >= 4 and value not in _registered:
        with _lock:
            _registered[value] = placeholder


def register_credentials(access_key: str | None, secret_key: str | None, token: str | None) -> None:
    if access_key and len(access_key) >= 8:
        register_secret(access_key, "..." + access_key[-4:])
    register_secret(secret_key)
    register_secret(token)


def resolved_secrets() -> set[str]:
    """Every secret value known to this process (environment credentials and what botocore resolved)."""
    values = {value for value, _ in _secrets()}
    with _lock:
        values.update(_registered)
    return values


def track_credentials(session: Any, client: Any | None = None) -> None:
    """Register what the boto3 session resolved now, and whatever it uses when signing each request later."""
    try:
        creds = session.get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            register_credentials(frozen.access_key, frozen.secret_key, frozen.token)
    except Exception:  # no credentials yet: the request itself will say so
        pass
    if client is None:
        return

    def before_sign(request_signer: Any = None, **_: Any) -> None:
        creds = getattr(request_signer, "_credentials", None)
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            register_credentials(frozen.access_key, frozen.secret_key, frozen.token)

    client.meta.events.register_first("before-sign.s3", before_sign)


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
    with _lock:
        pairs.extend(_registered.items())
    return sorted(pairs, key=lambda pair: -len(pair[0]))  # longest first: a token may contain a shorter value


def redact(text: str) -> str:
    """Replace known secret values and request signatures / security-token headers with placeholders."""
    for value, placeholder in _secrets():
        if value in text:
            text = text.replace(value, placeholder)
    text = _HEADER_RE.sub(lambda m: m.group(1) + "***", text)
    return _SIGNATURE_RE.sub(lambda m: m.group(1) + "***", text)


def is_secret_env(name: str) -> bool:
    """Environment variable names that look like secrets and must never be copied into a job record.

    Matched per '_'-separated segment, so API_KEY, DB_PASS, HF_TOKEN, GITHUBTOKEN and MY_PWD are refused
    while TOKENIZERS_PARALLELISM or KEYWORDS are not.
    """
    upper = name.upper()
    if upper in SECRET_ENV_VARS or upper in KEY_ID_ENV_VARS:
        return True
    for segment in re.split(r"[^A-Z0-9]+", upper):
        for word in SECRET_WORDS:
            if segment == word or segment == word + "S" or (segment.endswith(word) and len(segment) > len(word)):
                return True
    return False


def has_url_userinfo(value: str) -> bool:
    """True when the value holds a URL with ``user:password@`` (the password would be stored in plain text)."""
    return bool(_URL_USERINFO_RE.search(value))


def holds_credential(value: str, known: set[str] | None = None) -> bool:
    """True when the value is, or contains, one of the credentials this process knows (environment keys and
    what botocore resolved): ``--x=KEY`` or ``Bearer KEY`` hides the key as well as the bare key does."""
    if not value:
        return False
    for secret in resolved_secrets() if known is None else known:
        if value == secret or (len(secret) >= MIN_CONTAINED_SECRET and secret in value):
            return True
    return False


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True
