"""Which ``JOBSUB_*`` variables of the submitting shell travel to a job's runner (and nothing else does).

It lives with the jobs layer because the client's service decides what to forward at submit and must not import
the runtime (the layers contract, pyproject.toml); runtime/launch_env.py re-exports it for the runner's side.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The runtime knobs a submitting shell may set, with what they do (README "Runtime knobs"). The runner reads
#: them from its environment; executors whose runner does not inherit the client's environment get them in
#: LaunchRequest.env. Nothing else named JOBSUB_* is forwarded.
RUNTIME_TUNABLES: dict[str, str] = {
    "JOBSUB_STAGING_MAX_BANDWIDTH": "bandwidth cap for staging inputs (e.g. 50MiB)",
    "JOBSUB_OUTPUT_MAX_BANDWIDTH": "bandwidth cap for output uploads (e.g. 50MiB)",
    "JOBSUB_OUTPUT_SYNC_SECONDS": "seconds between periodic output uploads (60)",
    "JOBSUB_OUTPUT_UPLOAD_ATTEMPTS": "attempts of the final output upload (3)",
    "JOBSUB_CANCEL_GRACE_SECONDS": "seconds between SIGTERM and SIGKILL on cancel, timeout and cost limit (10)",
    "JOBSUB_HEARTBEAT_SECONDS": "seconds between the runner's status heartbeats (5)",
    "JOBSUB_RECORD_WAIT_SECONDS": "seconds a runner started beside its record waits for it (60)",
    # not a knob of the runtime but of the store: the runner must reach the endpoint the client used (an URL
    # with user:password@ is refused wherever it is read, config.check_endpoint_url)
    "JOBSUB_ENDPOINT_URL": "the S3 endpoint that overrides the profile's",
}


def runtime_tunables(environ: Mapping[str, str]) -> dict[str, str]:
    """The documented runtime knobs set in `environ` (the submitting shell), and nothing else."""
    return {name: environ[name] for name in RUNTIME_TUNABLES if name in environ}
