"""Each executor's handle is a model of its own (executors/base.py), parsed once where executor.json is read.

In-process and fast: no daemon is started. The handle shapes below are copied from what the executors'
submit() wrote before handles were models (plain dicts in executor.json), oldest and newest, so a record
written by an earlier jobsub still reads, and is written back under the same keys. The hostile cases are
records rewritten by whoever can write the jobs prefix: each is refused with one line before any executor
acts on it; the executors' own checks (a pid that is not this job's runner, a Slurm id that is not a
number, a Ray submission of another job) still run after the parse.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from jobsub.config import Profile
from jobsub.errors import ExecutorUnavailableError, JobError
from jobsub.executors import executor_class
from jobsub.executors.base import BaseExecutor, BaseHandle, LaunchRequest, Observation
from jobsub.jobs.records import JobRecord, JobStatus
from jobsub.jobs.service import JobService
from jobsub.storage.local import LocalStore
from jobsub.uri import ObjectURI
from tests.conftest import Env, make_env, use_env

RAY = "http://127.0.0.1:8265"

#: executor.json as each executor wrote it (kind, name of the shape, the dict): copied from submit() in
#: jobsub/executors/*.py before the models, first release and latest
OLD_RECORDS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "local",
        "first",
        {"kind": "local", "host": "gpu-box", "pid": 4242, "start_time": "123456", "run_dir": "/s/runs/j-1"},
    ),
    ("local", "no /proc", {"kind": "local", "host": "mac", "pid": 77, "start_time": None, "run_dir": "/s/runs/j"}),
    (
        "docker",
        "container, first",
        {
            "kind": "docker",
            "host": "unix:///var/run/docker.sock",
            "engine_host": "buildhost",
            "container_id": "0123456789ab" * 4,
            "image": "jobsub-train:latest",
            "memory_bytes": None,
            "stop_timeout": 30,
            "keep": False,
        },
    ),
    (
        "docker",
        "container, latest",
        {
            "kind": "docker",
            "host": "ssh://me@gpu",
            "engine_host": "gpu",
            "container_id": "fedcba987654" * 4,
            "image": "org/train:1",
            "memory_bytes": 2147483648,
            "stop_timeout": 30,
            "keep": True,
            "network": "host",
            "user": "2345678:2345678",
        },
    ),
    (
        "docker",
        "host runner",
        {
            "kind": "docker",
            "mode": "host-runner",
            "host": "unix:///var/run/docker.sock",
            "runner_host": "laptop",
            "pid": 31337,
            "start_time": "998877",
            "run_dir": "/home/me/.local/state/jobsub/runs/j-2",
            "image": "jobsub-train:latest",
            "keep": False,
            "user": "1000:1000",
            "network": "",
        },
    ),
    (
        "slurm",
        "first",
        {
            "kind": "slurm",
            "job_id": "1234",
            "cluster": None,
            "partition": "gpu",
            "run_dir": "/home/me/.local/state/jobsub/slurm/j-3",
            "output": "/home/me/.local/state/jobsub/slurm/j-3/slurm-1234.out",
        },
    ),
    (
        "slurm",
        "latest",
        {
            "kind": "slurm",
            "job_id": "77_3",
            "cluster": "big",
            "partition": None,
            "run_dir": "/scratch/jobsub/j-4",
            "output": "/scratch/jobsub/j-4/slurm-77_3.out",
            "log": "/scratch/jobsub/j-4/slurm-77_3.out",
        },
    ),
    ("ray", "first", {"kind": "ray", "address": RAY, "submission_id": "jobsub-ray-20261125-000000-abcd"}),
    (
        "ray",
        "latest",
        {
            "kind": "ray",
            "address": RAY,
            "submission_id": "jobsub-ray-20261125-000000-abcd",
            "log": f"{RAY}/api/jobs/jobsub-ray-20261125-000000-abcd/logs",
            "secret_uri": "s3://b/jobs/_secrets/ray-20261125-000000-abcd-0123",
        },
    ),
    (
        "modelarts",
        "first",
        {
            "kind": "modelarts",
            "job_id": "ma-20261125-000000-abcd",
            "training_job_id": "5c3f-aa",
            "name": "jobsub-ma-20261125-000000-abcd",
            "endpoint": "https://modelarts.cn-north-4.myhuaweicloud.com",
            "project_id": "0123abcd",
            "region": "cn-north-4",
            "flavor": "modelarts.p3.large.public",
            "image": "swr.cn-north-4.myhuaweicloud.com/org/jobsub-train:1",
            "secrets": "s3://b/jobs/_secrets/ma-20261125-000000-abcd-0123",
        },
    ),
    (
        "modelarts",
        "with exported logs",
        {
            "kind": "modelarts",
            "job_id": "ma-1",
            "training_job_id": "5c3f-bb",
            "name": "jobsub-ma-1",
            "endpoint": "https://modelarts.cn-north-4.myhuaweicloud.com",
            "project_id": "0123abcd",
            "region": None,
            "flavor": "f",
            "image": "swr.cn-north-4.myhuaweicloud.com/org/t:1",
            "secrets": "s3://b/jobs/_secrets/x",
            "log": "obs://b/ma-logs/",
        },
    ),
]


@pytest.fixture
def service(tmp_path: Path) -> JobService:
    """A service on a local store whose profile names the Ray dashboard of the ray records above."""
    profile = Profile.model_validate(
        {"root": str(tmp_path / "store"), "ray": {"address": RAY}, "docker": {"host": "unix:///var/run/docker.sock"}}
    )
    return JobService(profile, LocalStore(tmp_path / "store"))


def _record(service: JobService, job_id: str, handle: Any) -> JobRecord:
    record = JobRecord(service.store, ObjectURI.parse(service.profile.jobs_uri).as_prefix(), job_id)
    record.put_json("executor.json", handle)
    return record


@pytest.mark.parametrize(("kind", "shape", "data"), OLD_RECORDS, ids=[f"{k}: {s}" for k, s, _ in OLD_RECORDS])
def test_an_executor_json_written_before_the_models_still_reads(
    service: JobService, kind: str, shape: str, data: dict[str, Any]
) -> None:
    job_id = str(data["job_id"] if kind == "modelarts" else data.get("submission_id", "jobsub-j-1"))
    job_id = job_id.removeprefix("jobsub-")
    handle = service.executor_handle(_record(service, job_id, data))
    assert handle is not None and handle.kind == kind
    assert isinstance(handle, executor_class(kind).handle_model)
    assert handle.record_job_id == job_id  # bound at the parse point, for the executors' own checks
    assert handle.record_data() == data  # written back under the same keys, with the same values


def test_a_handle_without_an_executor_json_is_not_started(service: JobService) -> None:
    record = JobRecord(service.store, ObjectURI.parse(service.profile.jobs_uri).as_prefix(), "j-none")
    assert service.executor_handle(record) is None
    assert service.executor_description("j-none") == "not started"


def test_submit_writes_the_model_under_the_keys_it_always_had(service: JobService) -> None:
    from jobsub.executors.local import LocalHandle

    handle = LocalHandle(kind="local", host="h", pid=12, start_time=None, run_dir="/r")
    record = JobRecord(service.store, ObjectURI.parse(service.profile.jobs_uri).as_prefix(), "j-w")
    record.write_handle(handle.model_copy(update={"record_job_id": "j-w"}))
    assert record.get_json("executor.json") == {
        "kind": "local",
        "host": "h",
        "pid": 12,
        "start_time": None,
        "run_dir": "/r",
    }


# -- hostile records: one line, before anything acts ----------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expect"),
    [
        ({"kind": "nope", "pid": 1}, "names executor 'nope'; this jobsub knows"),
        ({"host": "h", "pid": 12}, "names executor 'None'"),
        ({"kind": ["local"], "host": "h", "pid": 12}, "names executor"),
        ({"kind": "local", "host": "h"}, "is not a local handle (pid: Field required)"),
        ({"kind": "local", "host": "h", "pid": "12; rm -rf /"}, "is not a local handle (pid: "),
        ({"kind": "local", "host": "h", "pid": 0}, "is not a local handle (pid: Input should be greater than 0)"),
        ({"kind": "local", "host": "h", "pid": 12, "cmd": "x"}, "is not a local handle (cmd: Extra inputs"),
        ({"kind": "slurm", "job_id": 1234}, "is not a slurm handle (job_id: Input should be a valid string)"),
        ({"kind": "docker", "host": "unix:///d.sock", "image": "x"}, "container_id is required"),
        ({"kind": "docker", "mode": "host-runner", "host": "unix:///d.sock"}, "pid and runner_host are required"),
        ({"kind": "ray", "address": RAY}, "is not a ray handle (submission_id: Field required)"),
        ({"kind": "modelarts", "job_id": "x"}, "is not a modelarts handle (training_job_id: Field required)"),
    ],
)
def test_a_handle_of_a_wrong_kind_or_with_a_missing_field_is_refused_with_one_line(
    service: JobService, data: dict[str, Any], expect: str
) -> None:
    record = _record(service, "j-bad", data)
    with pytest.raises(JobError) as caught:
        service.executor_handle(record)
    message = str(caught.value)
    assert expect in message and "\n" not in message, message
    assert message.startswith("job j-bad: its executor record (s3://jobsub/jobs/j-bad/executor.json)"), message


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b"not json", "is not JSON"),
        (b'["kind", "local"]', "is not a JSON object"),
        (b'{"kind": "local", "host": "' + b"x" * 70_000 + b'", "pid": 5}', "bytes; not read (limit 65536)"),
    ],
    ids=["not JSON", "not an object", "too large"],
)
def test_an_executor_json_that_is_no_handle_at_all_is_one_line(service: JobService, body: bytes, expect: str) -> None:
    record = JobRecord(service.store, ObjectURI.parse(service.profile.jobs_uri).as_prefix(), "j-raw")
    service.store.put(record.bucket, record.key("executor.json"), body)
    with pytest.raises(JobError, match=re.escape(expect)):
        service.executor_handle(record)


def test_the_record_job_id_comes_from_the_record_not_from_the_file(service: JobService) -> None:
    forged = {"kind": "slurm", "job_id": "12", "record_job_id": "someone-elses-job"}
    handle = service.executor_handle(_record(service, "j-mine", forged))
    assert handle is not None and handle.record_job_id == "j-mine"
    assert "record_job_id" not in handle.record_data()
    from jobsub.executors.slurm import SlurmHandle

    assert SlurmHandle.model_validate(forged).record_job_id is None  # without the parse point: unbound


def test_a_rewritten_handle_naming_another_job_is_still_refused(service: JobService) -> None:
    """The model validates the shape; the executor's check still decides whether it is this job's runner."""
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "JOBSUB_JOB_ID": "other-job"}
    )
    try:
        from jobsub.executors.local import _proc_start_time

        start = None
        while start is None:  # /proc has it as soon as the process exists
            start = _proc_start_time(sleeper.pid)
        local = {"kind": "local", "host": socket.gethostname(), "pid": sleeper.pid, "start_time": start}
        record = _record(service, "j-local", local)
        with pytest.raises(JobError, match=f"pid {sleeper.pid} on this machine, which is not this job's runner"):
            service.executor_handle(record)
        assert sleeper.poll() is None  # nothing was signalled
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(JobError, match="names Slurm job '1 --user=root': not a job id"):
        service.executor_handle(_record(service, "j-slurm", {"kind": "slurm", "job_id": "1 --user=root"}))
    other = {"kind": "ray", "address": RAY, "submission_id": "jobsub-someone-else"}
    with pytest.raises(ExecutorUnavailableError, match="Ray submission jobsub-someone-else, not jobsub-j-ray"):
        service.executor_handle(_record(service, "j-ray", other))
    elsewhere = {"kind": "ray", "address": "http://10.9.8.7:8265", "submission_id": "jobsub-j-ray"}
    with pytest.raises(ExecutorUnavailableError, match="not this profile's"):
        service.executor_handle(_record(service, "j-ray", elsewhere))


def test_a_malformed_handle_is_one_line_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env: Env = use_env(monkeypatch, make_env(tmp_path, "local"))
    from jobsub.config import resolve_profile

    record = JobRecord(env.store(), ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix(), "x-20261130-000000-a1")
    record.write_status(JobStatus())
    for data in ({"kind": "docker", "host": "unix:///d.sock"}, {"kind": "local", "host": "h", "pid": "twelve"}):
        record.put_json("executor.json", data)
        for command in ("status", "cancel"):
            result = env.run(command, record.job_id)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
            assert "is not a" in lines[0] and "handle" in lines[0], lines[0]
    assert json.loads(record.store.get(record.bucket, record.key("executor.json"))) == data  # nothing rewrote it


# -- the class declares its handle model ------------------------------------------------------------------------
def test_an_executor_class_without_a_handle_model_fails_when_defined() -> None:
    with pytest.raises(TypeError, match=r"Modelless needs a class attribute handle_model = <its BaseHandle subclass>"):

        class Modelless(BaseExecutor[BaseHandle]):
            kind = "modelless"

            def submit(self, request: LaunchRequest) -> BaseHandle:
                return BaseHandle(kind="modelless")

            def poll(self, handle: BaseHandle) -> Observation:
                return Observation("unknown")

            def cancel(self, handle: BaseHandle) -> None:
                return None

            def describe(self, handle: BaseHandle) -> str:
                return "modelless"

    class OtherHandle(BaseHandle):
        kind: Literal["other"]

    with pytest.raises(TypeError, match=r"OtherHandle must declare kind: Literal\['mismatched'\]"):

        class Mismatched(BaseExecutor[OtherHandle]):
            kind = "mismatched"
            handle_model = OtherHandle

            def submit(self, request: LaunchRequest) -> OtherHandle:
                return OtherHandle(kind="other")

            def poll(self, handle: OtherHandle) -> Observation:
                return Observation("unknown")

            def cancel(self, handle: OtherHandle) -> None:
                return None

            def describe(self, handle: OtherHandle) -> str:
                return "other"


def test_every_built_in_executor_declares_its_handle_model() -> None:
    from jobsub.config import EXECUTORS

    for kind in EXECUTORS:
        model = executor_class(kind).handle_model
        assert issubclass(model, BaseHandle) and model.model_fields["kind"].annotation == Literal[kind]  # type: ignore[valid-type]
        assert model.model_config.get("frozen") and model.model_config.get("extra") == "forbid"


# -- the profile options an executor adds are declared on its class --------------------------------------------
class WideSettings(BaseModel):
    """The [profiles.X.wide] section of a test executor that config.py has never heard of."""

    model_config = ConfigDict(extra="forbid")
    width: int = 1
    queue: str | None = None


class WideHandle(BaseHandle):
    kind: Literal["wide"]
    ticket: str


class WideExecutor(BaseExecutor[WideHandle]):
    kind = "wide"
    handle_model = WideHandle
    settings_model = WideSettings

    def submit(self, request: LaunchRequest) -> WideHandle:
        return WideHandle(kind="wide", ticket=f"{self.profile.section('wide', WideSettings).queue}-{request.job_id}")

    def poll(self, handle: WideHandle) -> Observation:
        return Observation("unknown")

    def cancel(self, handle: WideHandle) -> None:
        return None

    def describe(self, handle: WideHandle) -> str:
        return f"wide ticket {handle.ticket}"


@pytest.fixture
def wide_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobsub.config import EXECUTORS

    monkeypatch.setitem(EXECUTORS, "wide", f"{__name__}:WideExecutor")  # the one registry line


def test_a_new_executor_s_profile_section_needs_no_line_in_config(wide_registered: None, tmp_path: Path) -> None:
    from jobsub.config import Config, load_config, save_config

    profile = Profile.model_validate({"executor": "wide", "wide": {"width": 4, "queue": "night"}})
    assert profile.section("wide", WideSettings) == WideSettings(width=4, queue="night")
    assert Profile().section("wide", WideSettings) == WideSettings()  # no section: the model's defaults
    # JOBSUB_PROFILE_JSON (what every runner reads) round-trips, with the section flat beside the fields
    again = Profile.model_validate_json(profile.model_dump_json())
    assert again == profile and json.loads(profile.model_dump_json())["wide"] == {"width": 4, "queue": "night"}
    assert profile.model_copy(update={"root": "/r"}).section("wide", WideSettings).width == 4
    # the TOML keeps [profiles.X.wide] as written, and reads back the same
    path = save_config(Config(profiles={"w": profile}), tmp_path / "config.toml")
    assert '[profiles.w.wide]\nwidth = 4\nqueue = "night"\n' in path.read_text()
    assert load_config(path).profiles["w"] == profile
    request = LaunchRequest(job_id="j-9", job_uri="s3://b/jobs/j-9/", profile=profile)
    assert WideExecutor(profile).submit(request).ticket == "night-j-9"


@pytest.mark.parametrize(
    ("toml", "expect"),
    [
        ("[profiles.w.wide]\nwidht = 2\n", "profiles.w.wide.widht: Extra inputs are not permitted"),
        ('[profiles.w.wide]\nwidth = "many"\n', "profiles.w.wide.width: Input should be a valid integer"),
        ("[profiles.w.wied]\nwidth = 2\n", "profiles.w.wied: Extra inputs are not permitted"),
        ('[profiles.w.docker]\nhots = "x"\n', "profiles.w.docker.hots: Extra inputs are not permitted"),
        ("[profiles.w.local]\nx = 1\n", "profiles.w.local: Extra inputs are not permitted"),  # local adds none
    ],
    ids=["typo in the section", "wrong type", "typo in the name", "built-in section", "executor without settings"],
)
def test_a_typo_in_an_executor_section_is_an_error_naming_the_key(
    wide_registered: None, tmp_path: Path, toml: str, expect: str
) -> None:
    from jobsub.config import load_config
    from jobsub.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"config {path}: {expect}"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_built_in_executors_declare_the_sections_they_read() -> None:
    """config.py names no executor's options: every section is its class's settings_model, none a field."""
    from jobsub.config import EXECUTORS, executor_settings_model

    for kind in EXECUTORS:
        assert kind not in Profile.model_fields, kind
        assert executor_class(kind).settings_model is executor_settings_model(kind), kind
    assert [k for k in EXECUTORS if executor_settings_model(k) is not None] == ["docker", "slurm", "ray", "modelarts"]


def test_an_executor_whose_settings_are_no_model_fails_when_defined() -> None:
    with pytest.raises(TypeError, match="settings_model must be a pydantic model class or None"):

        class Loose(WideExecutor):
            settings_model = dict  # type: ignore[assignment]


# -- status.json's executor: where the runner ran, typed; the owning executor kills a LOST job's leftovers -------
#: status.json's "executor" as runtime/runner.py wrote it before it was a model: before the runner started,
#: when it started, and once the job's command ran (its process group)
OLD_PLACES: list[dict[str, Any]] = [
    {},
    {"kind": "runtime", "host": "gpu-box", "pid": 4242, "runner": "ab12cd34"},
    {"kind": "runtime", "host": "gpu-box", "pid": 4242, "runner": "ab12cd34", "pgid": 4250},
]


@pytest.mark.parametrize("place", OLD_PLACES, ids=["not started", "runner started", "command started"])
def test_a_status_json_written_before_the_model_still_reads(service: JobService, place: dict[str, Any]) -> None:
    record = _record(service, "j-old", {"kind": "local", "host": "h", "pid": 1, "start_time": None, "run_dir": "/r"})
    old = {"state": "LOST", "created": "2026-11-20T00:00:00+00:00", "attempt": 1, "executor": place}
    record.put_json("status.json", old)
    status = record.read_status()
    assert status.executor.host == place.get("host") and status.executor.pgid == place.get("pgid")
    record.write_status(status)
    assert json.loads(record.store.get(record.bucket, record.key("status.json")))["executor"] == place  # same keys


@pytest.mark.parametrize(
    ("place", "expect"),
    [
        ({"host": "h", "pid": -1}, "executor.pid: Input should be greater than or equal to 1"),
        ({"host": "h", "pgid": 2**40}, "executor.pgid: Input should be less than or equal to"),
        ({"host": "h" * 5000}, "executor.host: String should have at most 253 characters"),
        ({"host": "h", "runner": "r" * 1000}, "executor.runner: String should have at most 64 characters"),
        (["gpu-box", 1], "executor: Input should be a valid dictionary"),
    ],
    ids=["negative pid", "huge pgid", "long host", "long runner id", "not an object"],
)
def test_a_rewritten_runner_place_is_one_line_before_anything_acts_on_it(
    service: JobService, place: Any, expect: str
) -> None:
    from jobsub.errors import RecordFormatError

    record = _record(service, "j-bad", {"kind": "local", "host": "h", "pid": 1, "start_time": None, "run_dir": "/r"})
    record.put_json("status.json", {"state": "LOST", "executor": place})
    with pytest.raises(RecordFormatError) as caught:
        service.cancel_leftovers("j-bad", record.read_status())
    said = str(caught.value)
    assert said.endswith("(not a job status jobsub can read)") and expect in said and "\n" not in said, said
    assert "h" * 300 not in said


class SweepHandle(BaseHandle):
    kind: Literal["sweep"]
    batch: str


class SweepExecutor(BaseExecutor[SweepHandle]):
    """An executor whose jobs leave a batch behind, not processes: it says what it swept."""

    kind = "sweep"
    handle_model = SweepHandle
    swept: ClassVar[list[tuple[str, str | None, str]]] = []

    def submit(self, request: LaunchRequest) -> SweepHandle:
        return SweepHandle(kind="sweep", batch=f"b-{request.job_id}")

    def poll(self, handle: SweepHandle) -> Observation:
        return Observation("dead")

    def cancel(self, handle: SweepHandle) -> None:
        return None

    def describe(self, handle: SweepHandle) -> str:
        return f"batch {handle.batch}"

    def kill_leftovers(self, handle: SweepHandle | None, place: Any, job_id: str) -> str:
        assert handle is not None
        SweepExecutor.swept.append((handle.batch, place.host, job_id))
        return f"swept batch {handle.batch}"


def test_cancel_of_a_lost_job_asks_the_executor_that_owns_it(
    service: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobsub.config import EXECUTORS
    from jobsub.executors.base import RunnerPlace
    from jobsub.jobs.records import State

    monkeypatch.setitem(EXECUTORS, "sweep", f"{__name__}:SweepExecutor")
    SweepExecutor.swept.clear()
    record = _record(service, "j-sweep", {"kind": "sweep", "batch": "b-j-sweep"})
    lost = JobStatus(state=State.LOST, executor=RunnerPlace(kind="runtime", host="node-7", pid=9, runner="ab12cd34"))
    record.write_status(lost)
    assert service.cancel_leftovers("j-sweep", record.read_status()) == "swept batch b-j-sweep"
    assert SweepExecutor.swept == [("b-j-sweep", "node-7", "j-sweep")]  # the place came typed, read from the record


def _sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process in a session of its own (as a job's command is), holding `env` in its environment."""
    return subprocess.Popen(["sleep", "60"], env={**os.environ, **env}, start_new_session=True)


