"""What an endpoint was shown to verify, remembered per endpoint: does it refuse a body that does not match
its signed payload SHA-256 (S3Store.probe_signed_payload)?

The answer decides the per-part check of `checksum = auto` on a non-AWS endpoint: a signed SHA-256 (computed
in the upload's one hash pass, checked by the server) where the server verifies it, else MD5 + Content-MD5
and the ETag comparison. A wrong "verifies" would leave parts unchecked on a server that checks nothing, so
the remembered answer is trusted only when everything about it is as this module writes it: a regular file
owned by this user, at most MAX_BYTES, JSON with exactly the expected fields and types, for this very
endpoint, made no more than TTL_SECONDS ago and not in the future. Anything else is ignored and the server
is asked again (one tiny request).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

from jobsub.config import state_dir, write_private

#: a record this module writes is ~150 bytes; anything larger was not written by it
MAX_BYTES = 1024
#: how long an answer is trusted (a server upgrade may change it)
TTL_SECONDS = 7 * 24 * 3600
_FIELDS = {"endpoint", "verifies_signed_payload", "checked"}


def probe_path(endpoint: str) -> Path:
    """One file per endpoint, named by a hash of it (the endpoint itself is inside, checked on load)."""
    return state_dir() / "probes" / f"{hashlib.sha256(endpoint.encode()).hexdigest()[:32]}.json"


def load_answer(endpoint: str, now: float | None = None) -> bool | None:
    """The remembered answer for ``endpoint``, or None when there is none that can be trusted."""
    path = probe_path(endpoint)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > MAX_BYTES:
            return None
        raw = os.read(fd, MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != _FIELDS or data["endpoint"] != endpoint:
        return None
    verifies, checked = data["verifies_signed_payload"], data["checked"]
    if not isinstance(verifies, bool) or isinstance(checked, bool) or not isinstance(checked, int | float):
        return None
    age = (time.time() if now is None else now) - checked
    if not 0 <= age <= TTL_SECONDS:
        return None
    return verifies


def save_answer(endpoint: str, verifies: bool) -> None:
    """Remember a definite answer (owner-only, replaced atomically); a failure to write is not an error."""
    record = {"endpoint": endpoint, "verifies_signed_payload": verifies, "checked": time.time()}
    try:
        write_private(probe_path(endpoint), json.dumps(record).encode())
    except OSError:
        pass
