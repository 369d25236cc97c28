"""Docker's runner starts before the code upload (issue 22 item 5, fifth pass): the order, and what keeps it safe.

A docker submit that uploads no input creates and starts the job's container right after the executor's
check, before the code archive's upload (jobs/service.py), so the engine's start and the runtime's own start
overlap that upload and the record writes. The runtime waits for its record (JOBSUB_RECORD_WAIT_SECONDS,
counted from its start): when the code upload outlasts half that wait, the submit stops the early container
and starts another after the record; a submit that uploads inputs starts it after them, beside the record.

These run the real dockerd of tests/executors/harness_docker.py with moto (under the heavy lock: `flock
/tmp/jobsub-heavy.lock pytest tests/executors/test_start_early.py`); the service is called in-process. The
file sits beside test_start_order.py (not in tests/) so it shares the session's one dockerd: a second
engine cannot run beside the first (docker0 and its iptables chains). A slow or failing code upload is the
store's own `put` wrapped for the code archive's key (moto cannot be told to stall or refuse one PUT on cue).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobsub.errors import StorageError
from jobsub.jobs.models import State
from jobsub.jobs.service import JobService
from tests.conftest import code_folder, poll
from tests.executors.test_start_order import _lines, _service, _spec

pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'jobsub[docker]')")


@pytest.fixture
def docker_s3(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_harness: Any,
              docker_engine: Any) -> Callable[[str], list[dict[str, Any]]]:  # fmt: skip
    """This test process as a jobsub user of the docker executor on moto; returns `containers(job_id)`, the
    job's containers on the engine (running or not)."""
    from tests.executors.test_docker import _env

    _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    client = docker_engine[1]

    def containers(job_id: str) -> list[dict[str, Any]]:
        return list(client.api.containers(all=True, filters={"label": f"jobsub.job-id={job_id}"}))

    return containers


