"""No storage key in Ray's runtime_env, logs or job info (issue 17 item 1).

The secrets travel as a one-time secret (executors/secret_drop.py, executors/secret_fetch.py): a one-time-pad
ciphertext under the job's prefix, a presigned GET URL and the pad in runtime_env, the object deleted by
the runner after reading. The first tests check the mechanism on moto alone (no Ray): what the bucket
holds, the runner's side, a second read, a replaced object. The last runs a real job on the real Ray
cluster (harness_ray.py; run it under the heavy lock) and greps the cluster's whole temp folder (session
logs such as runtime_env_agent.log included) and its job API for the secrets after the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from tests.conftest import KEY_ID, SECRET, Env, _isolated_env, code_folder, poll
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.harness_ray import RayCluster


@pytest.fixture
def motoenv(request, tmp_path: Path, monkeypatch) -> Env:
    return _isolated_env(tmp_path, monkeypatch, "s3", request.getfixturevalue("moto_server"))


def _sealed(env: Env, values: dict[str, str]):
    from jobsub.config import resolve_profile
    from jobsub.executors.secret_drop import seal
    from jobsub.storage import open_store

    profile = resolve_profile()[1]
    store = open_store(profile)
    sealed = seal(store, f"s3://{env.bucket}/jobs/", "j-secret", values)
    assert sealed.uri.key.startswith("jobs/_secrets/j-secret-")  # never listed as a job
    return profile, store, sealed.ticket, sealed.uri


def test_the_bucket_holds_no_plaintext_and_the_runner_reads_it_once(motoenv: Env, monkeypatch) -> None:
    from jobsub.executors import secret_fetch
    from jobsub.executors.secret_fetch import TICKET_ENV, SecretFetchError

    values = {"AWS_SECRET_ACCESS_KEY": SECRET, "HF_TOKEN": "hf_" + os.urandom(12).hex()}
    profile, store, ticket, uri = _sealed(motoenv, values)
    stored = motoenv.boto().get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
    assert SECRET.encode() not in stored and values["HF_TOKEN"].encode() not in stored
    assert SECRET not in ticket and values["HF_TOKEN"] not in ticket and KEY_ID in ticket  # the key *id* signs the URL
    for name in values:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(TICKET_ENV, ticket)
    got = secret_fetch.fetch(profile)
    assert got == uri and TICKET_ENV not in os.environ
    assert os.environ["HF_TOKEN"] == values["HF_TOKEN"] and os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET
    secret_fetch.discard(store, got)
    assert store.head(uri.bucket, uri.key) is None
    monkeypatch.setenv(TICKET_ENV, ticket)  # the same ticket again (a second runner, someone with Ray's logs)
    with pytest.raises(SecretFetchError, match=r"could not be fetched \(HTTP 404\)") as caught:
        secret_fetch.fetch(profile)
    assert "X-Amz" not in str(caught.value) and "http" not in str(caught.value)


def test_cleanup_deletes_only_one_time_secrets_of_this_jobs_prefix(motoenv: Env) -> None:
    """A handle is data from a shared bucket: a `secret_uri` rewritten to name the user's own object, a
    secret of another jobs prefix or another job's pending secret is never deleted by cleanup; the job's own
    one-time secret is, and so is the plaintext `.json` object of a ModelArts job from before 2026-11-30."""
    from jobsub.executors.secret_drop import discard, seal

    _profile, store, _ticket, uri = _sealed(motoenv, {"HF_TOKEN": "hf_abcdef123456"})
    jobs = f"s3://{motoenv.bucket}/jobs/"
    other = seal(store, jobs, "j-other", {"HF_TOKEN": "hf_other"}).uri
    bystanders = ["data/model.bin", "jobs/j-secret/job.json", "jobs/_secrets/nested/x.bin", "other/_secrets/a.bin"]
    for key in bystanders:
        store.put(motoenv.bucket, key, b"keep me")
    for key in [*bystanders, other.key, "jobs/_secrets/../../data/model.bin"]:
        discard(store, jobs, f"s3://{motoenv.bucket}/{key}", "j-secret")
    assert all(store.head(motoenv.bucket, key) is not None for key in [*bystanders, other.key])
    discard(store, jobs, str(uri), "j-secret")
    assert store.head(uri.bucket, uri.key) is None
    legacy = "jobs/_secrets/j-old-" + "ab" * 16 + ".json"
    store.put(motoenv.bucket, legacy, b'{"env": {"AWS_SECRET_ACCESS_KEY": "x"}}')
    discard(store, jobs, f"s3://{motoenv.bucket}/{legacy}", "j-old")
    assert store.head(motoenv.bucket, legacy) is None


def test_a_replaced_secret_object_is_refused(motoenv: Env, monkeypatch) -> None:
    """Someone who can write the job's prefix swaps the object: the runner refuses it instead of running
    with variables chosen by them."""
    from jobsub.executors import secret_fetch
    from jobsub.executors.secret_fetch import TICKET_ENV, SecretFetchError

    profile, _store, ticket, uri = _sealed(motoenv, {"HF_TOKEN": "hf_abcdef123456"})
    motoenv.boto().put_object(Bucket=uri.bucket, Key=uri.key, Body=b'{"LD_PRELOAD": "/tmp/evil.so"}')
    monkeypatch.setenv(TICKET_ENV, ticket)
    with pytest.raises(SecretFetchError, match="does not match its ticket"):
        secret_fetch.fetch(profile)
    assert "LD_PRELOAD" not in os.environ


def test_no_secret_in_rays_session_folder_or_job_info(
    motoenv: Env, ray_harness: ExecutorHarness, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """A Ray job on the moto store with a --secret-env value: the job reads both secrets; afterwards neither
    the storage key nor the value is anywhere in the cluster's temp folder, the job is deleted from the
    cluster (its info is gone) and the one-time object is gone from the bucket."""
    env = motoenv
    configure(env, ray_harness)
    token = "tok-" + os.urandom(12).hex()
    code = code_folder(
        tmp_path,
        "import os\n"
        "print('has key', len(os.environ['AWS_SECRET_ACCESS_KEY']), flush=True)\n"
        "print('has token', len(os.environ['MY_TOKEN']), flush=True)\n",
    )
    result = env.run(
        "submit",
        "python-script",
        "--code",
        str(code),
        "--secret-env",
        "MY_TOKEN",
        "--follow",
        timeout=300,
        extra_env={"MY_TOKEN": token},
    )
    job_id = result.stdout.splitlines()[0] if result.stdout else ""
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"has token {len(token)}" in result.stdout and f"has key {len(SECRET)}" in result.stdout
    handle = json.loads(env.boto().get_object(Bucket=env.bucket, Key=f"jobs/{job_id}/executor.json")["Body"].read())
    assert handle["kind"] == "ray" and handle.get("secret_uri")
    # the Ray job is deleted once jobsub saw its final state
    url = f"{ray_cluster.url}/api/jobs/{handle['submission_id']}"

    def deleted() -> bool:
        if requests.get(url, headers=ray_cluster.headers, timeout=10).status_code == 404:
            return True
        # Ray marks the job final a moment after the runner exits; `submit --follow` waits 15 s for that and
        # then leaves the deletion to the next reader that sees the final state (as a user's `status` is)
        env.run("status", job_id)
        return False

    poll(deleted, 90, 0.5, f"the Ray job deleted (submit said: {result.stderr[-400:]!r})")
    listing = requests.get(f"{ray_cluster.url}/api/jobs/", headers=ray_cluster.headers, timeout=10).text
    assert SECRET not in listing and token not in listing
    # the one-time object is gone from the bucket
    listed = env.boto().list_objects_v2(Bucket=env.bucket, Prefix=f"jobs/_secrets/{job_id}-")
    assert not listed.get("Contents"), listed.get("Contents")
    # Ray's whole temp folder: session logs (runtime_env_agent.log, job driver logs, dashboard logs), GCS files
    found = []
    for path in (ray_cluster.root / "r").rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if SECRET.encode() in data or token.encode() in data:
                    found.append(str(path))
        except OSError:
            continue
    assert found == [], f"secrets found in Ray's files: {found}"
    assert any((ray_cluster.root / "r").rglob("runtime_env_agent.log")), "the grep must cover runtime_env_agent.log"
