"""One-time storage credentials for a ModelArts job, so that none is written into the job definition.

Why: ModelArts shows a training job's definition (command, environment variables) on its console to
everyone in the project. The runner inside the job still needs the storage credentials. So the client puts
them in a private object under ``<jobs uri>_secrets/`` and gives the job only two presigned URLs: one GET and
one DELETE of that object, valid for ``modelarts.credentials_ttl_seconds``. The boot module
(runtime/modelarts_boot.py) reads the object once, deletes it, and only then starts the runtime. Someone who copies
the URLs off the console before the job starts could read the credentials: the window is the job's queue
time, bounded by the TTL, and the object is gone the moment the job has read it (the client deletes it too
when the job ends, read or not).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobsub.uri import ObjectURI

if TYPE_CHECKING:
    from jobsub.config import Profile

#: the environment variables that carry the presigned URLs into the job
GET_URL_VAR = "JOBSUB_SECRETS_GET_URL"
DELETE_URL_VAR = "JOBSUB_SECRETS_DELETE_URL"
#: a secrets object is small; anything larger is not ours
MAX_SECRETS_BYTES = 64 * 1024


@dataclass(frozen=True)
class SealedSecrets:
    """Where the one-time object lives (kept in the handle) and the URLs that open it (job env only)."""

    uri: str
    get_url: str
    delete_url: str


def _client(profile: Profile) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile.aws_profile)
    config = Config(signature_version="s3v4", s3={"addressing_style": profile.addressing_style})
    region = profile.region or session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=profile.effective_endpoint(), region_name=region, config=config)


def secrets_uri(profile: Profile, job_id: str) -> ObjectURI:
    """A name nobody can guess (the job id is public on the console), under a prefix `jobs` never lists."""
    jobs = ObjectURI.parse(profile.jobs_uri).as_prefix()
    return ObjectURI(jobs.bucket, f"{jobs.key}_secrets/{job_id}-{secrets.token_hex(16)}.json")


def seal(profile: Profile, job_id: str, env: dict[str, str], ttl_seconds: int) -> SealedSecrets:
    """Write `env` to a fresh private object and presign its GET and DELETE for `ttl_seconds`."""
    from jobsub.storage import open_store

    uri = secrets_uri(profile, job_id)
    store = open_store(profile)
    store.put(uri.bucket, uri.key, json.dumps({"env": env}).encode())
    client = _client(profile)
    params = {"Bucket": uri.bucket, "Key": uri.key}
    get_url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_seconds)
    delete_url = client.generate_presigned_url("delete_object", Params=params, ExpiresIn=ttl_seconds)
    return SealedSecrets(str(uri), get_url, delete_url)


def discard(profile: Profile, uri: str) -> None:
    """Delete the object if the job never read it (cancelled while queued, failed at boot). Idempotent."""
    from jobsub.storage import open_store

    parsed = ObjectURI.parse(uri)
    jobs = ObjectURI.parse(profile.jobs_uri).as_prefix()
    if parsed.bucket != jobs.bucket or not parsed.key.startswith(f"{jobs.key}_secrets/"):
        return  # a handle is data from a shared bucket: never delete anything else it names
    open_store(profile).delete(parsed.bucket, parsed.key)


def parse_secrets(body: bytes) -> dict[str, str]:
    """The env of a secrets object; ValueError with the reason when it is not one."""
    if len(body) > MAX_SECRETS_BYTES:
        raise ValueError(f"the credentials object is {len(body)} bytes, more than {MAX_SECRETS_BYTES}")
    data = json.loads(body)
    env = data.get("env") if isinstance(data, dict) else None
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("the credentials object is not {'env': {NAME: VALUE}}")
    return dict(env)
