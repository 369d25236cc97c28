"""The slurm executor's harness: a one-node Slurm cluster (munged + slurmctld + slurmd) on loopback.

The cluster lives in a temp folder for the whole session (tests/executors/slurm_cluster.py writes its
slurm.conf with random ports and starts the daemons; they are stopped by pid at the end). The node is this
machine, so both stores work: the local folder store plays the part of a cluster's shared filesystem.

Memory limits need task/cgroup on a writable cgroup v1 memory hierarchy (true as root on the CI machine);
where that is missing the node runs without limits and the memory case skips, saying so.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.backends import backend_unavailable
from tests.executors.harness import KILL_RUNNER, MEMORY_LIMIT, ExecutorHarness, processes_with_env
from tests.executors.slurm_cluster import (
    INSTALL_HINT,
    ClusterError,
    SlurmCluster,
    cgroup_v1_memory_writable,
    missing_binaries,
)

_LIVE = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING"}


def _job_processes(job_id: str) -> list[int]:
    """Pids on this machine (the node) whose environment says they belong to Slurm job `job_id`."""
    return list(processes_with_env("SLURM_JOB_ID", job_id))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing:
        backend_unavailable(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    if os.geteuid() != 0:
        backend_unavailable("a throwaway slurmd must run as root here (it starts jobs as their user)")
    # TEST_SLURM_NO_CGROUP=1: a node with proctrack/linuxproc (no cgroup tracking), as many sites run, to
    # check that what the job started is still held by the runner there (tests/executors/test_escape.py)
    cgroups = cgroup_v1_memory_writable() and os.environ.get("TEST_SLURM_NO_CGROUP") != "1"
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), cgroups=cgroups)
    try:
        cluster.start()
    except (ClusterError, OSError) as exc:
        cluster.stop()
        if not cluster.cgroups:
            backend_unavailable(f"the one-node Slurm cluster did not start: {exc}")
        # task/cgroup is the fragile part (a kernel without cgroup v1 memory): a node without limits still
        # runs every other case, and the memory case says why it skips
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), cgroups=False)
        cluster.cgroup_error = str(exc)
        try:
            cluster.start()
        except (ClusterError, OSError) as again:
            cluster.stop()
            backend_unavailable(f"the one-node Slurm cluster did not start: {again}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_harness(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> ExecutorHarness:
    cluster = slurm_cluster

    def state(handle: dict[str, Any]) -> str:
        out = cluster.run("squeue", "--noheader", "--states=all", f"--jobs={handle['job_id']}", "-o", "%T")
        return out.stdout.strip()

    def kill_runner(handle: dict[str, Any]) -> None:
        # SIGKILL to the batch step's shell only, which is the runtime itself (the script execs it): the
        # runner dies the way a crash would, without writing a final state
        out = cluster.run("scancel", "--batch", "--signal=KILL", str(handle["job_id"]))
        assert out.returncode == 0, out.stderr

    def nothing_running(handle: dict[str, Any]) -> bool:
        return state(handle) not in _LIVE and not _job_processes(str(handle["job_id"]))

    def reap(handle: dict[str, Any]) -> None:
        cluster.run("scancel", "--full", "--signal=KILL", str(handle["job_id"]))
        cluster.run("scancel", str(handle["job_id"]))

    capabilities = {KILL_RUNNER} | ({MEMORY_LIMIT} if cluster.cgroups else set())
    no_cgroups = "no writable cgroup v1 memory controller here: slurmd runs without task/cgroup (no --mem limit)"
    if cluster.cgroup_error:
        no_cgroups = f"slurmd with task/cgroup did not start ({cluster.cgroup_error}); the node runs without limits"
    notes = {} if cluster.cgroups else {MEMORY_LIMIT: no_cgroups}
    return ExecutorHarness(
        kind="slurm",
        profile_settings={
            "executor": "slurm",
            "slurm": {
                "python": sys.executable,
                "work_root": str(tmp_path_factory.mktemp("slurm-runs")),
                "partition": cluster.partition,
            },
        },
        cli_env=cluster.env,
        capabilities=frozenset(capabilities),
        kill_runner=kill_runner,
        nothing_running=nothing_running,
        reap=reap,
        notes=notes,
    )
