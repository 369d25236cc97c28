"""``python -m jobsub.runtime JOB_URI --work-dir DIR``: run one job record to its final state.

The profile arrives as JSON in JOBSUB_PROFILE_JSON (it holds no secret; credentials come from the
environment's own boto3 chain), so the runtime needs no config file on the machine it runs on.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path


def _start_s3_early() -> None:
    """An S3 job's runtime spends most of its start in botocore (its import and data): begin that on a
    thread before importing the runtime's own modules, so the two overlap (storage/s3_client.py). The
    profile is peeked at as plain JSON; anything odd in it is left for the real parse to word."""
    raw = os.environ.get("JOBSUB_PROFILE_JSON")
    try:
        storage = json.loads(raw).get("storage") if raw else None
    except (ValueError, AttributeError):
        return
    if storage == "s3":
        from jobsub.storage.s3_client import prepare

        prepare()


def _start_up_done() -> None:
    """The start-up's objects (modules, pydantic's validators, botocore's models) go to the permanent
    generation and the collector runs again, for a runner that may live for days (see main)."""
    gc.freeze()
    gc.enable()


def main(argv: list[str] | None = None) -> int:
    """No cyclic garbage collection during the start-up: importing pydantic, botocore and jobsub's models
    allocates enough to run the collector dozens of times over objects that all stay alive (~30 ms, 8% of
    the start's CPU: docs/performance.md, "Start latency", fourth pass). It is on again before the record
    is read and anything is run, and on whatever way this returns (a caller in the same process)."""
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobsub.runtime", description=__doc__)
    parser.add_argument("job_uri", help="the job record, e.g. s3://bucket/jobs/<job id>/")
    parser.add_argument("--work-dir", required=True, type=Path, help="local folder for inputs, code and outputs")
    args = parser.parse_args(argv)
    _start_s3_early()
    import logging

    from jobsub.config import Profile, resolve_profile
    from jobsub.errors import JobsubError
    from jobsub.executors import secret_fetch
    from jobsub.executors.secret_handoff import receive_secrets
    from jobsub.jobs.records import JobRecord
    from jobsub.redact import RedactingFilter, redact
    from jobsub.runtime.runner import Runner
    from jobsub.storage import open_store
    from jobsub.uri import ObjectURI

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=[handler])
    try:
        receive_secrets()  # the Docker executor hands credentials over stdin, not in the container's config
    except JobsubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    raw = os.environ.get("JOBSUB_PROFILE_JSON")
    profile = Profile.model_validate_json(raw) if raw else resolve_profile()[1]
    job = ObjectURI.parse(args.job_uri).as_prefix()
    parts = job.key.rstrip("/").rsplit("/", 1)
    jobs_uri = ObjectURI(job.bucket, parts[0] + "/" if len(parts) == 2 else "")
    try:
        # a one-time secret (Ray, ModelArts): fetched before the store needs the credentials, deleted after
        secret = secret_fetch.fetch(profile)
        record = JobRecord(open_store(profile, concurrency=8), jobs_uri, parts[-1])
        secret_fetch.discard(record.store, secret)
        _start_up_done()
        return Runner(record.store, record, args.work_dir).run()
    except JobsubError as exc:  # a second runner, an unreadable record: one line, the job is left alone
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
