"""Secrets handed to the runtime on its standard input, so that they never sit in a container's config.

Why: whatever an executor puts in a container's environment, command or labels is shown by
`docker inspect` to anyone who may talk to the engine, and stays there until the container is removed.
The Docker executor therefore starts the runtime with ``JOBSUB_SECRETS_FROM=stdin`` (a flag, no value)
and writes one JSON line on the attached standard input right after the start::

    {"env": {"AWS_SECRET_ACCESS_KEY": "...", "HF_TOKEN": "..."}}

The runtime reads that line here (bounded in size and time), puts the values into its own process
environment (the job's command inherits them, as it did before), registers them with the redactor so
no log line carries them, and puts /dev/null on its standard input. Nothing is written to disk.
"""

from __future__ import annotations

import json
import os
import re
import select
import time
from collections.abc import MutableMapping

from jobsub.errors import UsageError
from jobsub.redact import register_secret

#: the variable that tells the runtime where its secrets come from (its value is never a secret)
FLAG = "JOBSUB_SECRETS_FROM"
#: the one source implemented here (executors/secret_fetch.py may add others)
STDIN = "stdin"
#: a handoff larger than this is refused: a few credentials and --secret-env values fit many times over
MAX_BYTES = 256 * 1024
#: how long the runtime waits for the line: the executor writes it within a second of the start
TIMEOUT_SECONDS = float(os.environ.get("JOBSUB_SECRETS_TIMEOUT_SECONDS", "60"))
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")


class HandoffError(UsageError):
    """The secrets did not arrive or are malformed: the runner stops before touching the job."""


def encode(values: dict[str, str]) -> bytes:
    """The line the executor writes (and the size it checks before starting anything)."""
    data = (json.dumps({"env": dict(values)}, separators=(",", ":")) + "\n").encode()
    if len(data) > MAX_BYTES:
        raise UsageError(f"the secret environment is {len(data)} bytes; at most {MAX_BYTES} can be handed to a job")
    return data


def _read_line(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HandoffError(f"no secrets arrived on standard input within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise HandoffError("standard input closed before the secrets arrived")
        data += chunk
        if len(data) > MAX_BYTES:
            raise HandoffError(f"the secrets on standard input exceed {MAX_BYTES} bytes")
    return data.split(b"\n", 1)[0]


def parse(line: bytes) -> dict[str, str]:
    """The variables in one handoff line; a HandoffError naming what is wrong (never a value)."""
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise HandoffError("the secrets on standard input are not JSON") from None
    values = document.get("env") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise HandoffError('the secrets on standard input are not {"env": {NAME: VALUE}}')
    for name, value in values.items():
        if not _NAME_RE.fullmatch(name):
            raise HandoffError(f"secret variable name {name[:64]!r} is not a valid environment name")
        if not isinstance(value, str) or "\0" in value:
            raise HandoffError(f"secret variable {name} is not a string without NUL bytes")
    return values


def receive_secrets(environ: MutableMapping[str, str] | None = None, fd: int = 0) -> list[str]:
    """Read the handed-off secrets when the executor said so; returns their names (empty when not asked)."""
    env = os.environ if environ is None else environ
    source = env.pop(FLAG, None)
    if not source:
        return []
    if source != STDIN:
        raise HandoffError(f"{FLAG}={source[:32]!r}: this runtime reads secrets from {STDIN} only")
    try:
        values = parse(_read_line(fd, TIMEOUT_SECONDS))
    finally:
        _close_stdin(fd)
    for name, value in values.items():
        register_secret(value)
        env[name] = value
    return sorted(values)


def _close_stdin(fd: int) -> None:
    """Nothing after the secrets reads this stream: the job's command gets /dev/null (it does already)."""
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