def test_the_default_kills_the_recorded_group_of_this_job_on_this_host_and_nothing_else(tmp_path: Path) -> None:
    from jobsub.executors.base import RunnerPlace
    from jobsub.executors.local import LocalExecutor

    executor = LocalExecutor(Profile(root=str(tmp_path / "store")))
    assert (
        executor.kill_leftovers(None, RunnerPlace(), "j-1") == "its runner never said where it ran: nothing was checked"
    )
    said = executor.kill_leftovers(None, RunnerPlace(host="node-7", pgid=5), "j-1")
    assert said == "its processes ran on node-7: run `jobsub cancel j-1` there to kill what is left"
    leftover, stranger = _sleeper({"JOBSUB_JOB_ID": "j-1"}), _sleeper({"JOBSUB_JOB_ID": "j-other"})
    try:
        # a rewritten place naming another job's group: that group is not this job's, nothing is killed
        said = executor.kill_leftovers(None, RunnerPlace(host=os.uname().nodename, pgid=stranger.pid), "j-1")
        assert said == f"checked {os.uname().nodename}: nothing of it is left running" and stranger.poll() is None
        said = executor.kill_leftovers(None, RunnerPlace(host=os.uname().nodename, pgid=leftover.pid), "j-1")
        assert said == f"killed 1 leftover processes of the job ({leftover.pid})"
        assert leftover.wait(timeout=10) == -9 and stranger.poll() is None
    finally:
        for proc in (leftover, stranger):
            proc.kill()
            proc.wait()


