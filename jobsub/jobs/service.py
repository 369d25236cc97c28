"""JobService: submit, inspect, follow, cancel and collect jobs. The CLI is a thin layer over this.

Everything a job is lives in its record in the object store; the executor is only asked whether the
runner is still there (to turn a silent death into LOST) and to deliver a cancel quickly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jobsub.config import Profile
from jobsub.errors import (
    BucketNotFoundError,
    JobError,
    JobNotFoundError,
    ObjectNotFoundError,
    SourceNotFoundError,
    SpecError,
    StorageError,
)
from jobsub.executors import get_executor
from jobsub.jobs.packaging import pack_code
from jobsub.jobs.records import JobRecord, JobStatus, State, heartbeat_age, now_iso
from jobsub.jobs.spec import JobSpec, check_name
from jobsub.redact import resolved_secrets
from jobsub.storage.base import ObjectStore
from jobsub.transfer import TransferManager, TransferSubscriber
from jobsub.transfer.checksums import cached_sha256
from jobsub.uri import ObjectURI, is_remote

log = logging.getLogger(__name__)

#: A runner that has not written a heartbeat for this long, and whose executor cannot tell, is LOST.
LOST_AFTER_SECONDS = 120.0


@dataclass
class SubmitPlan:
    """What a submit will do; `--dry-run` prints it and stops."""

    job_id: str
    spec: JobSpec
    inputs: dict[str, str]  # name -> URI after upload
    uploads: list[tuple[str, Path, str]] = field(default_factory=list)  # (input name, local path, destination URI)
    outputs: str = ""
    code: dict[str, Any] | None = None
    code_archive: bytes | None = None
    existing: str | None = None  # an earlier job with the same name + idempotency key

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "spec": self.spec.model_dump(mode="json"),
            "inputs": self.inputs,
            "uploads": [{"input": n, "source": str(p), "destination": d} for n, p, d in self.uploads],
            "outputs": self.outputs,
            "code": self.code,
            "existing_job": self.existing,
        }


def new_job_id(name: str) -> str:
    """`<name>-<yyyymmdd-hhmmss>-<4 chars>`: sorts by submit time within a name and reads well in a table."""
    return f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _content_id(path: Path) -> str:
    """A short id of a local file or folder's content (file SHA-256s are cached, so a rerun reads nothing)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        rel = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{cached_sha256(file)}\n".encode())
    return digest.hexdigest()[:16]


def _tail(record: JobRecord, count: int) -> tuple[list[dict[str, Any]], str]:
    """The last `count` log lines (reading chunks from the end, each once) and the key of the newest chunk,
    from which a follower continues."""
    keys = record.chunks_after("")
    lines: list[dict[str, Any]] = []
    for key in reversed(keys):
        if len(lines) >= count:
            break
        lines[:0] = record.read_chunk(key)
    return (lines[-count:] if count else []), (keys[-1] if keys else "")


