"""The ModelArts executor's harness: the ModelArts stand-in (tests/modelarts_standin.py) on loopback.

A real ModelArts cannot run here; the stand-in implements the v2 training-job API subset jobsub uses,
verifies the SDK's AK/SK signatures and runs each job's command as a local process against the moto store.
So the whole path is real except the cloud: the official SDK, its signer, HTTP, the job's boot module, the
one-time credentials object and the runtime. Jobs run on the s3 store only (ModelArts cannot reach a
folder on this machine).
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import KEY_ID, SECRET
from tests.executors.harness import KILL_RUNNER, ExecutorHarness, processes_with_env
from tests.modelarts_standin import Flavor, ModelArtsStandIn

REGION = "cn-north-4"
IMAGE = f"swr.{REGION}.myhuaweicloud.com/jobsub/jobsub-train:test"
FLAVOR = "modelarts.vm.cpu.2u"
BUSY_FLAVOR = "modelarts.vm.cpu.busy"  # capacity 0: its jobs stay Pending ("queuing")
GPU_FLAVOR = "modelarts.p3.large.1"
FLAVORS = (FLAVOR, GPU_FLAVOR, BUSY_FLAVOR)


def _job_id(handle: dict[str, Any]) -> str:
    return str(handle.get("job_id") or "")


def job_processes(job_id: str, runner_only: bool = False) -> list[int]:
    return [
        pid
        for pid, cmdline in processes_with_env("JOBSUB_JOB_ID", job_id).items()
        if not runner_only or b"modelarts_boot" in cmdline
    ]


def _kill_runner(handle: dict[str, Any]) -> None:
    pids = job_processes(_job_id(handle), runner_only=True)
    assert pids, f"no runner process for {handle}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _reap(handle: dict[str, Any]) -> None:
    for pid in job_processes(_job_id(handle)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def modelarts_standin(moto_url: str) -> Iterator[ModelArtsStandIn]:
    standin = ModelArtsStandIn(
        ak="HWAK" + secrets.token_hex(8).upper(),
        sk=secrets.token_hex(20),
        project_id=secrets.token_hex(16),
        s3_endpoint=moto_url,
        s3_key=(KEY_ID, SECRET),
        flavors=[
            Flavor(FLAVOR),
            Flavor(GPU_FLAVOR, cpus=8, gpus=1, memory_gib=64),
            Flavor(BUSY_FLAVOR, capacity=0),
        ],
        images={IMAGE},
    )
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


def harness_for(standin: ModelArtsStandIn) -> ExecutorHarness:
    ((ak, sk),) = standin.keys.items()
    return ExecutorHarness(
        kind="modelarts",
        profile_settings={
            "executor": "modelarts",
            "modelarts": {
                "region": REGION,
                "endpoint": standin.url,
                "project_id": standin.project_id,
                "flavor": FLAVOR,
                "image": IMAGE,
            },
            # resources.flavor is priced from the profile's table (jobsub/costs.py): every flavor named
            "prices": {"table": "modelarts-test", "flavors": {f: 0.0 for f in FLAVORS}},
        },
        stores=frozenset({"s3"}),
        cli_env={"HUAWEICLOUD_SDK_AK": ak, "HUAWEICLOUD_SDK_SK": sk},
        capabilities=frozenset({KILL_RUNNER}),
        kill_runner=_kill_runner,
        nothing_running=lambda handle: not job_processes(_job_id(handle)),
        reap=_reap,
        notes={"memory_limit": "the stand-in runs a plain process; ModelArts' flavors limit memory, not jobsub"},
    )


@pytest.fixture(scope="session")
def modelarts_harness(modelarts_standin: ModelArtsStandIn) -> ExecutorHarness:
    return harness_for(modelarts_standin)
