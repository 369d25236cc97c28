"""The documents of a job as typed models: what job.json holds, and what the service hands out.

Why: a job record is read by the CLI, the runtime, the Python API and (soon) the web view, on machines
running different jobsub versions. Parsing it once into a model, with a format version, means every reader
sees the same fields with the same types, and a record written by a newer jobsub fails with one line that
names both versions instead of a KeyError somewhere deep in a renderer.

Only jobs/records.py turns these into JSON and back; everything else passes models.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
)

from jobsub.costs import Estimate
from jobsub.executors.base import RunnerPlace
from jobsub.jobs.spec import JobSpec

#: The job.json format this jobsub writes and the newest it reads. Records without a version are version 1
#: (everything written before the field existed); bump this when a field changes meaning or is removed.
JOB_FORMAT_VERSION = 1


class State(str, Enum):
    QUEUED = "QUEUED"
    STAGING = "STAGING"
    RUNNING = "RUNNING"
    UPLOADING = "UPLOADING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    LOST = "LOST"

    @property
    def final(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.LOST)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: a status record keeps at most this many transitions (a bound on what a reader of the record must hold)
MAX_TRANSITIONS = 64


class StatusTransition(BaseModel):
    """One change of state with its time and reason: the web view's timeline (QUEUED -> ... -> final)."""

    state: State
    at: str
    reason: str | None = None


class StatusFields(BaseModel):
    """What a job's status says about the job itself: state, times, exit code, reason and timeline. JobStatus
    (status.json) adds where the runner runs; the web view's StatusPage adds the duration and finality. One
    declaration, so the page cannot drift from the record."""

    state: State = State.QUEUED
    created: str = Field(default_factory=now_iso)
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    attempt: int = 0
    heartbeat: float | None = None
    #: each change of state, appended by JobRecord.write_status; records written before it have none and load
    transitions: list[StatusTransition] = Field(default_factory=list, max_length=MAX_TRANSITIONS)


class JobStatus(StatusFields):
    #: where the runtime runs the job (written by the runner; read by `cancel` of a LOST job)
    executor: RunnerPlace = Field(default_factory=RunnerPlace)

    @field_serializer("executor")
    def _dump_place(self, place: RunnerPlace) -> dict[str, Any]:
        return place.record_data()  # the keys the runner set, as status.json always held them

    def duration(self) -> float | None:
        if not self.started:
            return None
        end = datetime.fromisoformat(self.finished) if self.finished else datetime.now(timezone.utc)
        return (end - datetime.fromisoformat(self.started)).total_seconds()

    def cli_exit_code(self) -> int:
        """What `logs -f` / `submit --follow` exit with: the job's own code, 130 for cancelled, 1 for lost."""
        if self.state == State.SUCCEEDED:
            return 0
        if self.state == State.CANCELLED:
            return 130
        if self.exit_code is not None and self.exit_code < 0:  # killed by signal N (records before 128+N)
            return 128 - self.exit_code
        return self.exit_code if self.exit_code not in (None, 0) else 1