class JobService:
    def __init__(self, profile: Profile, store: ObjectStore, profile_name: str = "default") -> None:
        self.profile = profile
        self.profile_name = profile_name
        self.store = store
        self.jobs_uri = ObjectURI.parse(profile.jobs_uri).as_prefix()
        self.executor = get_executor(profile.executor)

    def record(self, job_id: str) -> JobRecord:
        if not job_id or "/" in job_id or job_id.startswith(("_", ".")):
            raise JobNotFoundError(f"{job_id!r} is not a job id (see `jobsub jobs`)")
        return JobRecord(self.store, self.jobs_uri, job_id)

    def _internal(self, *parts: str) -> ObjectURI:
        """Objects that are not jobs live under `<jobs uri>_<kind>/`, which `jobs` never lists."""
        return ObjectURI(self.jobs_uri.bucket, self.jobs_uri.key + "/".join(parts))

    # -- submit ------------------------------------------------------------------------------------------
    def plan(
        self,
        spec: JobSpec,
        inputs: dict[str, str] | None = None,
        output: str | None = None,
        idempotency_key: str | None = None,
        base_dir: Path | None = None,
    ) -> SubmitPlan:
        wanted: dict[str, str | None] = {**spec.inputs, **(inputs or {})}
        # inputs the spec does not name are allowed: the program reads them from JOBSUB_INPUT_<NAME>
        for name in wanted:
            try:
                check_name("input", name)
            except ValueError as exc:
                raise SpecError(f"--input {name}=...: {exc}") from None
        self.store.check_bucket(self.jobs_uri.bucket)  # a missing bucket or bad credentials fail before any upload
        self._check_env_values(spec)
        plan = SubmitPlan(job_id=new_job_id(spec.name), spec=spec, inputs={})
        if idempotency_key:
            plan.existing = self._idempotent_job(spec.name, idempotency_key)
        for name, value in wanted.items():
            if value is None or value == "":
                raise SpecError(f"input {name!r} is required: pass --input {name}=PATH_OR_URI")
            if is_remote(value):
                plan.inputs[name] = str(ObjectURI.parse(value))
                continue
            path = Path(value).expanduser()
            if not path.is_absolute() and base_dir is not None and not path.exists():
                path = base_dir / path
            if not path.exists():
                raise SourceNotFoundError(f"input {name}: no such file or folder: {value}")
            path = path.resolve()
            prefix = self._internal("_inputs", f"{name}-{_content_id(path)}").as_prefix()
            dest = prefix.join(path.name) if path.is_file() else prefix
            plan.uploads.append((name, path, str(dest)))
            plan.inputs[name] = str(dest)
        target = output or spec.outputs
        plan.outputs = str(ObjectURI.parse(target).as_prefix()) if target else ""
        if not plan.outputs:
            plan.outputs = JobRecord(self.store, self.jobs_uri, plan.job_id).uri("outputs/")
        if spec.code:
            archive, sha, files = pack_code(Path(spec.code))
            uri = self._internal("_code", f"{sha}.tar.gz")
            plan.code = {"uri": str(uri), "sha256": sha, "files": files, "bytes": len(archive), "folder": spec.code}
            plan.code_archive = archive
        return plan

    def _check_env_values(self, spec: JobSpec) -> None:
        """A spec `env` value equal to a credential would store the secret in job.json: refuse it."""
        known = resolved_secrets()
        for name, value in spec.env.items():
            if value and value in known:
                raise SpecError(
                    f"env.{name} holds one of your credentials and would be stored in the job record; "
                    f"pass it with --secret-env {name} (taken from your shell, never stored)"
                )

    def _ensure_code(self, plan: SubmitPlan, on_message: Callable[[str], None]) -> None:
        """Upload the code archive unless the store holds exactly these bytes (an archive replaced in the
        bucket is uploaded again: the runtime would refuse it)."""
        assert plan.code is not None and plan.code_archive is not None
        uri = ObjectURI.parse(plan.code["uri"])
        info = self.store.head(uri.bucket, uri.key)
        if info is not None:
            same = info.size == len(plan.code_archive) and (
                info.etag.strip('"') == hashlib.md5(plan.code_archive).hexdigest()
                or hashlib.sha256(self.store.get(uri.bucket, uri.key)).hexdigest() == plan.code["sha256"]
            )
            if same:
                on_message(f"code {plan.code['sha256'][:12]} already uploaded")
                return
            on_message(f"the stored code archive {uri} does not match its SHA-256; uploading it again")
        else:
            on_message(f"uploading code {plan.code['folder']} ({plan.code['files']} files) -> {uri}")
        self.store.put(uri.bucket, uri.key, plan.code_archive)

    def submit(
        self,
        plan: SubmitPlan,
        subscribers: list[TransferSubscriber] | None = None,
        idempotency_key: str | None = None,
        on_message: Callable[[str], None] = lambda _: None,
    ) -> tuple[str, bool]:
        """Upload what the plan needs, write the record and start the runner. (job id, created?)"""
        if plan.existing:
            return plan.existing, False
        for name, path, dest in plan.uploads:
            on_message(f"uploading input {name}: {path} -> {dest}")
            target = ObjectURI.parse(dest)
            TransferManager(self.store, subscribers=subscribers).upload([path], target)
        if plan.code and plan.code_archive is not None:
            self._ensure_code(plan, on_message)
        record = self.record(plan.job_id)
        spec = plan.spec.model_copy(update={"inputs": plan.inputs, "outputs": plan.outputs})
        record.put_json(
            "job.json",
            {
                "id": plan.job_id,
                "spec": spec.model_dump(mode="json"),
                "inputs": plan.inputs,
                "outputs": plan.outputs,
                "code": plan.code,
                "created": now_iso(),
                "submitted_from": socket.gethostname(),
                "profile": self.profile_name,
                "executor": self.executor.kind,
            },
        )
        record.write_status(JobStatus())
        if idempotency_key:
            key = self._idempotency_uri(plan.spec.name, idempotency_key)
            self.store.put(key.bucket, key.key, plan.job_id.encode())
        handle = self.executor.submit(plan.job_id, record.uri(), self.profile.model_dump_json())
        record.put_json("executor.json", handle)
        return plan.job_id, True

    def _idempotency_uri(self, name: str, key: str) -> ObjectURI:
        digest = hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()[:32]
        return self._internal("_idempotency", digest)

    def _idempotent_job(self, name: str, key: str) -> str | None:
        uri = self._idempotency_uri(name, key)
        try:
            job_id = self.store.get(uri.bucket, uri.key).decode().strip()
        except (ObjectNotFoundError, BucketNotFoundError):
            return None
        return job_id if self.record(job_id).exists() else None

    # -- inspect ------------------------------------------------------------------------------------------
    def executor_handle(self, record: JobRecord) -> dict[str, Any]:
        try:
            return dict(record.get_json("executor.json"))
        except JobNotFoundError:
            return {}

    def status(self, job_id: str) -> JobStatus:
        """The job's status, turned LOST (and written so) when its runner is gone without a final state."""
        record = self.record(job_id)
        status = record.read_status()
        if status.state.final:
            return status
        handle = self.executor_handle(record)
        liveness = self.executor.poll(handle) if handle else "unknown"
        age = heartbeat_age(status)
        if liveness == "dead" or (liveness == "unknown" and age is not None and age > LOST_AFTER_SECONDS):
            status = record.read_status()  # the runner may have finished between the two reads
            if not status.state.final:
                status.state = State.LOST
                status.finished = now_iso()
                status.reason = (
                    "the runner process is gone without a final state"
                    if liveness == "dead"
                    else f"no heartbeat for {age:.0f}s"
                )
                record.write_status(status)
        return status

    def describe(self, job_id: str) -> dict[str, Any]:
        record = self.record(job_id)
        status = self.status(job_id)
        job = record.read_job()
        handle = self.executor_handle(record)
        return {
            "id": job_id,
            "name": job["spec"]["name"],
            "status": status.model_dump(mode="json"),
            "duration_seconds": status.duration(),
            "executor": self.executor.describe(handle) if handle else "not started",
            "record": record.uri(),
            "outputs": job["outputs"],
            "inputs": job["inputs"],
            "command": job["spec"]["command"],
        }

    def list_jobs(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        self.store.check_bucket(self.jobs_uri.bucket)
        try:
            listing = self.store.list(self.jobs_uri.bucket, self.jobs_uri.key, "/")
        except BucketNotFoundError:  # a local store creates its buckets on first write: no jobs yet
            return []
        ids = sorted(
            (p[len(self.jobs_uri.key) :].rstrip("/") for p in listing.prefixes),
            key=lambda i: i.rsplit("-", 3)[-3:],
            reverse=True,
        )
        rows = []
        for job_id in ids:
            if job_id.startswith("_"):
                continue
            try:
                status = self.status(job_id)
            except (JobNotFoundError, StorageError, ValueError):
                continue
            if state and status.state.value != state.upper():
                continue
            rows.append(
                {
                    "id": job_id,
                    "name": job_id.rsplit("-", 3)[0],
                    "state": status.state.value,
                    "created": status.created,
                    "started": status.started,
                    "duration_seconds": status.duration(),
                    "exit_code": status.exit_code,
                }
            )
            if len(rows) >= limit:
                break
        return rows

    def cancel(self, job_id: str) -> JobStatus:
        record = self.record(job_id)
        status = self.status(job_id)
        if status.state.final:
            return status
        record.request_cancel()
        handle = self.executor_handle(record)
        if handle:
            self.executor.cancel(handle)
        return status

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> JobStatus:
        end = time.monotonic() + timeout if timeout else None
        while True:
            status = self.status(job_id)
            if status.state.final:
                return status
            if end and time.monotonic() > end:
                raise JobError(f"job {job_id} still {status.state.value} after {timeout:g}s")
            time.sleep(poll)

    # -- logs ---------------------------------------------------------------------------------------------
    def log_lines(self, job_id: str, tail: int | None = None) -> list[dict[str, Any]]:
        record = self.record(job_id)
        record.read_status()  # JobNotFoundError for an unknown id
        if tail is None:
            return [line for key in record.chunks_after("") for line in record.read_chunk(key)]
        return _tail(record, tail)[0]

    def follow(
        self, job_id: str, tail: int | None = None, poll: float = 0.3, on_error: Callable[[str], None] | None = None
    ) -> Iterator[dict[str, Any] | JobStatus]:
        """Yield log lines in order as they arrive, then the final JobStatus.

        A chunk is yielded only once it was read whole, and the position only moves past it then: a storage
        error mid-way costs a retry, never a lost or repeated line.
        """
        record = self.record(job_id)
        record.read_status()
        last_key = ""
        if tail is not None:
            lines, last_key = _tail(record, tail)
            yield from lines
        finished = False
        failures = 0
        status: JobStatus | None = None
        while True:
            try:
                for key in record.chunks_after(last_key):
                    lines = record.read_chunk(key)
                    yield from lines
                    last_key = key
                if finished and status is not None:
                    yield status
                    return
                status = self.status(job_id)
                failures = 0
            except StorageError as exc:
                failures += 1
                if not exc.transient and failures > 3:
                    raise
                if on_error:
                    on_error(f"storage error while following ({exc}); retrying")
                time.sleep(min(5.0, 0.5 * failures))
                continue
            if status.state.final:
                finished = True  # one more pass: the runner writes its last chunk before the final status
                continue
            time.sleep(poll)

    # -- results ------------------------------------------------------------------------------------------
    def outputs_uri(self, job_id: str) -> ObjectURI:
        return ObjectURI.parse(self.record(job_id).read_job()["outputs"]).as_prefix()

    def results(self, job_id: str) -> dict[str, Any]:
        """Final metrics (the program's metrics.json, else its last metrics line), plots and outputs by URI."""
        status = self.status(job_id)
        record = self.record(job_id)
        uri = self.outputs_uri(job_id)
        objects = list(self.store.iter_objects(uri.bucket, uri.key))
        metrics: dict[str, Any] = {}
        source = None
        warnings: list[str] = []
        if any(o.key == uri.key + "metrics.json" for o in objects):
            try:
                loaded = json.loads(self.store.get(uri.bucket, uri.key + "metrics.json"))
                if not isinstance(loaded, dict):
                    raise ValueError(f"a JSON {type(loaded).__name__}, not an object")
                metrics, source = loaded, str(uri.join("metrics.json"))
            except ValueError as exc:
                warnings.append(f"{uri.join('metrics.json')} is not a JSON object of metrics ({exc}); ignored")
        if not metrics:
            rows = record.read_metrics()
            if rows:
                metrics, source = rows[-1], record.uri("metrics.jsonl") + " (last line)"
        files: list[dict[str, Any]] = [
            {"uri": f"s3://{uri.bucket}/{o.key}", "size": o.size}
            for o in objects
            if "/checkpoint-" not in o.key and "/model/" not in o.key
        ]
        return {
            "id": job_id,
            "state": status.state.value,
            "exit_code": status.exit_code,
            "metrics": metrics,
            "metrics_source": source,
            "plots": [f["uri"] for f in files if f["uri"].lower().endswith((".png", ".svg", ".jpg"))],
            "outputs": str(uri),
            "files": files,
            "warnings": warnings,
        }
