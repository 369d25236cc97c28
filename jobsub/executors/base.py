"""The executor interface: how local, docker, slurm and ray executors start and watch the jobsub runtime.

Every executor starts the same thing — ``python -m jobsub.runtime JOB_URI --work-dir DIR`` with the profile
in ``JOBSUB_PROFILE_JSON`` — somewhere else. Everything a job *is* lives in its record in the object store;
an executor only launches the runner, says whether it is still there (and why not), delivers a cancel
quickly, and names where the job runs.

The handle an executor returns is a frozen pydantic model, one class per executor (``handle_model`` on the
executor class, a subclass of ``BaseHandle`` whose ``kind`` is the executor's kind). It is kept in the job
record (``executor.json``, written with ``record_data()``: the same keys the dicts of earlier versions had),
and a job is always polled and cancelled by the executor its handle names, not by whatever the profile says
today. The service parses executor.json in one place (jobs/service.py, ``executor_handle``): the kind picks
the executor through the registry, that executor's model validates the rest, and a handle that does not
validate is refused with one line before anything acts on it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

if TYPE_CHECKING:
    from jobsub.config import Profile

Liveness = Literal["alive", "dead", "unknown"]


class BaseHandle(BaseModel):
    """What an executor needs to find a job's runner again: kept in executor.json, read back as data.

    Frozen (a handle names one runner for good) and strict about its keys (``extra="forbid"``: a key no
    version of the executor wrote is a rewritten record, not something to ignore). Fields added after an
    executor's first release have defaults, so records written before them still read.

    ``record_job_id`` is the job id of the record the handle was read from. It is never read from the file
    (a rewritten record cannot choose it) nor written to it: the service binds it at the parse point
    (``from_record``), and executors check that what the handle names belongs to that job.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    record_job_id: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _bind_record(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key != "record_job_id"}
            job_id = (info.context or {}).get("record_job_id")
            if job_id is not None:
                data["record_job_id"] = job_id
        return data

    @classmethod
    def from_record(cls: type[H], data: Any, record_job_id: str) -> H:
        """Validate executor.json's content as this executor's handle of the job `record_job_id`
        (pydantic's ValidationError when it is not one)."""
        return cls.model_validate(data, context={"record_job_id": record_job_id})

    def record_data(self) -> dict[str, Any]:
        """What executor.json holds: the fields the executor set, under the names earlier versions used."""
        return self.model_dump(mode="json", exclude_unset=True)

    def runner_log(self) -> str | None:
        """Where the runner's own output is (what it said before the job log started), when the handle knows."""
        return None


H = TypeVar("H", bound=BaseHandle)

#: bounds on what status.json's ``executor`` may hold (a rewritten record is refused, not acted on): a
#: hostname is at most 253 characters, Linux pids stay under 2**22, the runner's id is 8 hex digits today
MAX_HOST_CHARS = 253
MAX_PID = 2**22


class RunnerPlace(BaseModel):
    """Where the runtime runs a job: what the runner writes into status.json's ``executor`` (kind "runtime",
    host, pid and runner id when it starts; the job's process group once the command runs), and what
    ``kill_leftovers`` reads to find what a LOST job left behind.

    Read back from a shared bucket: every field is optional (a status written before the runner started
    holds ``{}``), sizes are bounded (a rewritten record is refused with one line before anything acts on it),
    unknown keys are dropped, never acted on, and only the keys the runner set are written back (readers
    of earlier versions read the same object).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str | None = Field(default=None, max_length=32)
    host: str | None = Field(default=None, max_length=MAX_HOST_CHARS)
    pid: int | None = Field(default=None, ge=1, le=MAX_PID)
    #: the runner's id (its claim token): its children carry it as JOBSUB_RUNNER_ID (executors/leftovers.py)
    runner: str | None = Field(default=None, max_length=64)
    #: the process group of the job's command (its runner started it with start_new_session)
    pgid: int | None = Field(default=None, ge=1, le=MAX_PID)

    def record_data(self) -> dict[str, Any]:
        """status.json's ``executor`` object: the keys that were set, as earlier versions wrote them."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class LaunchRequest:
    """Everything an executor needs to start one job's runner.

    ``env`` holds non-secret variables for the runtime (JOBSUB_* tunables). ``secret_env`` holds resolved
    storage credentials and ``--secret-env`` values: an executor passes them to the runner's environment
    only (container environment, a process environment, a 0600 file at most) and never writes them into a
    record, a label, an image layer, a log or a script in clear text. ``repr`` never shows their values.
    """

    job_id: str
    job_uri: str
    profile: Profile
    image: str | None = None
    cpus: float | None = None
    gpus: int = 0
    memory_bytes: int | None = None
    nodes: int = 1
    #: a named instance flavor (resources.flavor): executors with flavors (modelarts) run the job on it
    flavor: str | None = None
    timeout_seconds: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def profile_json(self) -> str:
        """The profile as the runtime reads it (JOBSUB_PROFILE_JSON); profiles never hold a secret."""
        return self.profile.model_dump_json()

    def runtime_env(self, include_secrets: bool = True) -> dict[str, str]:
        """The variables the runner needs: profile, tunables and (unless told not to) the secrets."""
        env = {"JOBSUB_PROFILE_JSON": self.profile_json(), "PYTHONUNBUFFERED": "1", **self.env}
        if include_secrets:
            env.update(self.secret_env)
        return env

    def runtime_argv(self, work_dir: str, python: str = "python") -> list[str]:
        return [python, "-m", "jobsub.runtime", self.job_uri, "--work-dir", work_dir]

    def describe_resources(self) -> str:
        parts = [f"cpus={self.cpus:g}" if self.cpus else "", f"gpus={self.gpus}" if self.gpus else ""]
        if self.memory_bytes:
            parts.append(f"memory={self.memory_bytes}B")
        return " ".join(p for p in parts if p) or "no limits"

    def __str__(self) -> str:  # for logs: never the secrets
        return json.dumps({"job_id": self.job_id, "job_uri": self.job_uri, "image": self.image})


