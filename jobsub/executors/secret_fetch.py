"""The runner's side of the one-time secret: how credentials reach a runner without passing through a
channel that others can read (a Ray job's runtime_env ends up in Ray's session logs and job info).

The client (jobsub/executors/secret_drop.py) XORs the runner's secret variables with a random pad of the
same length, stores the result as one object under the job's prefix and gives the runner only a *ticket*
in ``JOBSUB_SECRET_FETCH``: the object's URI, a short-lived presigned GET URL for it (S3 stores; a local
store is read through the store itself) and the pad. The runner fetches the object, removes the pad, puts
the values in its environment (registered for redaction) and deletes the object once its store is open.

Why both halves: the ticket alone (what Ray's logs keep) is useless once the object is deleted, and the
object alone (what anyone who can read the bucket's job prefix sees) is a one-time-pad ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from typing import TYPE_CHECKING

from jobsub.errors import JobsubError
from jobsub.redact import register_secret
from jobsub.uri import ObjectURI

if TYPE_CHECKING:
    from jobsub.config import Profile
    from jobsub.storage.base import ObjectStore

log = logging.getLogger(__name__)

#: the variable that carries the ticket; removed from the environment as soon as it is read
TICKET_ENV = "JOBSUB_SECRET_FETCH"
#: the secrets object is a few hundred bytes; anything much larger is not ours
MAX_BYTES = 1 << 20
_FETCH_TIMEOUT = 30.0


class SecretFetchError(JobsubError):
    """The runner could not get its secrets: one line saying why, and the job does not start."""


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def _http_get(url: str) -> bytes:
    """GET the presigned URL, at most MAX_BYTES; the URL itself is never put in a message. urllib is
    imported here, not at module level: it costs ~25 ms of every runtime's start, and only Ray and ModelArts
    runners have a ticket to fetch (docs/performance.md, "Start latency")."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT) as response:  # http(s) only: checked above
            data: bytes = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SecretFetchError(
            f"the job's one-time secret could not be fetched (HTTP {exc.code}): it was read already by another "
            "runner, removed, or its link expired while the job waited to start; submit the job again"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SecretFetchError(
            f"the job's one-time secret could not be fetched: the store did not answer ({type(reason).__name__})"
        ) from None
    if len(data) > MAX_BYTES:
        raise SecretFetchError(f"the job's one-time secret is larger than {MAX_BYTES} bytes: not jobsub's")
    return data


def fetch(profile: Profile) -> ObjectURI | None:
    """Read the ticket (if any), fetch and unseal the secrets into os.environ; the object to delete later.

    None when the executor passed no ticket (local runs, Slurm, docker: their secrets arrive otherwise)."""
    raw = os.environ.pop(TICKET_ENV, None)
    if not raw:
        return None
    try:
        ticket = json.loads(raw)
        uri = ObjectURI.parse(str(ticket["uri"]))
        url = ticket.get("url")
        pad = base64.b64decode(str(ticket["pad"]), validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, JobsubError):
        raise SecretFetchError(f"{TICKET_ENV} is not a jobsub secret ticket") from None
    if url:
        if not str(url).startswith(("https://", "http://")):
            raise SecretFetchError(f"{TICKET_ENV}: the secret's link is not an http(s) URL")
        data = _http_get(str(url))
    else:
        from jobsub.storage import open_store

        try:
            data = open_store(profile).get(uri.bucket, uri.key)
        except JobsubError as exc:
            raise SecretFetchError(f"the job's one-time secret could not be read from {uri}: {exc}") from None
    if len(data) != len(pad):
        raise SecretFetchError("the job's one-time secret does not match its ticket (was the object replaced?)")
    try:
        values = json.loads(_xor(data, pad))
    except ValueError:
        raise SecretFetchError(
            "the job's one-time secret does not match its ticket (was the object replaced?)"
        ) from None
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise SecretFetchError("the job's one-time secret is not a set of variables")
    for name, value in values.items():
        register_secret(value)
        os.environ[name] = value
    return uri


def discard(store: ObjectStore, uri: ObjectURI | None) -> None:
    """Delete the secrets object now that the runner holds the values (the runner's credentials may be the
    only ones allowed to). A failure is a warning: the executor's cleanup deletes it again at the end."""
    if uri is None:
        return
    try:
        store.delete(uri.bucket, uri.key)
    except JobsubError as exc:
        log.warning("the job's one-time secret %s was not deleted (%s); cleanup will try again", uri, exc)
