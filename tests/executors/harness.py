"""The executor harness: how the conformance suite drives one executor kind on its real backend.

Each kind (local, docker, slurm, ray) provides a session-scoped pytest fixture named `<kind>_harness`
(in tests/executors/harness_<kind>.py, imported by tests/executors/conftest.py) that starts its daemon
once per session (dockerd, slurmctld+slurmd, `ray start --head`), stops it by pid at the end, and
returns an ExecutorHarness. In CI a daemon that cannot start fails the test (tests/backends.py); on a
laptop it skips and says why.

The conformance suite (tests/executors/test_conformance.py) runs every case on every (kind, store)
pair the harness supports; a case that needs a capability a kind lacks skips with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import Env

#: capabilities a harness may declare
MEMORY_LIMIT = "memory_limit"  # a job over resources.memory is killed: FAILED with an out-of-memory reason
KILL_RUNNER = "kill_runner"  # the runner can be killed from outside (-> LOST, nothing left running)


@dataclass
class ExecutorHarness:
    kind: str
    #: fields of the profile (merged into the current profile), e.g. {"executor": "docker", "docker": {...}}
    profile_settings: dict[str, Any]
    #: stores this executor can run jobs on: "local" (the local folder store) and/or "s3" (moto on loopback)
    stores: frozenset[str] = frozenset({"local", "s3"})
    #: variables the jobsub CLI needs to reach the backend (DOCKER_HOST, SLURM_CONF, PATH, ...)
    cli_env: dict[str, str] = field(default_factory=dict)
    #: `--set` assignments every job needs on this executor (e.g. image=jobsub-train:test)
    spec_sets: list[str] = field(default_factory=list)
    capabilities: frozenset[str] = frozenset()
    #: kill the runner from outside, given the job's handle (executor.json): a crash the runtime cannot see
    kill_runner: Callable[[dict[str, Any]], None] | None = None
    #: True when nothing of the job (runner, command, container) is still running, given its handle
    nothing_running: Callable[[dict[str, Any]], bool] = lambda handle: True
    #: kill whatever of the job is left (test teardown after a failure), given its handle; idempotent
    reap: Callable[[dict[str, Any]], None] = lambda handle: None
    #: why a missing capability is missing, for the skip message
    notes: dict[str, str] = field(default_factory=dict)
    #: conformance checks this kind is known to fail today (check name -> why): they xfail with the reason
    known_gaps: dict[str, str] = field(default_factory=dict)

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


def configure(env: Env, harness: ExecutorHarness) -> None:
    """Point `env`'s current profile at the harness's executor and let its CLI reach the backend."""
    from jobsub.config import config_file, load_config, resolve_profile, save_config

    env.vars.update(harness.cli_env)
    env.apply()
    config = load_config()
    name, profile = resolve_profile(config=config)
    data = profile.model_dump()
    for key, value in harness.profile_settings.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    config.profiles[name] = type(profile).model_validate(data)
    save_config(config, config_file())


def processes_with_env(variable: str, value: str) -> dict[int, bytes]:
    """Live processes on this machine whose environment holds VARIABLE=VALUE, with their command lines (Linux
    /proc; zombies and this test process left out). How the harnesses find what is left of a job."""
    marker = f"{variable}={value}".encode()
    found: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state not in ("Z", "X"):
            found[int(entry.name)] = cmdline
    return found
