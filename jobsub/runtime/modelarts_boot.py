"""``python -m jobsub.runtime.modelarts_boot JOB_URI``: the command of a ModelArts training job.

It runs inside the job's container (an image with jobsub, e.g. from `jobsub image build`): it takes the
storage credentials from the one-time object the client sealed (modelarts_secrets.py) — one GET, then the
DELETE, so the URLs in the job definition are worthless from then on — puts them in this process's
environment, makes a work folder and runs the jobsub runtime in-process, so ModelArts' stop signal reaches
the runtime itself. Failures before the runtime starts are one line on stderr (ModelArts exports it with the
job's log) and a non-zero exit, which ModelArts reports as Failed.
"""

from __future__ import annotations

import os
import sys
import tempfile

from jobsub.executors.modelarts_secrets import DELETE_URL_VAR, GET_URL_VAR, MAX_SECRETS_BYTES, parse_secrets

_TIMEOUT = (10.0, 60.0)


def take_secrets(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Read and delete the one-time credentials named by the job's environment; {} when there are none."""
    import requests

    get_url = environ.pop(GET_URL_VAR, None)
    delete_url = environ.pop(DELETE_URL_VAR, None)
    if not get_url:
        return {}
    response = requests.get(get_url, timeout=_TIMEOUT, stream=True)
    body = response.raw.read(MAX_SECRETS_BYTES + 1, decode_content=True) if response.ok else b""
    response.close()
    if response.status_code in (403, 404):
        raise RuntimeError(
            f"the job's one-time storage credentials are gone (HTTP {response.status_code}): already read by "
            "another start of this job, or expired while it was queued (modelarts.credentials_ttl_seconds); "
            "submit the job again"
        )
    if not response.ok:
        raise RuntimeError(f"reading the job's one-time storage credentials failed: HTTP {response.status_code}")
    env = parse_secrets(body)
    if delete_url:
        requests.delete(delete_url, timeout=_TIMEOUT)  # best effort: the client deletes it too at the end
    return env


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m jobsub.runtime.modelarts_boot JOB_URI", file=sys.stderr)
        return 2
    try:
        secrets_env = take_secrets(os.environ)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from jobsub.redact import register_secret

    for value in secrets_env.values():
        register_secret(value)
    os.environ.update(secrets_env)
    job_id = args[0].rstrip("/").rsplit("/", 1)[-1]
    base = os.environ.get("JOBSUB_WORK_ROOT") or (
        "/cache" if os.access("/cache", os.W_OK) else None  # ModelArts' local SSD in training containers
    )
    work = tempfile.mkdtemp(prefix=f"jobsub-{job_id}-", dir=base)
    from jobsub.runtime.__main__ import main as runtime_main

    return runtime_main([args[0], "--work-dir", work])


if __name__ == "__main__":
    sys.exit(main())
