"""Executors declare what they are (executors/base.py): checked when the class is defined, asked by the service.

In-process and fast: the executors here never start a runner; they exist to show that a new executor is one
module and one registry line, and that a broken one fails at import rather than on a user's first job.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from jobsub.executors.base import BaseExecutor, BaseHandle, Capabilities, LaunchRequest, Observation


class TwoNodeHandle(BaseHandle):
    kind: Literal["twonode"]
    job: str


class TwoNodeExecutor(BaseExecutor[TwoNodeHandle]):
    """A test executor that says it runs one launcher per node; nothing in jobs/spec.py names it."""

    kind = "twonode"
    capabilities = Capabilities(multi_node=True)
    handle_model = TwoNodeHandle

    def submit(self, request: LaunchRequest) -> TwoNodeHandle:
        return TwoNodeHandle(kind="twonode", job=request.job_id)

    def poll(self, handle: TwoNodeHandle) -> Observation:
        return Observation("unknown")

    def cancel(self, handle: TwoNodeHandle) -> None:
        return None

    def describe(self, handle: TwoNodeHandle) -> str:
        return f"twonode job {handle.job}"


@pytest.fixture
def twonode_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from jobsub.config import EXECUTORS

    monkeypatch.setitem(EXECUTORS, "twonode", f"{__name__}:TwoNodeExecutor")
    yield


def test_an_executor_missing_a_method_fails_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "half_executor.py").write_text(
        "from jobsub.executors.base import BaseExecutor\n"
        "class HalfExecutor(BaseExecutor):\n"
        "    kind = 'half'\n"
        "    def submit(self, request):\n"
        "        return {'kind': 'half'}\n"
        "    def cancel(self, handle):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match=r"executor HalfExecutor does not define poll, describe"):
        importlib.import_module("half_executor")
    assert "half_executor" not in sys.modules


def test_an_executor_without_a_kind_or_with_bad_capabilities_fails_when_defined() -> None:
    with pytest.raises(TypeError, match="needs a class attribute kind"):

        class Nameless(TwoNodeExecutor):
            kind = ""

    with pytest.raises(TypeError, match="capabilities must be a Capabilities"):

        class Sloppy(TwoNodeExecutor):
            kind = "sloppy"
            capabilities = {"multi_node": True}  # type: ignore[assignment]  # noqa: RUF012

    class Base(BaseExecutor, abstract=True):  # an intermediate base is allowed to be incomplete
        pass


def test_the_built_in_executors_declare_what_the_service_used_to_guess() -> None:
    from jobsub.executors import executor_class

    assert executor_class("local").capabilities.local_process
    assert executor_class("slurm").capabilities.multi_node
    assert not executor_class("ray").capabilities.memory_limit  # a reservation, not a limit
    assert all(executor_class(k).capabilities.secret_env for k in ("local", "slurm"))


def test_a_multi_node_test_executor_is_accepted_for_a_two_node_spec(twonode_registered: None, tmp_path: Path) -> None:
    from jobsub.config import Profile
    from jobsub.jobs.service import JobService
    from jobsub.jobs.spec import JobSpec, Resources, nodes_problem
    from jobsub.storage.local import LocalStore

    assert nodes_problem(Resources(nodes=2), "twonode") is None
    refused = nodes_problem(Resources(nodes=2), "local") or ""
    assert "needs the slurm or twonode executor" in refused  # the list comes from the classes too

    profile = Profile(root=str(tmp_path / "store"), executor="twonode")
    service = JobService(profile, LocalStore(tmp_path / "store"))
    spec = JobSpec(name="wide", command="echo hi", resources=Resources(nodes=2))
    plan = service.plan(spec)
    assert plan.spec.resources.nodes == 2
    assert service.launch_request(plan).nodes == 2


def test_a_registry_line_that_names_no_executor_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobsub.config import EXECUTORS
    from jobsub.errors import ConfigError
    from jobsub.executors import get_executor

    monkeypatch.setitem(EXECUTORS, "notone", "jobsub.units:parse_size")
    with pytest.raises(ConfigError, match="is not an executor class"):
        get_executor("notone")
    with pytest.raises(ConfigError, match="unknown executor 'nope'; available: "):
        get_executor("nope")
