"""Fixtures of the conformance suite: an isolated jobsub user per (executor kind, store) pair.

Add a kind by writing tests/executors/harness_<kind>.py with a session fixture `<kind>_harness` and one
line in each of the two places below.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Env, make_env, use_env
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.harness_docker import docker_engine, docker_harness  # noqa: F401
from tests.executors.harness_local import local_harness  # noqa: F401
from tests.executors.harness_modelarts import modelarts_harness, modelarts_standin  # noqa: F401
from tests.executors.harness_ray import ray_cluster, ray_harness  # noqa: F401
from tests.executors.harness_slurm import slurm_cluster, slurm_harness  # noqa: F401

#: executor kinds the suite runs on; each needs its `<kind>_harness` fixture imported above
KINDS = ["local", "docker", "ray", "slurm", "modelarts"]
STORES = ["local", "s3"]


@pytest.fixture(params=[(k, s) for k in KINDS for s in STORES], ids=lambda p: f"{p[0]}-{p[1]}")
def xenv(request, tmp_path: Path, monkeypatch) -> tuple[Env, ExecutorHarness]:
    """A jobsub user whose current profile runs jobs on one executor kind, on one store."""
    kind, store = request.param
    harness: ExecutorHarness = request.getfixturevalue(f"{kind}_harness")
    if store not in harness.stores:
        pytest.skip(f"{kind} executor does not run jobs on the {store} store here")
    moto = request.getfixturevalue("moto_url") if store == "s3" else None
    env = make_env(tmp_path, store, moto)
    configure(env, harness)
    use_env(monkeypatch, env)
    return env, harness