@dataclass(frozen=True)
class Observation:
    """What an executor can tell about a runner.

    ``detail`` is one line a user would want to see: "queued: Resources" while a scheduler holds the job,
    "killed: out of memory (limit 2 GiB)" when the runner died that way. The service turns a "dead" runner
    without a final record into LOST (or FAILED with ``detail`` as the reason when the executor knows why).
    """

    liveness: Liveness
    detail: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an executor can do, declared on its class, so the service and the spec checks ask the executor
    instead of comparing kind strings (a new executor states these once, in its own module)."""

    #: runs one launcher per node for `resources.nodes` > 1
    multi_node: bool = False
    #: enforces `resources.memory` as a limit (the job is killed over it), not only a reservation
    memory_limit: bool = False
    #: can give the job `resources.gpus`
    gpus: bool = False
    #: passes `--secret-env` values to the runner's environment without writing them anywhere
    secret_env: bool = False
    #: the runner is a process on this machine: it starts at once, and nothing is left to clean up after it
    local_process: bool = False


#: The methods every executor defines itself; a class without one fails when it is defined (at import).
REQUIRED_METHODS = ("submit", "poll", "cancel", "describe")


class BaseExecutor(Generic[H]):
    """The executor interface, with defaults for the optional parts (one-by-one poll_many, no-op check,
    handle check and cleanup). Constructed with the profile, which carries the executor's settings.
    Generic in its handle model: ``class DockerExecutor(BaseExecutor[DockerHandle])``.

    Subclasses are checked when they are defined (``__init_subclass__``): a missing method, kind,
    capabilities or handle model fails at import, not when a job first needs it. Pass ``abstract=True`` in
    the class statement for an intermediate base that is not an executor itself.
    """

    #: the name in the registry (config.EXECUTORS), in handles and in `--executor`
    kind: ClassVar[str] = ""
    #: True when the runner inherits this machine's environment and files (~/.aws, AWS_PROFILE): then
    #: storage credentials need not be resolved and passed explicitly.
    shares_client_environment: ClassVar[bool] = False
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the model of this executor's handles (a BaseHandle subclass with ``kind: Literal["<kind>"]``)
    handle_model: ClassVar[type[BaseHandle]]
    #: the options it adds to a profile (``[profiles.X.<kind>]``), None when it has none: the profile's
    #: section is validated with this model when the profile is loaded, and the executor reads it with
    #: ``profile.section(kind, Model)`` in its __init__ (config.Profile; the built-in ones live in
    #: executors/<kind>_settings.py so that loading a profile never imports the executor).
    settings_model: ClassVar[type[BaseModel] | None] = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = [name for name in REQUIRED_METHODS if getattr(cls, name, None) is getattr(BaseExecutor, name)]
        if missing:
            raise TypeError(f"executor {cls.__qualname__} does not define {', '.join(missing)} (see executors/base.py)")
        if not isinstance(cls.kind, str) or not cls.kind:
            raise TypeError(f"executor {cls.__qualname__} needs a class attribute kind = '<name>'")
        if not isinstance(cls.capabilities, Capabilities):
            raise TypeError(f"executor {cls.__qualname__}: capabilities must be a Capabilities(...)")
        model = getattr(cls, "handle_model", None)
        if not (isinstance(model, type) and issubclass(model, BaseHandle) and model is not BaseHandle):
            raise TypeError(
                f"executor {cls.__qualname__} needs a class attribute handle_model = <its BaseHandle subclass> "
                "(see executors/base.py)"
            )
        settings = cls.settings_model
        if settings is not None and not (isinstance(settings, type) and issubclass(settings, BaseModel)):
            raise TypeError(f"executor {cls.__qualname__}: settings_model must be a pydantic model class or None")
        kind_field = model.model_fields.get("kind")
        if kind_field is None or get_args(kind_field.annotation) != (cls.kind,):
            raise TypeError(
                f"executor {cls.__qualname__}: {model.__qualname__} must declare kind: Literal[{cls.kind!r}]"
            )

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def check(self, request: LaunchRequest) -> None:
        """Raise ExecutorUnavailableError (one line, what to fix) before anything is written or uploaded:
        no engine, no image, no GPU runtime, no sbatch, an unreachable address."""
        return None

    def submit(self, request: LaunchRequest) -> H:
        """Start the runner; return its handle (the service stores record_data()). Never blocks on the job."""
        raise NotImplementedError

    def starts_before_record(self, request: LaunchRequest) -> bool:
        """Whether the service starts this runner beside its record writes (jobs/service.py): the engine's
        start and the runner's own start overlap them, and the runner waits for its record
        (runtime/runner.py, wait_for_record). The default starts it after, as every executor once did."""
        return False

    def starts_before_uploads(self, request: LaunchRequest) -> bool:
        """Whether the service may start this (early) runner even before it uploads the code archive, right
        after `check`: only for a submit that uploads no input, and a runner started so is stopped and started
        again after the record when the code upload outlasts half its record wait (jobs/service.py). The
        default keeps the start after the uploads, beside the record writes only."""
        return False

    def abandon(self, handle: H) -> None:
        """A runner started beside the record whose record will not be written (the submit failed, Ctrl-C):
        stop it now. The default cancels it; executors that can remove what they just made override this."""
        self.cancel(handle)

    def verify_handle(self, handle: H, job_id: str) -> None:
        """Raise JobError (one line) when a handle read from the record of job `job_id` names something that
        is not this job's runner, before anything acts on it. The default trusts what validated; executors
        that signal a pid or call a remote address check more."""
        return None

    def poll(self, handle: H) -> Observation:
        """Is the runner behind this handle still there? 'unknown' when this machine cannot tell."""
        raise NotImplementedError

    def poll_many(self, handles: Iterable[H]) -> list[Observation]:
        """Poll several handles (a scheduler answers these in one query; the default asks one by one)."""
        return [self.poll(h) for h in handles]

    def cancel(self, handle: H) -> None:
        """Ask the runner to stop now (the runtime also watches the record's cancel marker)."""
        raise NotImplementedError

    def cleanup(self, handle: H) -> None:
        """Release what the executor holds once the record is final (a stopped container); idempotent."""
        return None

    def describe(self, handle: H) -> str:
        """One line for `jobsub status`: where the job runs (pid and host, container and image, job id)."""
        raise NotImplementedError

    def kill_leftovers(self, handle: H | None, place: RunnerPlace, job_id: str) -> str:
        """After a job turned LOST (its runner is gone without a final state): stop what is left of it and
        say what was done, in one sentence for `jobsub cancel`.

        The default, right for every executor whose runner is a process somewhere: cancel what the handle
        names (a container or a scheduler job left behind; nothing for a local process), then, when the
        runner said it ran on this host, SIGKILL the processes of its recorded process group or carrying
        its runner id whose environment names this job (executors/leftovers.py). An executor that leaves
        other things behind overrides this. `handle` is None when the job has none (never submitted)."""
        from jobsub.executors.leftovers import kill_leftovers

        if handle is not None:
            self.cancel(handle)
        if not place.host:
            return "its runner never said where it ran: nothing was checked"
        here = os.uname().nodename
        if place.host != here:
            return f"its processes ran on {place.host}: run `jobsub cancel {job_id}` there to kill what is left"
        killed = kill_leftovers(place.pgid, job_id, place.runner)
        if killed:
            return f"killed {len(killed)} leftover processes of the job ({', '.join(map(str, killed))})"
        return f"checked {here}: nothing of it is left running"


#: The type the service holds: any checked subclass of BaseExecutor (its handles are the ones it parsed).
Executor = BaseExecutor[Any]
#: The type of a handle where the executor is not known statically.
Handle = BaseHandle
