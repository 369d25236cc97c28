"""What an endpoint was shown to verify: does it refuse a body that does not match its signed payload SHA-256
(S3Store.probe_signed_payload)?

An upload asks once per process (ask_once) and trusts only that answer: a URL can lead to another server
tomorrow (a tunnel, a swapped host), and a stale "verifies" would leave parts unchecked. The answer is also
written down per endpoint, for plans only (`upload --dry-run`, the estimate), which send nothing.

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
import threading
import time
from collections.abc import Callable
from pathlib import Path

from jobsub.config import state_dir, write_private

#: a record this module writes is ~150 bytes; anything larger was not written by it
MAX_BYTES = 1024
#: how long an answer is trusted (a server upgrade may change it)
TTL_SECONDS = 7 * 24 * 3600
_FIELDS = {"endpoint", "verifies_signed_payload", "checked"}

#: what this process's uploads found, per endpoint (None: asked, no answer; kept so a job's output syncs do
#: not ask again every minute)
_asked: dict[str, bool | None] = {}
_asked_lock = threading.Lock()


def ask_once(endpoint: str, ask: Callable[[], bool | None]) -> bool | None:
    """The server's answer for ``endpoint``, asked the first time this process needs it; a definite answer is
    also written down for plans (save_answer)."""
    with _asked_lock:
        if endpoint in _asked:
            return _asked[endpoint]
        verifies = _asked[endpoint] = ask()
    if verifies is not None:
        save_answer(endpoint, verifies)
    return verifies


def asked_in_this_process(endpoint: str, otherwise: Callable[[str], bool | None]) -> bool | None:
    """This process's own answer for ``endpoint`` if it asked, else ``otherwise(endpoint)`` (a written-down
    one: read only when this process has not asked). A question this process asked and got no answer to
    (None: no permission to write the probe, an outage) stays None: the upload then checks parts by MD5, so
    a guess from an older written-down "verifies" would only make the file's pass run twice."""
    with _asked_lock:
        if endpoint in _asked:
            return _asked[endpoint]
    return otherwise(endpoint)


def probe_path(endpoint: str) -> Path:
    """One file per endpoint, named by a hash of it (the endpoint itself is inside, checked on load)."""
    return state_dir() / "probes" / f"{hashlib.sha256(endpoint.encode()).hexdigest()[:32]}.json"


def load_answer(endpoint: str, now: float | None = None) -> bool | None:
    """The remembered answer for ``endpoint``, or None when there is none that can be trusted."""
    try:
        fd = os.open(probe_path(endpoint), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
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
