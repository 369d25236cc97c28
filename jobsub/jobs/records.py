"""Job records in the object store, so any machine with the profile can list, follow and collect a job.

<jobs uri>/<job id>/job.json        resolved spec, inputs, outputs URI (no secrets)
                   /status.json     state, timestamps, exit code, reason, executor handle, heartbeat
                   /claim.json      the one runner that runs the job (written with If-None-Match: *)
                   /logs/NNNNNNNN-RUNNER.jsonl   ordered, immutable chunks of {"t", "s", "l"} lines; the
                                    runner's own id in the name, so two runners can never overwrite a chunk
                   /metrics.jsonl   the JSON metric lines the program appended
                   /outputs/        what the program wrote (default outputs location)
                   /cancel          present when someone asked for the job to stop

The documents themselves (JobDocument, JobStatus, ...) are models in jobs/models.py; this module is the one
place that turns them into JSON and back.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jobsub.errors import JobNotFoundError, ObjectNotFoundError, RecordFormatError
from jobsub.executors.base import BaseHandle
from jobsub.jobs.models import (
    JOB_FORMAT_VERSION,
    MAX_TRANSITIONS,
    JobDocument,
    JobStatus,
    LogLine,
    RunnerClaim,
    State,
    StatusTransition,
    now_iso,
)

__all__ = ["JobDocument", "JobRecord", "JobStatus", "State", "check_format_version", "heartbeat_age", "now_iso"]
from jobsub.storage.base import ObjectStore
from jobsub.uri import ObjectURI

#: a record model (`JobRecord._validated`)
M = TypeVar("M", bound=BaseModel)


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
        """status.json parsed into its model; one that does not validate (a rewritten record: a runner place
        out of bounds, a state no jobsub wrote) is one line naming the field, not a traceback."""
        return self._validated(JobStatus, self.get_json("status.json"), "status.json", "a job status")

    def write_status(self, status: JobStatus) -> None:
        last = status.transitions[-1].state if status.transitions else None
        if last != status.state and len(status.transitions) < MAX_TRANSITIONS:
            status.transitions.append(StatusTransition(state=status.state, at=now_iso(), reason=status.reason))
        self.put_json("status.json", status.model_dump(mode="json"))

    def read_document(self, max_bytes: int | None = None) -> JobDocument:
        """job.json parsed once into its model; a record that does not validate is one line naming it.
        With `max_bytes`, a larger job.json is refused before it is read (one HEAD more)."""
        if max_bytes is not None:
            info = self.store.head(self.bucket, self.key("job.json"))
            if info is not None and info.size > max_bytes:
                raise RecordFormatError(f"{self.uri('job.json')} is {info.size} bytes; not read (limit {max_bytes})")
        try:
            data = self.get_json("job.json")
        except ValueError:  # not JSON, not UTF-8: written by something else, or damaged
            raise RecordFormatError(f"{self.uri('job.json')} is not JSON (not a job record jobsub can read)") from None
        check_format_version(data, self.uri("job.json"))
        return self._validated(JobDocument, data, "job.json", "a job record")

    def _validated(self, model: type[M], data: Any, name: str, what: str) -> M:
        """`data` (the record's file `name`) as `model`; one that does not validate is one line naming the
        first field, not a traceback."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top)"
            raise RecordFormatError(f"{self.uri(name)}: {where}: {err['msg']} (not {what} jobsub can read)") from None

    def write_document(self, document: JobDocument) -> None:
        self.put_json("job.json", document.model_dump(mode="json"))

    def write_handle(self, handle: BaseHandle) -> None:
        """executor.json: the executor's handle, under the same keys as ever (old readers still read it)."""
        self.put_json("executor.json", handle.record_data())

    def read_handle_data(self) -> dict[str, Any] | None:
        """executor.json as a JSON object, or None before the executor took the job. Only the service parses
        it (with the model of the executor its kind names); here it is bounded and must be an object."""
        info = self.store.head(self.bucket, self.key("executor.json"))
        if info is None:
            return None
        if info.size > MAX_HANDLE_BYTES:
            raise RecordFormatError(
                f"{self.uri('executor.json')} is {info.size} bytes; not read (limit {MAX_HANDLE_BYTES})"
            )
        try:
            data = json.loads(self.store.get(self.bucket, self.key("executor.json")))
        except ObjectNotFoundError:
            return None
        except ValueError:  # not JSON, not UTF-8
            raise RecordFormatError(f"{self.uri('executor.json')} is not JSON (not an executor handle)") from None
        if not isinstance(data, dict):
            raise RecordFormatError(f"{self.uri('executor.json')} is not a JSON object (not an executor handle)")
        return data

    def claim(self, claim: RunnerClaim) -> bool:
        """Create claim.json only if no runner claimed the job before (a conditional write)."""
        return self.store.put_if_absent(self.bucket, self.key("claim.json"), claim.model_dump_json().encode())

    def write_claim(self, claim: RunnerClaim) -> None:
        """Replace claim.json (the lease, where the store cannot write conditionally)."""
        self.put_json("claim.json", claim.model_dump(mode="json"))

    def read_claim(self) -> RunnerClaim | None:
        """None when no runner claimed the job; a claim.json that is not one (bad JSON, wrong types, too large)
        is a claim by nobody this jobsub knows: it blocks a second runner instead of crashing it."""
        info = self.store.head(self.bucket, self.key("claim.json"))
        if info is None:
            return None
        if info.size > MAX_CLAIM_BYTES:
            return RunnerClaim()
        try:
            return RunnerClaim.model_validate_json(self.store.get(self.bucket, self.key("claim.json")))
        except ObjectNotFoundError:
            return None
        except ValidationError:
            return RunnerClaim()

    def cancel_requested(self) -> bool:
        return self.store.head(self.bucket, self.key("cancel")) is not None

    def request_cancel(self) -> None:
        self.store.put(self.bucket, self.key("cancel"), now_iso().encode())

    # -- logs --------------------------------------------------------------------------------------------
    def chunk_key(self, number: int, writer: str = "") -> str:
        return self.key(f"logs/{number:08d}{'-' + writer if writer else ''}.jsonl")

    def write_chunk(self, number: int, lines: list[LogLine], writer: str = "") -> None:
        body = "".join(line.model_dump_json(by_alias=True) + "\n" for line in lines).encode()
        self.store.put(self.bucket, self.chunk_key(number, writer), body)

    @staticmethod
    def chunk_number(key: str) -> int:
        return int(key.rsplit("/", 1)[1][:8])

    def chunks_after(self, last_key: str) -> list[str]:
        return [o.key for o in self.store.iter_objects(self.bucket, self.key("logs/"), start_after=last_key)]

    def read_chunk(self, key: str) -> list[LogLine]:
        """The chunk's lines. A chunk is data from a shared bucket: a line that is not such
        an object (not JSON, not UTF-8, a bare number) is shown as its text, cut to MAX_LOG_LINE characters,
        instead of stopping every reader of the log with a traceback."""
        text = self.store.get(self.bucket, key).decode("utf-8", errors="replace")
        return [_log_line(raw) for raw in text.splitlines() if raw]

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


#: claim.json is four short fields; a larger one is not read
MAX_CLAIM_BYTES = 64 * 1024
#: executor.json is a few hundred bytes; a larger one is not a handle jobsub wrote
MAX_HANDLE_BYTES = 64 * 1024

#: The longest log line shown from a chunk that is not jobsub's (a runaway line stays readable).
MAX_LOG_LINE = 64 * 1024


def _log_line(raw: str) -> LogLine:
    try:
        line = json.loads(raw)
    except ValueError:
        line = None
    if isinstance(line, dict):
        text, stamp, stream = line.get("l", ""), line.get("t", 0), line.get("s", "?")
        if isinstance(text, str) and isinstance(stamp, int | float):
            when = float(stamp) if math.isfinite(stamp) else 0.0  # Infinity parses; no clock shows it
            return LogLine(time=when, stream=str(stream)[:64], text=text)
    return LogLine(time=0.0, stream="?", text=raw[:MAX_LOG_LINE])


def check_format_version(data: Any, where: str) -> None:
    """Records without `format_version` are version 1; a newer one than this jobsub knows is refused by name."""
    if not isinstance(data, dict):
        raise RecordFormatError(f"{where}: a JSON {type(data).__name__}, not a job record")
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordFormatError(f"{where}: format_version {version!r} is not a positive integer")
    if version > JOB_FORMAT_VERSION:
        raise RecordFormatError(
            f"{where} is job record format version {version}; this jobsub reads up to version "
            f"{JOB_FORMAT_VERSION}: upgrade jobsub to read it"
        )


def heartbeat_age(status: JobStatus) -> float | None:
    return time.time() - status.heartbeat if status.heartbeat else None
