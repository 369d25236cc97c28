"""The client's side of the one-time secret (read jobsub/executors/secret_fetch.py for the runner's side).

For executors whose only channel into the runner's environment is one that others can read (Ray's
runtime_env: its session logs, its job info): the secret variables go into the store as a one-time-pad
ciphertext under the job's prefix, and the runner gets a ticket (object URI, presigned GET URL, pad).
The runner deletes the object after reading it; the executor's cleanup deletes it again at the end (a job
cancelled before it started). A presigned URL holds the access key *id* and a signature valid for
TICKET_SECONDS, never the secret key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from typing import Any

from jobsub.executors.secret_fetch import TICKET_ENV, _xor
from jobsub.storage.base import ObjectStore
from jobsub.uri import ObjectURI

#: how long the presigned link works: covers a job that waits in Ray's queue (Ray gives up on a job that
#: has not started in 15 min by default); the pad keeps the object useless to bucket readers meanwhile
TICKET_SECONDS = int(os.environ.get("JOBSUB_SECRET_TICKET_SECONDS", "3600"))


def secret_uri(job_uri: str) -> ObjectURI:
    """A fresh object name under the job's record prefix (never listed as a job, removed after reading)."""
    job = ObjectURI.parse(job_uri).as_prefix()
    return ObjectURI(job.bucket, f"{job.key}runner-secret-{secrets.token_hex(8)}.bin")


def _presign(store: ObjectStore, uri: ObjectURI, seconds: int) -> str | None:
    """A presigned GET for an S3 store (boto3 signs locally, nothing is sent); None for the local store."""
    client: Any = getattr(store, "_client", None)
    if client is None:
        return None
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": uri.bucket, "Key": uri.key}, ExpiresIn=seconds
    )
    return url


def seal(store: ObjectStore, job_uri: str, values: Mapping[str, str]) -> tuple[str, ObjectURI]:
    """Store `values` for the runner; (the ticket for TICKET_ENV, the object's URI)."""
    plain = json.dumps(dict(values), separators=(",", ":")).encode()
    pad = secrets.token_bytes(len(plain))
    uri = secret_uri(job_uri)
    store.put(uri.bucket, uri.key, _xor(plain, pad))
    ticket = {"uri": str(uri), "url": _presign(store, uri, TICKET_SECONDS), "pad": base64.b64encode(pad).decode()}
    return json.dumps(ticket, separators=(",", ":")), uri


__all__ = ["TICKET_ENV", "TICKET_SECONDS", "seal", "secret_uri"]
