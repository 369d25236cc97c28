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
(`RUNTIME_TUNABLES`, kept in jobsub/jobs/tunables.py so the client's service reads it without importing
the runtime). Only these documented knobs are forwarded; any other ``JOBSUB_*`` variable of the shell
(a user's own ``JOBSUB_DB_URL``, a test's switch) stays on the client, so nothing the user did not mean to send
reaches a cluster's job environment, Ray's runtime_env or a container's config.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from jobsub.jobs.spec import Resources
from jobsub.jobs.tunables import RUNTIME_TUNABLES, runtime_tunables

__all__ = ["RUNTIME_TUNABLES", "launcher_env", "runtime_tunables"]


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
