"""The submit starts the runner beside its record writes (issue 22 item 5): the order, and what keeps it safe.

The docker, slurm and local executors start their runner (container, batch job, process) while the submit
uploads the code and writes job.json and status.json, so the engine's start and the runtime's interpreter
and storage-client start overlap them; the runtime waits for its record (runtime/runner.py,
wait_for_record). These tests run real runners of the local executor on the local store (no daemon), and
the last one the real dockerd of tests/executors/harness_docker.py (under the heavy lock: `flock
/tmp/jobsub-heavy.lock pytest tests/executors/test_start_order.py`); the docker and slurm paths run the
same service code and runtime, and their conformance suites (test_conformance.py) run every job this way.

Where a test needs the submit to be slow or to fail at one exact step (a record write that lands late, a
store that refuses it, a cancel between the runner's start and the record), the service's own
`_write_record` is wrapped: a real store cannot be told to fail one PUT on cue.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobsub.config import Profile
from jobsub.errors import StorageError
from jobsub.executors.base import LaunchRequest
from jobsub.jobs.models import JobDocument, JobStatus, State
from jobsub.jobs.records import JobRecord
from jobsub.jobs.service import JobService
from jobsub.jobs.spec import JobSpec
from jobsub.storage.local import LocalStore
from jobsub.uri import ObjectURI
from tests.conftest import Env, code_folder, make_env, poll, use_env


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return use_env(monkeypatch, make_env(tmp_path, "local"))


def _service(executor: str | None = "local") -> JobService:
    from jobsub.config import resolve_profile
    from jobsub.storage import open_store

    name, profile = resolve_profile()
    return JobService(profile, open_store(profile), name, executor=executor)


def _spec(code: Path, name: str = "order") -> JobSpec:
    return JobSpec(name=name, command="python main.py", code=str(code))


def _runner_pids(job_id: str) -> list[int]:
    """Processes of this user whose environment names the job (the local executor sets JOBSUB_JOB_ID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"JOBSUB_JOB_ID={job_id}".encode() in environ:
            found.append(int(entry.name))
    return found


def _submit_with_the_record_refused(
    service: JobService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: Callable[[str], list[Any]]
) -> tuple[str, list[Any]]:
    """Submit a job whose record write the store refuses once the runner has started (``started(job_id)``
    waits for it and returns what it found); the submit must fail with the store's error. Returns the job id
    and what ``started`` found."""
    found: list[Any] = []

    def refused(self: JobService, record: JobRecord, *args: Any) -> None:
        found.extend(started(record.job_id))
        raise StorageError("the bucket refused the write (test)")

    monkeypatch.setattr(JobService, "_write_record", refused)
    plan = service.plan(_spec(code_folder(tmp_path, "print('never', flush=True)\n")))
    with pytest.raises(StorageError, match="refused the write"):
        service.submit(plan)
    return plan.job_id, found


def _lines(service: JobService, job_id: str) -> list[str]:
    return [line.text for line in service.log_lines(job_id)]


def test_the_runner_starts_before_its_record_and_the_job_runs(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is written only once the runner process is up (it waits for it), and the job then runs
    to SUCCEEDED with its line: the new order, seen from outside."""
    service = _service()
    original = JobService._write_record
    seen: dict[str, Any] = {}

    def late(self: JobService, record: JobRecord, *args: Any) -> None:
        seen["pids"] = poll(lambda: _runner_pids(record.job_id), 30, what="the runner to start before its record")
        seen["exists_before"] = record.exists()
        original(self, record, *args)

    monkeypatch.setattr(JobService, "_write_record", late)
    plan = service.plan(_spec(code_folder(tmp_path, "print('hello from the job', flush=True)\n")))
    job_id, created = service.submit(plan)
    assert created and seen["pids"] and seen["exists_before"] is False
    status = service.wait(job_id, timeout=60, poll=0.1)
    assert status.state == State.SUCCEEDED, status.reason
    assert "hello from the job" in _lines(service, job_id)


def test_a_record_that_never_comes_fails_the_runner_with_one_line(user: Env, tmp_path: Path) -> None:
    """A runner started for a record nobody writes (the submit died between start and record) waits its
    bounded time, then says so in one line, exits 1 and writes nothing: no status, no claim, no log."""
    store_root = tmp_path / "user" / "data" / "jobsub" / "store"
    profile = Profile.model_validate({"storage": "local", "root": str(store_root)})
    job_uri = "s3://nobody/jobs/never-20260101-000000-abcd/"
    env = {
        **user.vars,
        "JOBSUB_PROFILE_JSON": profile.model_dump_json(),
        "JOBSUB_RECORD_WAIT_SECONDS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "jobsub.runtime", job_uri, "--work-dir", str(tmp_path / "work")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "did not appear within 1 s of the runner's start" in result.stderr
    assert "nothing was run" in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in store_root.rglob("*") if "never-" in str(p)]


def test_a_failed_record_write_stops_the_runner_it_started(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refuses the record after the runner started: the submit fails with the store's error, the
    runner it started is stopped at once (not left waiting a minute) and no job is listed."""
    service = _service()
    job_id, started = _submit_with_the_record_refused(
        service, tmp_path, monkeypatch, lambda job: poll(lambda: _runner_pids(job), 30, what="the runner to start")
    )
    assert started
    poll(lambda: not _runner_pids(job_id), 10, what="the abandoned runner to be gone")
    assert not service.record(job_id).exists()
    assert [row.id for row in service.list_jobs()] == []


def test_a_cancel_between_the_runners_start_and_its_record_cancels_the_job(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jobsub cancel` landing after the record is written but before the submit recorded the executor's
    handle (only the cancel marker can be set then): the early runner finds it and the job ends CANCELLED,
    its command stopped long before its 60 s."""
    service = _service()
    original = JobService._write_record

    def then_cancel(self: JobService, record: JobRecord, *args: Any) -> None:
        poll(lambda: _runner_pids(record.job_id), 30, what="the runner to start")
        original(self, record, *args)
        self.cancel(record.job_id)  # no executor.json yet: the marker alone

    monkeypatch.setattr(JobService, "_write_record", then_cancel)
    plan = service.plan(_spec(code_folder(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(60)\n")))
    job_id, _ = service.submit(plan)
    status = service.wait(job_id, timeout=45, poll=0.1)
    assert status.state == State.CANCELLED, status.reason


def test_two_submits_at_once_each_run_their_own_job(user: Env, tmp_path: Path) -> None:
    """Two submits from two threads of one process (the web view's case): each runner waits for and runs
    its own record; neither job sees the other's line."""
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def submit(tag: str) -> None:
        try:
            service = _service()
            code = code_folder(tmp_path, f"print('I am {tag}', flush=True)\n", name=f"src-{tag}")
            results[tag] = service.submit(service.plan(_spec(code, name=f"twin-{tag}")))[0]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(tag,)) for tag in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and set(results) == {"a", "b"} and results["a"] != results["b"]
    service = _service()
    for tag, other in (("a", "b"), ("b", "a")):
        status = service.wait(results[tag], timeout=60, poll=0.1)
        assert status.state == State.SUCCEEDED, status.reason
        lines = _lines(service, results[tag])
        assert f"I am {tag}" in lines and f"I am {other}" not in lines


def test_a_record_that_names_another_job_is_not_run(tmp_path: Path) -> None:
    """A job.json copied (or rewritten) from another job's record is refused before the claim: the runner
    says which job it names, runs nothing and leaves the status as it found it."""
    from jobsub.errors import RecordFormatError
    from jobsub.runtime.runner import wait_for_record

    store = LocalStore(tmp_path / "store")
    jobs = ObjectURI.parse("s3://bkt/jobs/")
    mine = JobRecord(store, jobs, "mine-20260101-000000-aaaa")
    other = JobDocument(
        id="other-20260101-000000-bbbb", spec=JobSpec(name="other", command="true"), outputs="s3://bkt/o/"
    )
    mine.write_document(other)
    mine.write_status(JobStatus())
    with pytest.raises(RecordFormatError, match="names job 'other-20260101-000000-bbbb'"):
        wait_for_record(mine, 1)
    assert mine.read_status().state == State.QUEUED and mine.read_claim() is None


def test_the_runner_waits_for_status_json_not_only_job_json(tmp_path: Path) -> None:
    """job.json is written before status.json: a runner that looks between the two waits on, and gets
    both once status.json lands (its first status is the submit's QUEUED, not a half record)."""
    from jobsub.runtime.runner import wait_for_record

    store = LocalStore(tmp_path / "store")
    record = JobRecord(store, ObjectURI.parse("s3://bkt/jobs/"), "half-20260101-000000-cccc")
    record.write_document(
        JobDocument(id=record.job_id, spec=JobSpec(name="half", command="true"), outputs="s3://bkt/o/")
    )
    timer = threading.Timer(0.4, lambda: record.write_status(JobStatus()))
    timer.start()
    try:
        job, status = wait_for_record(record, 10)
    finally:
        timer.join()
    assert job.id == record.job_id and status.state == State.QUEUED


def test_only_the_early_executors_start_before_the_record() -> None:
    """Docker (both stores), Slurm and the local executor start their runner beside the record writes; an
    executor that does not say so (Ray, ModelArts) keeps the old order: record first, then the start."""
    from jobsub.executors import get_executor

    profile = Profile.model_validate({"storage": "local", "root": "/tmp/unused", "ray": {"address": "http://x:1"}})
    request = LaunchRequest(job_id="x-20260101-000000-dddd", job_uri="s3://bkt/jobs/x/", profile=profile)
    for kind, early in (("local", True), ("docker", True), ("slurm", True), ("ray", False)):
        assert get_executor(kind, profile).starts_before_record(request) is early, kind


def test_docker_a_failed_record_write_removes_the_container_it_started(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docker_harness: Any,
    docker_engine: Any,
) -> None:
    """The same failure on the real dockerd (run under the heavy lock): the job's container, created and
    started beside the record write, is removed when the write fails, and no job is left in the bucket."""
    pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'jobsub[docker]')")
    from tests.executors.test_docker import _env

    _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    client = docker_engine[1]
    service = _service(executor=None)  # the profile's: docker on moto
    assert service.executor.kind == "docker"

    def containers(job_id: str) -> list[Any]:
        return list(client.api.containers(all=True, filters={"label": f"jobsub.job-id={job_id}"}))

    job_id, seen = _submit_with_the_record_refused(
        service,
        tmp_path,
        monkeypatch,
        lambda job: poll(lambda: containers(job), 60, what="the job's container to be created"),
    )
    assert seen
    poll(lambda: not containers(job_id), 30, what="the abandoned container to be removed")
    assert not service.record(job_id).exists()


def test_a_slow_code_upload_does_not_eat_the_runner_s_record_wait(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code folder's upload takes longer than the runner waits for its record (a first submit over a
    slow link; here the service's own _ensure_code is slowed, since a local store cannot be slowed): the
    runner starts only after it, so the job still runs (before the review fix it started first and gave up)."""
    import time

    monkeypatch.setenv("JOBSUB_RECORD_WAIT_SECONDS", "1")
    service = _service()
    original = JobService._ensure_code

    def slow(self: JobService, *args: Any) -> None:
        time.sleep(2.5)
        assert not _runner_pids(plan.job_id), "the runner started before the code was uploaded"
        original(self, *args)

    monkeypatch.setattr(JobService, "_ensure_code", slow)
    plan = service.plan(_spec(code_folder(tmp_path, "print('ran after a slow code upload', flush=True)\n")))
    job_id, _ = service.submit(plan)
    status = service.wait(job_id, timeout=60, poll=0.1)
    assert status.state == State.SUCCEEDED, status.reason
    assert "ran after a slow code upload" in _lines(service, job_id)


def test_ctrl_c_while_the_runner_starts_stops_it_and_fails_the_record(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands while the submit waits for the executor's start (simulated by raising KeyboardInterrupt
    from the wait, once the runner is up): the runner is stopped, the record says FAILED with why, and the
    interrupt reaches the caller (the CLI's exit 130); nothing of the job runs afterwards."""
    from jobsub.jobs import service as service_module

    service = _service()
    original = service_module._Launch.result

    def interrupted(self: Any) -> Any:
        poll(lambda: _runner_pids(self_job["id"]), 30, what="the runner to start")
        raise KeyboardInterrupt

    self_job: dict[str, str] = {}
    monkeypatch.setattr(service_module._Launch, "result", interrupted)
    plan = service.plan(_spec(code_folder(tmp_path, "open('ran', 'w').write('x')\n")))
    self_job["id"] = plan.job_id
    with pytest.raises(KeyboardInterrupt):
        service.submit(plan)
    monkeypatch.setattr(service_module._Launch, "result", original)
    poll(lambda: not _runner_pids(plan.job_id), 10, what="the interrupted job's runner to be gone")
    status = service.status(plan.job_id)
    assert status.state == State.FAILED and "interrupted" in (status.reason or ""), status


def test_a_plan_submitted_again_after_a_failed_launch_runs(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API retry: the first submit of a plan fails at the executor's start (simulated: the local
    executor's submit raises once) and leaves a FAILED record; the same plan submitted again must not start
    a runner that reads that old record. It runs the job to SUCCEEDED."""
    from jobsub.executors.local import LocalExecutor

    service = _service()
    original = LocalExecutor.submit
    calls: list[int] = []

    def fails_once(self: LocalExecutor, request: LaunchRequest) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the engine refused (test)")
        return original(self, request)

    monkeypatch.setattr(LocalExecutor, "submit", fails_once)
    plan = service.plan(_spec(code_folder(tmp_path, "print('second time lucky', flush=True)\n")))
    with pytest.raises(RuntimeError, match="engine refused"):
        service.submit(plan)
    assert service.status(plan.job_id).state == State.FAILED
    import time

    original_write = JobService._write_record

    def slow_write(self: JobService, record: JobRecord, *args: Any) -> None:
        time.sleep(1.5)  # time for a runner started first to read the old FAILED record
        original_write(self, record, *args)

    monkeypatch.setattr(JobService, "_write_record", slow_write)
    job_id, _ = service.submit(plan)
    status = service.wait(job_id, timeout=60, poll=0.1)
    assert status.state == State.SUCCEEDED, status.reason
    assert "second time lucky" in _lines(service, job_id)


def test_a_bad_record_wait_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBSUB_RECORD_WAIT_SECONDS that is no number, or out of 1..3600 (nan, inf, 0, a shell fragment), is
    ignored for the default 60 s: a runner that failed on the knob before it has a record could say why
    nowhere."""
    from jobsub.executors.record_wait import RECORD_WAIT_SECONDS, record_wait_seconds

    for bad in ("soon", "nan", "inf", "0", "-5", "99999", "$(rm -rf /)", ""):
        monkeypatch.setenv("JOBSUB_RECORD_WAIT_SECONDS", bad)
        assert record_wait_seconds() == RECORD_WAIT_SECONDS == 60.0, bad
    monkeypatch.setenv("JOBSUB_RECORD_WAIT_SECONDS", "2.5")
    assert record_wait_seconds() == 2.5


def test_running_is_written_with_the_command_s_process_group(user: Env, tmp_path: Path) -> None:
    """The runner writes RUNNING once the command has started, in the same status write as the command's
    process group (no status PUT between staging and the command's start): every status read that says
    RUNNING names the group `jobsub cancel` acts on, and the transitions still go STAGING -> RUNNING."""
    service = _service()
    plan = service.plan(_spec(code_folder(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(1)\n")))
    job_id, _ = service.submit(plan)
    record = service.record(job_id)
    running: list[JobStatus] = []

    def finished() -> bool:
        status = record.read_status()
        if status.state == State.RUNNING:
            running.append(status)
        return status.state.final

    poll(finished, 60, interval=0.01, what="the job to finish")
    assert running, "RUNNING was never seen"
    assert all(s.executor is not None and s.executor.pgid for s in running), running[0]
    final = record.read_status()
    assert final.state == State.SUCCEEDED, final.reason
    states = [t.state for t in final.transitions]
    assert states.index(State.STAGING) < states.index(State.RUNNING) < states.index(State.SUCCEEDED)
