"""What a distributed launcher inside the job needs to know, from the spec's resources: the environment
contract between the runtime and `python -m train_entry.launch` (or any torchrun command in a spec).

    JOBSUB_NPROC      processes per node: resources.gpus when > 0, else 1 (train_entry.launch may use fewer
                      when fewer GPUs are visible, and a CPU job asks for more with --processes N)
    JOBSUB_NNODES     resources.nodes
    JOBSUB_NODE_RANK  this node's rank: SLURM_NODEID where Slurm runs us, else 0
    MASTER_ADDR       where rank 0 listens: this host on one node; the first node of a Slurm allocation
                      (the runtime runs there: SLURMD_NODENAME) across nodes
    MASTER_PORT       a port free on this host now (multi-node rendezvous; one node uses torchrun --standalone)

Values the executor already put in the environment win (a Slurm executor that knows better sets them).
The jobsub client never imports torch; nothing here does either.

It also holds the other direction: which ``JOBSUB_*`` variables of the submitting shell travel to the runner
(`RUNTIME_TUNABLES`). Only these documented knobs are forwarded; any other ``JOBSUB_*`` variable of the shell
(a user's own ``JOBSUB_DB_URL``, a test's switch) stays on the client, so nothing the user did not mean to send
reaches a cluster's job environment, Ray's runtime_env or a container's config.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from jobsub.jobs.spec import Resources

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
    # not a knob of the runtime but of the store: the runner must reach the endpoint the client used (an URL
    # with user:password@ is refused wherever it is read, config.check_endpoint_url)
    "JOBSUB_ENDPOINT_URL": "the S3 endpoint that overrides the profile's",
}


def runtime_tunables(environ: Mapping[str, str]) -> dict[str, str]:
    """The documented runtime knobs set in `environ` (the submitting shell), and nothing else."""
    return {name: environ[name] for name in RUNTIME_TUNABLES if name in environ}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def launcher_env(resources: Resources, environ: Mapping[str, str]) -> dict[str, str]:
    """The launcher variables for a job with these resources, leaving out any `environ` already has."""
    nodes = resources.nodes
    values = {
        "JOBSUB_NPROC": str(resources.gpus if resources.gpus > 0 else 1),
        "JOBSUB_NNODES": str(nodes),
        "JOBSUB_NODE_RANK": environ.get("SLURM_NODEID", "0") if nodes > 1 else "0",
    }
    values["MASTER_ADDR"] = (environ.get("SLURMD_NODENAME") or socket.gethostname()) if nodes > 1 else "127.0.0.1"
    values["MASTER_PORT"] = str(_free_port())
    return {name: value for name, value in values.items() if name not in environ}