class LogLine(BaseModel):
    """One line of a job's log. The chunks hold it as {"t": unix time, "s": stream, "l": text} (short keys:
    a log is mostly these); the fields have names that say what they are."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    time: float = Field(default=0.0, validation_alias="t", serialization_alias="t")
    stream: str = Field(default="?", validation_alias="s", serialization_alias="s")
    text: str = Field(default="", validation_alias="l", serialization_alias="l")

    def stamp(self) -> str:
        """When it was printed, local time to the millisecond; a time no clock shows (a chunk written by
        something else) is question marks, not an error."""
        try:
            return datetime.fromtimestamp(self.time).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        except (ValueError, OverflowError, OSError):
            return "????-??-?? ??:??:??.???"


class RunnerClaim(BaseModel):
    """claim.json: the one runner that runs the job. Read from a shared bucket, so every field has a default:
    a claim that cannot be read still counts as someone else's (its token matches no runner's)."""

    model_config = ConfigDict(extra="allow")

    host: str = "?"
    pid: int | None = None
    token: str = ""
    claimed: str = ""

    def holder(self) -> str:
        """Who holds it, for the one line a second runner exits with."""
        return f"{self.host} pid {self.pid if self.pid is not None else '?'}"


class CodeRef(BaseModel):
    """The packed code folder a job runs in (uploaded once per content hash)."""

    model_config = ConfigDict(extra="allow")

    uri: str
    sha256: str
    files: int = 0
    bytes: int = 0
    folder: str = ""


class CostRecord(BaseModel):
    """What job.json keeps about cost: enough for the runtime to stop at the limit and for `status` to bill."""

    model_config = ConfigDict(extra="allow")

    currency: str = "USD"
    table: str = "none"
    source: str | None = None
    rate_per_hour: float = 0.0
    storage_gib_month: float = 0.0
    max_cost: float | None = None
    estimate: Estimate | None = None

    @field_validator("estimate", mode="before")
    @classmethod
    def _estimate_or_none(cls, value: Any) -> Any:
        """The estimate is what submit said, never needed to run or bill a job: one that does not read (an
        empty ``{}`` some records hold, a hostile or half-written value) is shown as no estimate rather than
        making the whole record unreadable."""
        if value is None or isinstance(value, Estimate):
            return value
        try:
            return Estimate.model_validate(value)
        except ValidationError:
            return None


class JobDocument(BaseModel):
    """job.json: the resolved spec, where inputs and outputs live, the code archive, who submitted it.

    ``extra="allow"``: a field added by a newer jobsub within the same format version survives a rewrite.
    Units (the spec's timeout and memory) are parsed once here, at load.
    """

    model_config = ConfigDict(extra="allow")

    format_version: int = JOB_FORMAT_VERSION
    id: str
    spec: JobSpec
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: str
    code: CodeRef | None = None
    created: str = ""
    submitted_from: str = ""
    profile: str = ""
    executor: str = ""
    cost: CostRecord | None = None
    secret_env: list[str] = Field(default_factory=list)  # names only: values never reach a record

    @property
    def timeout_seconds(self) -> float | None:
        return self.spec.timeout_seconds

    @property
    def memory_bytes(self) -> int | None:
        return self.spec.resources.memory_bytes


class JobCost(BaseModel):
    """The actual cost of a job so far: duration x its rate, plus (when counted) a month of what it keeps."""

    currency: str = "USD"
    table: str = "none"
    rate_per_hour: float = 0.0
    compute: float = 0.0
    max_cost: float | None = None
    stored_bytes: int | None = None
    storage_month: float | None = None

    @model_serializer(mode="wrap")
    def _storage_only_when_counted(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`jobs` does not count storage (one listing per job would be slow): the keys are absent, not null."""
        data: dict[str, Any] = handler(self)
        if self.stored_bytes is None:
            data.pop("stored_bytes", None)
            data.pop("storage_month", None)
        return data

    def describe(self) -> str:
        from jobsub.costs import money

        text = f"{money(self.compute, self.currency)} compute at {self.rate_per_hour:g}/h"
        if self.storage_month is not None:
            text += f" + {money(self.storage_month, self.currency)}/month storage ({self.stored_bytes} B kept)"
        return text + f" [{self.table}]"


def job_name(job_id: str) -> str:
    """The name part of a job id (`<name>-<yyyymmdd>-<hhmmss>-<4 chars>`): the template or --name it ran as."""
    return job_id.rsplit("-", 3)[0]


_Row = TypeVar("_Row", bound="JobRow")


class JobRow(BaseModel):
    """One line of `jobsub jobs` / `Client.jobs()`; the web view's rows (web/data.py WebRow) extend it.

    Built from a job's status in one place, `from_status`, so the CLI, the API and the web view list the
    same fields derived the same way (the name from the id, the duration from the status's times).
    """

    id: str
    name: str
    state: State
    created: str
    started: str | None = None
    duration_seconds: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    cost: JobCost | None = None
    #: whether the cost was asked for (a row without it has no "cost" key in JSON, one that failed has null)
    costed: bool = Field(default=False, exclude=True)

    @classmethod
    def from_status(cls: type[_Row], job_id: str, status: JobStatus, **fields: Any) -> _Row:
        """The row of job `job_id` in `status`; `fields` sets what a subclass or caller adds (cost, ...)."""
        return cls(
            id=job_id,
            name=job_name(job_id),
            state=status.state,
            created=status.created,
            started=status.started,
            duration_seconds=status.duration(),
            exit_code=status.exit_code,
            reason=status.reason,
            **fields,
        )

    @model_serializer(mode="wrap")
    def _cost_only_when_asked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.costed:
            data.pop("cost", None)
        return data


class JobInfo(BaseModel):
    """`jobsub status`: the status plus where the job runs, its record, inputs, outputs and cost."""

    id: str
    name: str
    status: JobStatus
    duration_seconds: float | None = None
    executor: str
    record: str
    outputs: str
    inputs: dict[str, str]
    command: str
    cost: JobCost


class OutputFile(BaseModel):
    uri: str
    size: int


class Results(BaseModel):
    """`jobsub results`: final metrics (metrics.json, else the last metrics line), plots and outputs by URI."""

    id: str
    state: State
    exit_code: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    metrics_source: str | None = None
    plots: list[str] = Field(default_factory=list)
    outputs: str
    files: list[OutputFile] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    cost: JobCost | None = None


class BillJob(BaseModel):
    """One job in `jobsub cost`: its id, state and duration beside its cost (flat in JSON, as before)."""

    id: str
    state: State
    duration_seconds: float | None = None
    cost: JobCost

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The --json shape is a public contract: the cost's keys sit beside the id, not under "cost"."""
        data: dict[str, Any] = handler(self)
        cost = data.pop("cost")
        return {**data, **cost}


class StorageBill(BaseModel):
    """What is kept under one prefix and what a month of it costs."""

    prefix: str
    objects: int
    bytes: int
    per_month: float


class Bill(BaseModel):
    """`jobsub cost` / `Client.cost()`: compute of the jobs started in a period plus a month of storage."""

    currency: str
    table: str
    source: str = ""
    since_seconds: float | None = None
    jobs: list[BillJob] = Field(default_factory=list)
    compute: float = 0.0
    storage: StorageBill
    total: float = 0.0
