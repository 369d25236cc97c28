"""Job records in the object store, so any machine with the profile can list, follow and collect a job.

<jobs uri>/<job id>/job.json        resolved spec, inputs, outputs URI (no secrets)
                   /status.json     state, timestamps, exit code, reason, executor handle, heartbeat
                   /claim.json      the one runner that runs the job (written with If-None-Match: *)
                   /logs/NNNNNNNN-RUNNER.jsonl   ordered, immutable chunks of {"t", "s", "l"} lines; the
                                    runner's own id in the name, so two runners can never overwrite a chunk
                   /metrics.jsonl   the JSON metric lines the program appended
                   /outputs/        what the program wrote (default outputs location)
                   /cancel          present when someone asked for the job to stop
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from jobsub.errors import JobNotFoundError, ObjectNotFoundError
from jobsub.storage.base import ObjectStore
from jobsub.uri import ObjectURI


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


#: a status record keeps at most this many transitions (a bound on what a reader of the record must hold)
MAX_TRANSITIONS = 64


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JobStatus(BaseModel):
    state: State = State.QUEUED
    created: str = Field(default_factory=now_iso)
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    attempt: int = 0
    heartbeat: float | None = None
    executor: dict[str, Any] = Field(default_factory=dict)
    #: each change of state as {"state", "at", "reason"}, appended by JobRecord.write_status (the web view's
    #: timeline); records written before it have none and still load
    transitions: list[dict[str, Any]] = Field(default_factory=list)

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


class JobRecord:
    """Reads and writes one job's objects."""

    def __init__(self, store: ObjectStore, jobs_uri: ObjectURI, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.root = jobs_uri.as_prefix().join(job_id).as_prefix()

    @property
    def bucket(self) -> str:
        return self.root.bucket

    def key(self, name: str) -> str:
        return self.root.key + name

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def put_json(self, name: str, data: Any) -> None:
        self.store.put(self.bucket, self.key(name), json.dumps(data, indent=1, default=str).encode())

    def get_json(self, name: str) -> Any:
        try:
            return json.loads(self.store.get(self.bucket, self.key(name)))
        except ObjectNotFoundError:
            raise JobNotFoundError(f"no job {self.job_id!r} at {self.root} (see `jobsub jobs`)") from None

    def exists(self) -> bool:
        return self.store.head(self.bucket, self.key("status.json")) is not None

    def read_status(self) -> JobStatus:
        return JobStatus.model_validate(self.get_json("status.json"))

    def write_status(self, status: JobStatus) -> None:
        last = status.transitions[-1].get("state") if status.transitions else None
        if last != status.state.value and len(status.transitions) < MAX_TRANSITIONS:
            status.transitions.append({"state": status.state.value, "at": now_iso(), "reason": status.reason})
        self.put_json("status.json", status.model_dump(mode="json"))

    def read_job(self) -> dict[str, Any]:
        return self.get_json("job.json")

    def claim(self, data: dict[str, Any]) -> bool:
        """Create claim.json only if no runner claimed the job before (a conditional write)."""
        return self.store.put_if_absent(self.bucket, self.key("claim.json"), json.dumps(data).encode())

    def read_claim(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.store.get(self.bucket, self.key("claim.json"))))
        except ObjectNotFoundError:
            return None

    def cancel_requested(self) -> bool:
        return self.store.head(self.bucket, self.key("cancel")) is not None

    def request_cancel(self) -> None:
        self.store.put(self.bucket, self.key("cancel"), now_iso().encode())

    # -- logs --------------------------------------------------------------------------------------------
    def chunk_key(self, number: int, writer: str = "") -> str:
        return self.key(f"logs/{number:08d}{'-' + writer if writer else ''}.jsonl")

    def write_chunk(self, number: int, lines: list[dict[str, Any]], writer: str = "") -> None:
        body = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        self.store.put(self.bucket, self.chunk_key(number, writer), body)

    @staticmethod
    def chunk_number(key: str) -> int:
        return int(key.rsplit("/", 1)[1][:8])

    def chunks_after(self, last_key: str) -> list[str]:
        return [o.key for o in self.store.iter_objects(self.bucket, self.key("logs/"), start_after=last_key)]

    def read_chunk(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.store.get(self.bucket, key).decode().splitlines() if line]

    def read_metrics(self) -> list[dict[str, Any]]:
        try:
            text = self.store.get(self.bucket, self.key("metrics.jsonl")).decode("utf-8", errors="replace")
        except ObjectNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):  # a stray number or list is not a metrics row
                rows.append(row)
        return rows


def heartbeat_age(status: JobStatus) -> float | None:
    return time.time() - status.heartbeat if status.heartbeat else None
