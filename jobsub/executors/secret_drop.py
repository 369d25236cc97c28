"""The client's side of the one-time secret (jobsub/executors/secret_fetch.py is the runner's side).

For executors whose only channel into the runner's environment is one that others can read — Ray's
runtime_env (its session logs, its job info), a ModelArts job definition (shown on the console to the whole
project) — the runner's secret variables go into the store as a one-time-pad ciphertext, and the runner gets
only a *ticket* (the object's URI, a presigned GET URL for it, the pad) in ``JOBSUB_SECRET_FETCH``. The
runner deletes the object once it holds the values; the executor's cleanup deletes it again when the job is
final (a job cancelled before it started), and deletes an unused one at once when the launch fails.

Why both halves: the ticket alone (what Ray's logs or the console keep) is useless once the object is
deleted, and the object alone (what anyone who can read the bucket sees) is a one-time-pad ciphertext. A
presigned URL holds the access key *id* and a signature valid for the ticket's lifetime, never the secret.

Every one-time secret lives under ``<jobs uri>_secrets/`` (a prefix `jobsub jobs` never lists) with a name
nobody can guess; `discard` deletes nothing outside it, because the URI it is given comes from a handle
read from a shared bucket.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from jobsub.errors import JobsubError
from jobsub.executors.secret_fetch import TICKET_ENV, _xor
from jobsub.storage.base import ObjectStore
from jobsub.uri import ObjectURI

log = logging.getLogger(__name__)

#: how long a Ray job's presigned link works: covers a job that waits in Ray's queue (Ray gives up on a job
#: that has not started in 15 min by default); the pad keeps the object useless to bucket readers meanwhile.
#: ModelArts passes its own (modelarts.credentials_ttl_seconds).
TICKET_SECONDS = int(os.environ.get("JOBSUB_SECRET_TICKET_SECONDS", "3600"))
#: the folder under the jobs prefix that holds one-time secrets
SECRETS_FOLDER = "_secrets/"


@dataclass(frozen=True)
class SealedSecret:
    """Where the ciphertext lives (kept in the handle, for cleanup) and the ticket (the job's env only)."""

    uri: ObjectURI
    ticket: str


def secret_uri(jobs_uri: str, job_id: str) -> ObjectURI:
    """A fresh, unguessable name under the jobs prefix's secrets folder (the job id alone is public)."""
    jobs = ObjectURI.parse(jobs_uri).as_prefix()
    return ObjectURI(jobs.bucket, f"{jobs.key}{SECRETS_FOLDER}{job_id}-{secrets.token_hex(16)}.bin")


def seal(
    store: ObjectStore, jobs_uri: str, job_id: str, values: Mapping[str, str], seconds: int = TICKET_SECONDS
) -> SealedSecret:
    """Store `values` for the runner as a one-time-pad ciphertext; the ticket opens it for `seconds`."""
    plain = json.dumps(dict(values), separators=(",", ":")).encode()
    pad = secrets.token_bytes(len(plain))
    uri = secret_uri(jobs_uri, job_id)
    store.put(uri.bucket, uri.key, _xor(plain, pad))
    ticket = {
        "uri": str(uri),
        "url": store.presigned_get_url(uri.bucket, uri.key, seconds),
        "pad": base64.b64encode(pad).decode(),
    }
    return SealedSecret(uri, json.dumps(ticket, separators=(",", ":")))


def is_one_time_secret(jobs_uri: str, uri_text: object, job_id: str) -> ObjectURI | None:
    """The URI a handle names, when it is one of `job_id`'s one-time secrets under this jobs prefix; None for
    anything else (a handle is data: rewritten, it must not make cleanup delete another object, nor another
    job's secret before that job has read it). `.json` is the plaintext object ModelArts jobs submitted
    before 2026-11-30 left: still deleted, never left behind."""
    try:
        uri = ObjectURI.parse(str(uri_text))
    except JobsubError:
        return None
    jobs = ObjectURI.parse(jobs_uri).as_prefix()
    name = uri.key.removeprefix(f"{jobs.key}{SECRETS_FOLDER}")
    if uri.bucket != jobs.bucket or name == uri.key or "/" in name or not job_id:
        return None
    if not name.startswith(f"{job_id}-") or not name.endswith((".bin", ".json")):
        return None
    return uri


def discard(store: ObjectStore, jobs_uri: str, uri_text: object, job_id: str) -> None:
    """Delete `job_id`'s one-time secret a handle names if it is still there (never anything else, see
    is_one_time_secret). A failure is a warning: the launch error or the final state matters more."""
    uri = is_one_time_secret(jobs_uri, uri_text, job_id)
    if uri is None:
        if uri_text:
            log.warning("not deleting %s: it is not a one-time secret of job %s", str(uri_text)[:200], job_id)
        return
    try:
        store.delete(uri.bucket, uri.key)
    except JobsubError as exc:
        log.warning("the job's one-time secret %s was not deleted: %s", uri, exc)


__all__ = ["SECRETS_FOLDER", "TICKET_ENV", "TICKET_SECONDS", "SealedSecret", "discard", "seal", "secret_uri"]
