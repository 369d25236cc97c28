"""The local executor's harness: a detached runner process on this machine (no daemon to start)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.executors.harness import KILL_RUNNER, ExecutorHarness, processes_with_env


def _kill(handle: dict[str, Any]) -> None:
    os.kill(int(handle["pid"]), signal.SIGKILL)


def _job_processes(job_id: str) -> list[int]:
    """Processes whose environment names this job: the runner's command and anything it started."""
    return list(processes_with_env("JOBSUB_JOB_ID", job_id))


def _gone(handle: dict[str, Any]) -> bool:
    try:
        os.kill(int(handle["pid"]), 0)
        return False
    except ProcessLookupError:
        pass
    return not _job_processes(Path(handle["run_dir"]).name)


def _reap(handle: dict[str, Any]) -> None:
    for pid in [int(handle["pid"]), *_job_processes(Path(handle["run_dir"]).name)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def local_harness() -> ExecutorHarness:
    return ExecutorHarness(
        kind="local",
        profile_settings={"executor": "local"},
        capabilities=frozenset({KILL_RUNNER}),
        kill_runner=_kill,
        nothing_running=_gone,
        reap=_reap,
        notes={"memory_limit": "the local executor runs a plain process and enforces no memory limit"},
    )
