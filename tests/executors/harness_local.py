"""The local executor's harness: a detached runner process on this machine (no daemon to start)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.executors.harness import KILL_RUNNER, ExecutorHarness


def _kill(handle: dict[str, Any]) -> None:
    os.kill(int(handle["pid"]), signal.SIGKILL)


def _gone(handle: dict[str, Any]) -> bool:
    try:
        os.kill(int(handle["pid"]), 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="session")
def local_harness() -> ExecutorHarness:
    return ExecutorHarness(
        kind="local",
        profile_settings={"executor": "local"},
        capabilities=frozenset({KILL_RUNNER}),
        kill_runner=_kill,
        nothing_running=_gone,
        notes={"memory_limit": "the local executor runs a plain process and enforces no memory limit"},
    )