def _wrap_code_put(service: JobService, monkeypatch: pytest.MonkeyPatch, before: Callable[[], None]) -> None:
    """Run `before()` at the start of the store's PUT of the code archive (and only that PUT)."""
    store_type = type(service.store)
    original = store_type.put

    def put(self: Any, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if "/_code/" in f"/{key}":
            before()
        return original(self, bucket, key, *args, **kwargs)

    monkeypatch.setattr(store_type, "put", put)


def _handle_container(service: JobService, job_id: str) -> str:
    data = service.record(job_id).read_handle_data() or {}
    return str(data.get("container_id") or "")


def test_docker_the_container_starts_before_the_code_upload_and_the_job_runs(
    docker_s3: Callable[[str], list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's container exists while its code archive is still being uploaded (a first submit of this
    folder, so the archive is sent); the job then runs to SUCCEEDED in that same container."""
    service = _service(executor=None)
    assert service.executor.kind == "docker"
    plan = service.plan(_spec(code_folder(tmp_path, "print('early hello', flush=True)\n"), name="early"))
    seen: list[str] = []
    _wrap_code_put(
        service,
        monkeypatch,
        lambda: seen.extend(c["Id"] for c in poll(lambda: docker_s3(plan.job_id), 30, what="the early container")),
    )
    job_id, created = service.submit(plan)
    assert created and seen, "the container was not started before the code upload"
    status = service.wait(job_id, timeout=90, poll=0.1)
    assert status.state == State.SUCCEEDED, status.reason
    assert "early hello" in _lines(service, job_id)
    assert _handle_container(service, job_id) in seen  # the early container ran it, no second one


@pytest.mark.parametrize("failure", ["refused", "interrupted"])
def test_docker_a_code_upload_that_fails_after_the_early_start_leaves_no_container_and_no_job(
    docker_s3: Callable[[str], list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The code upload fails (the store refuses it) or is interrupted (Ctrl-C) once the early container is
    up: the submit raises that, the container is removed at once (not left waiting a minute for a record),
    and no job is recorded."""
    service = _service(executor=None)
    plan = service.plan(_spec(code_folder(tmp_path, "open('ran', 'w').write('x')\n"), name=f"early-{failure}"))
    error: type[BaseException] = StorageError if failure == "refused" else KeyboardInterrupt

    def fail() -> None:
        poll(lambda: docker_s3(plan.job_id), 30, what="the early container")
        raise error("the bucket refused the write (test)")

    _wrap_code_put(service, monkeypatch, fail)
    with pytest.raises(error):
        service.submit(plan)
    poll(lambda: not docker_s3(plan.job_id), 30, what="the abandoned container to be removed")
    assert not service.record(plan.job_id).exists()
    assert [row.id for row in service.list_jobs()] == []


def _submit_with_a_slow_code_upload(
    docker_s3: Callable[[str], list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wait_s: int,
    upload_s: float,
    text: str,
    name: str,
) -> tuple[JobService, str, list[str]]:
    """Submit a job printing `text` whose code upload takes `upload_s` seconds (once the early container is
    there) under a `wait_s` record wait; the job must succeed. Returns the service, the job id and the early
    containers seen during the upload."""
    monkeypatch.setenv("JOBSUB_RECORD_WAIT_SECONDS", str(wait_s))
    service = _service(executor=None)
    plan = service.plan(_spec(code_folder(tmp_path, f"print({text!r}, flush=True)\n"), name=name))
    early: list[str] = []

    def slow() -> None:
        early.extend(c["Id"] for c in poll(lambda: docker_s3(plan.job_id), 30, what="the early container"))
        time.sleep(upload_s)

    _wrap_code_put(service, monkeypatch, slow)
    job_id, _ = service.submit(plan)
    status = service.wait(job_id, timeout=90, poll=0.1)
    assert status.state == State.SUCCEEDED, status.reason
    return service, job_id, early


def test_docker_a_slow_code_upload_within_half_the_record_wait_keeps_the_early_container(
    docker_s3: Callable[[str], list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code upload takes 2 s of a 10 s record wait: the early container waits for its record and runs
    the job (it does not give up, and no second container is made)."""
    service, job_id, seen = _submit_with_a_slow_code_upload(
        docker_s3, tmp_path, monkeypatch, wait_s=10, upload_s=2.0, text="waited for my record", name="slow"
    )
    assert "waited for my record" in _lines(service, job_id)
    assert _handle_container(service, job_id) in seen


def test_docker_a_code_upload_longer_than_half_the_record_wait_starts_the_runner_again_after_the_record(
    docker_s3: Callable[[str], list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code upload outlasts half the record wait (2.5 s of 2 s: the early runtime would give up before
    the record lands): the submit removes the early container before writing the record and starts another
    after it, which runs the job; the early one is gone and never ran anything."""
    service, job_id, early = _submit_with_a_slow_code_upload(
        docker_s3, tmp_path, monkeypatch, wait_s=2, upload_s=2.5, text="second container", name="late"
    )
    lines = _lines(service, job_id)
    assert lines.count("second container") == 1, lines
    ran = _handle_container(service, job_id)
    assert early and ran and ran not in early
    assert not [c for c in docker_s3(job_id) if c["Id"] in early]


def test_docker_a_submit_that_uploads_an_input_starts_the_container_after_it(
    docker_s3: Callable[[str], list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An input upload has no bound on its time (gigabytes): a submit that uploads one starts the container
    only after it (beside the record writes, as before this pass), and the job reads the input."""
    service = _service(executor=None)
    data = tmp_path / "data.txt"
    data.write_text("input bytes\n")
    code = code_folder(tmp_path, "import os\nprint(open(os.environ['JOBSUB_INPUT_DATA']).read().strip(), flush=True)\n")
    plan = service.plan(_spec(code, name="with-input"), inputs={"data": str(data)})
    assert plan.uploads
    from jobsub.transfer import TransferManager

    original = TransferManager.upload
    during: list[list[dict[str, Any]]] = []

    def upload(self: TransferManager, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # time for an early container to show up, were one started
        during.append(docker_s3(plan.job_id))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TransferManager, "upload", upload)
    job_id, _ = service.submit(plan)
    assert during == [[]], "a container was started before the input upload"
    status = service.wait(job_id, timeout=90, poll=0.1)
    assert status.state == State.SUCCEEDED, status.reason
    assert "input bytes" in _lines(service, job_id)


def test_docker_an_early_container_that_cannot_be_stopped_fails_the_submit_and_ends_by_itself(
    docker_s3: Callable[[str], list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code upload outlasted half the record wait and the engine would not remove the early container
    (simulated: the executor's abandon raises): the submit fails in one line instead of writing a record two
    containers wait for, no job is recorded, and the early container gives up its record wait and is
    removed by the engine (AutoRemove) without having run anything."""
    from jobsub.errors import JobError
    from jobsub.executors.docker import DockerExecutor

    monkeypatch.setenv("JOBSUB_RECORD_WAIT_SECONDS", "2")
    service = _service(executor=None)
    plan = service.plan(_spec(code_folder(tmp_path, "open('ran', 'w').write('x')\n"), name="stuck"))

    def slow() -> None:
        poll(lambda: docker_s3(plan.job_id), 30, what="the early container")
        time.sleep(1.5)

    def refuses(self: DockerExecutor, handle: Any) -> None:
        raise RuntimeError("the engine refused to remove it (test)")

    _wrap_code_put(service, monkeypatch, slow)
    monkeypatch.setattr(DockerExecutor, "abandon", refuses)
    with pytest.raises(JobError, match=r"could not stop the docker runner .* nothing was submitted"):
        service.submit(plan)
    assert not service.record(plan.job_id).exists()
    poll(lambda: not docker_s3(plan.job_id), 30, what="the early container to give up and be removed")