def test_a_rewritten_status_is_one_line_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env: Env = use_env(monkeypatch, make_env(tmp_path, "local"))
    from jobsub.config import resolve_profile

    record = JobRecord(env.store(), ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix(), "x-20261130-000000-b2")
    record.put_json("status.json", {"state": "LOST", "executor": {"host": "h", "pgid": -5}})
    for command in ("status", "cancel"):
        result = env.run(command, record.job_id)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "executor.pgid: Input should be greater than or equal to 1" in lines[0], lines[0]


def test_a_rewritten_status_hides_that_job_not_the_whole_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One status.json rewritten into nonsense (by anyone with write access to the bucket) must not take
    `jobsub jobs`, the web list, `cost` or a priced `submit` down with it: the list shows the jobs it can read."""
    env: Env = use_env(monkeypatch, make_env(tmp_path, "local"))
    from jobsub.config import resolve_profile

    prefix = ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix()
    good = JobRecord(env.store(), prefix, "good-20261130-000000-aa")
    good.put_json("status.json", {"state": "FAILED", "created": "2026-11-30T00:00:00+00:00"})
    for n, bad_status in enumerate(({"state": "BOGUS"}, {"state": "FAILED", "executor": {"pid": 0}})):
        bad = JobRecord(env.store(), prefix, f"bad-20261130-00000{n}-bb")
        bad.put_json("status.json", {"created": "2026-11-30T00:00:00+00:00", **bad_status})
    result = env.run("jobs", "--json")
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in json.loads(result.stdout)] == [good.job_id]


def test_a_pid_no_kernel_can_have_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handle's pid is bounded like the runner's place: 2**70 once reached os.kill and raised OverflowError."""
    env: Env = use_env(monkeypatch, make_env(tmp_path, "local"))
    from jobsub.config import resolve_profile

    record = JobRecord(env.store(), ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix(), "x-20261130-000000-c3")
    record.put_json("status.json", {"state": "RUNNING", "created": "2026-11-30T00:00:00+00:00"})
    record.put_json("executor.json", {"kind": "local", "host": socket.gethostname(), "pid": 2**70, "start_time": "1"})
    for command in ("status", "cancel"):
        result = env.run(command, record.job_id)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "pid" in lines[0], lines[0]
