"""JobService: submit, inspect, follow, cancel and collect jobs. The CLI is a thin layer over this.

Everything a job is lives in its record in the object store; the executor is only asked whether the
runner is still there (to turn a silent death into LOST) and to deliver a cancel quickly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from jobsub.config import Profile
from jobsub.costs import Estimate
from jobsub.errors import (
    BucketNotFoundError,
    JobError,
    JobNotFoundError,
    JobsubError,
    JobTimeoutError,
    ObjectNotFoundError,
    RecordFormatError,
    SourceNotFoundError,
    SpecError,
    StorageError,
)
from jobsub.executors import EXECUTORS, BaseHandle, Executor, LaunchRequest, Observation, get_executor
from jobsub.jobs import billing
from jobsub.jobs.models import CodeRef, JobDocument, JobInfo, JobRow, LogLine, OutputFile, Results, job_name
from jobsub.jobs.packaging import pack_code
from jobsub.jobs.plan_document import PlanDocument, PlannedUpload
from jobsub.jobs.records import JobRecord, JobStatus, State, heartbeat_age, now_iso
from jobsub.jobs.spec import JobSpec, check_name, nodes_problem
from jobsub.jobs.spec_guard import check_output_bucket
from jobsub.jobs.tunables import runtime_tunables
from jobsub.redact import holds_credential, resolved_secrets
from jobsub.storage.base import ObjectStore
from jobsub.uri import ObjectURI, is_remote

if TYPE_CHECKING:  # the transfer engine is imported where a submit uploads: `logs -f`, status, cancel skip it
    from jobsub.transfer import TransferSubscriber, UploadPlan

log = logging.getLogger(__name__)

#: A runner that has not written STAGING this long after submit (and is not reported alive) did not start.
RUNNER_START_SECONDS = float(os.environ.get("JOBSUB_RUNNER_START_SECONDS", "60"))
#: A runner that has not written a heartbeat for this long, and whose executor cannot tell, is LOST.
LOST_AFTER_SECONDS = 120.0
#: how long after `plan()` its input upload plans are carried out as made (then each file is planned again)
UPLOAD_PLAN_FRESH_SECONDS = 60.0
#: how long a failed submit waits for its runner's start to return before stopping that runner
LAUNCH_ABANDON_SECONDS = 60.0
#: `follow` lists a job's log chunks this often while it waits for the command's first line of output,
#: for at most FIRST_OUTPUT_WINDOW seconds after it starts and again after the runner is first seen up
#: (the status, which asks the executor, stays at the ordinary poll). The first line is what a user waits
#: for after `submit`; the cost is LIST requests: 600 a minute instead of 200 in that window, at most
#: 2 x 15 s x (10 - 3.3) = 200 more per followed job.
FIRST_OUTPUT_POLL = 0.1
FIRST_OUTPUT_WINDOW = 15.0
#: `follow` reads the status record from its first pass, but asks the executor (docker inspect, squeue:
#: on docker the SDK's import and client are ~0.1 s of CPU) only from this many seconds after it started:
#: a follower started by `submit` would otherwise spend that on the two cores the runner is starting on,
#: just before the command's first line. A runner that died at once is said LOST at most this much later.
EXECUTOR_POLL_DELAY = 1.0


@dataclass
class SubmitPlan:
    """What a submit will do; `--dry-run` prints it and stops."""

    job_id: str
    spec: JobSpec
    inputs: dict[str, str]  # name -> URI after upload
    uploads: list[tuple[str, Path, str]] = field(default_factory=list)  # (input name, local path, destination URI)
    #: each upload's transfer plan (what the estimate counts), carried out by submit where still current
    upload_plans: list[UploadPlan] = field(default_factory=list)
    #: when the plans were made (time.monotonic): a submit long after its plan asks the server again
    planned_at: float = 0.0
    outputs: str = ""
    code: CodeRef | None = None
    code_archive: bytes | None = None
    existing: str | None = None  # an earlier job with the same name + idempotency key
    estimate: Estimate | None = None  # what it will cost (jobsub/costs.py), from the profile's price table
    max_cost: float | None = None  # --max-cost: refused at submit above it, stopped by the runtime at it
    #: the spec's units, parsed once here for the estimate and the executor
    timeout_seconds: float | None = None
    memory_bytes: int | None = None

    def document(self) -> PlanDocument:
        """The part a user reads, typed (``.model_dump(mode="json")`` is `submit --dry-run --json`)."""
        return PlanDocument(
            job_id=self.job_id,
            spec=self.spec,
            inputs=self.inputs,
            uploads=[PlannedUpload(input=n, source=str(p), destination=d) for n, p, d in self.uploads],
            outputs=self.outputs,
            code=self.code,
            existing_job=self.existing,
            estimate=self.estimate,
            max_cost=self.max_cost,
        )


def new_job_id(name: str) -> str:
    """`<name>-<yyyymmdd-hhmmss>-<4 chars>`: sorts by submit time within a name and reads well in a table."""
    return f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _content_id(path: Path) -> str:
    """A short id of a local file or folder's content (file SHA-256s are cached, so a rerun reads nothing)."""
    from jobsub.transfer.checksums import cached_sha256
    from jobsub.transfer.sources import folder_files

    digest = hashlib.sha256()
    files = [path] if path.is_file() else folder_files(path)[0]  # what the upload sends: no links out
    for file in files:
        rel = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{cached_sha256(file)}\n".encode())
    return digest.hexdigest()[:16]


def _tail(record: JobRecord, count: int) -> tuple[list[LogLine], str]:
    """The last `count` log lines (reading chunks from the end, each once) and the key of the newest chunk,
    from which a follower continues."""
    keys = record.chunks_after("")
    lines: list[LogLine] = []
    for key in reversed(keys):
        if len(lines) >= count:
            break
        lines[:0] = record.read_chunk(key)
    return (lines[-count:] if count else []), (keys[-1] if keys else "")


def storage_credentials_env(profile: Profile) -> dict[str, str]:
    """The storage credentials boto3's chain resolves here, as environment variables for a runner that does
    not share this machine's environment (a container, a cluster node). Empty for the local store."""
    if profile.storage != "s3":
        return {}
    from jobsub.storage.s3_client import new_session  # botocore's session on the store's loaded data

    try:
        creds = new_session(profile.aws_profile).get_credentials()
    except Exception:  # botocore.exceptions.ProfileNotFound: opening the store reports it properly
        return {}
    if creds is None:
        return {}
    frozen = creds.get_frozen_credentials()
    env = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = frozen.token
    return env


def _runtime_tunables() -> dict[str, str]:
    """The documented JOBSUB_* runtime knobs of the submitting shell (runtime/launch_env.py), nothing else."""
    return runtime_tunables(os.environ)


class _Launch:
    """An executor's submit on a thread of its own, started before the job's record is written, so the
    engine's start (docker create + start, sbatch) and the runner's own start overlap the record writes
    (and, for docker, the code upload before them)."""

    def __init__(self, executor: Executor, request: LaunchRequest) -> None:
        self.executor = executor
        self._handle: BaseHandle | None = None
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._stop_tried = False
        self._thread = threading.Thread(target=self._run, args=(request,), name="launch", daemon=True)
        self._thread.start()

    def _run(self, request: LaunchRequest) -> None:
        try:
            self._handle = self.executor.submit(request)
        except BaseException as exc:  # handed to the submitting thread, which raises it
            self._error = exc

    def age(self) -> float:
        """Seconds since the executor's submit was started (the runner's record wait began no earlier)."""
        return time.monotonic() - self._started

    def result(self) -> BaseHandle:
        """The handle, once the executor's submit returned; its error, raised here, when it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._handle is not None
        return self._handle

    def abandon(self) -> None:
        """The record will not be written (the code upload failed, Ctrl-C): stop what was started, whatever
        the executor's submit got to, so no runner waits for a record and nothing is left behind. Errors
        are logged: the submit's own error is what the user needs to see."""
        problem = self.stop()
        if problem:
            log.warning("%s", problem)

    def stop(self) -> str | None:
        """Stop what was started (see abandon); None once it is stopped or nothing was started, else why
        that is not known (the start did not return, the executor could not stop it)."""
        if self._stop_tried:  # once: a second try would only repeat the first one's answer, twice over
            return None
        self._stop_tried = True
        self._thread.join(timeout=LAUNCH_ABANDON_SECONDS)
        handle = self._handle
        if handle is None:
            if self._thread.is_alive():
                return f"the {self.executor.kind} runner's start did not return; it stops by itself"
            return None
        try:
            self.executor.abandon(handle)
        except Exception as exc:
            return f"could not stop the {self.executor.kind} runner started for this submit: {exc}"
        return None


class JobService:
    def __init__(
        self, profile: Profile, store: ObjectStore, profile_name: str = "default", executor: str | None = None
    ) -> None:
        self.profile = profile
        self.profile_name = profile_name
        self.store = store
        self.jobs_uri = ObjectURI.parse(profile.jobs_uri).as_prefix()
        #: where new jobs go (--executor, else the profile's); existing jobs use the kind in their handle
        self.executor = get_executor(executor or profile.executor, profile)
        self._executors: dict[str, Executor] = {self.executor.kind: self.executor}
        self._cleaned: set[str] = set()  # final jobs whose executor resources were released by this service

    def executor_for(self, handle: BaseHandle) -> Executor:
        """The executor that started this job (its handle names the kind), whatever the profile says now."""
        return self._executor_of_kind(handle.kind)

    def _executor_of_kind(self, kind: str) -> Executor:
        if kind not in self._executors:
            self._executors[kind] = get_executor(kind, self.profile)
        return self._executors[kind]

    def launch_request(self, plan: SubmitPlan, secret_env: dict[str, str] | None = None) -> LaunchRequest:
        """What the executor gets. Runners that do not share this machine's environment get the resolved
        storage credentials (never stored anywhere) and a profile that does not name a ~/.aws profile."""
        spec = plan.spec
        profile, secrets_for_runner = self.profile, dict(secret_env or {})
        if not self.executor.shares_client_environment:
            secrets_for_runner = {**storage_credentials_env(self.profile), **secrets_for_runner}
            profile = self.profile.model_copy(update={"aws_profile": None})
        return LaunchRequest(
            job_id=plan.job_id,
            job_uri=JobRecord(self.store, self.jobs_uri, plan.job_id).uri(),
            profile=profile,
            image=spec.image,
            cpus=spec.resources.cpus,
            gpus=spec.resources.gpus,
            memory_bytes=plan.memory_bytes,
            nodes=spec.resources.nodes,
            timeout_seconds=plan.timeout_seconds,
            flavor=spec.resources.flavor or None,
            env=_runtime_tunables(),
            secret_env=secrets_for_runner,
        )

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
        max_cost: float | None = None,
    ) -> SubmitPlan:
        problem = nodes_problem(spec.resources, self.executor.kind)
        if problem:
            raise SpecError(problem)
        wanted: dict[str, str | None] = {**spec.inputs, **(inputs or {})}
        # inputs the spec does not name are allowed: the program reads them from JOBSUB_INPUT_<NAME>
        for name in wanted:
            try:
                check_name("input", name)
            except ValueError as exc:
                raise SpecError(f"--input {name}=...: {exc}") from None
        self.store.check_bucket(self.jobs_uri.bucket)  # a missing bucket or bad credentials fail before any upload
        self._check_env_values(spec)
        plan = SubmitPlan(
            job_id=new_job_id(spec.name),
            spec=spec,
            inputs={},
            timeout_seconds=spec.timeout_seconds,
            memory_bytes=spec.resources.memory_bytes,
        )
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
        if plan.outputs:  # a missing output bucket would fail the job at its very end, after all the work
            check_output_bucket(self.store, plan.outputs)
        if not plan.outputs:
            plan.outputs = JobRecord(self.store, self.jobs_uri, plan.job_id).uri("outputs/")
        if spec.code:
            archive, sha, files = pack_code(Path(spec.code))
            uri = self._internal("_code", f"{sha}.tar.gz")
            plan.code = CodeRef(uri=str(uri), sha256=sha, files=files, bytes=len(archive), folder=spec.code)
            plan.code_archive = archive
        plan.max_cost = max_cost
        plan.upload_plans = [billing.upload_plan(self.store, path, dest) for _, path, dest in plan.uploads]
        plan.planned_at = time.monotonic()
        plan.estimate = billing.estimate_plan(
            self,
            spec,
            plan.upload_plans,
            plan.code.bytes if plan.code else None,
            plan.timeout_seconds,
            plan.memory_bytes,
        )
        return plan

    def _check_env_values(self, spec: JobSpec) -> None:
        """A spec `env` value that is or contains a credential would store the secret in job.json: refuse it."""
        known = resolved_secrets()
        for name, value in spec.env.items():
            if holds_credential(value, known):
                raise SpecError(
                    f"env.{name} holds one of your credentials and would be stored in the job record; "
                    f"pass it with --secret-env {name} (taken from your shell, never stored)"
                )

    def _ensure_code(self, plan: SubmitPlan, on_message: Callable[[str], None]) -> None:
        """Upload the code archive unless the store holds exactly these bytes (an archive replaced in the
        bucket is uploaded again: the runtime would refuse it)."""
        assert plan.code is not None and plan.code_archive is not None
        uri = ObjectURI.parse(plan.code.uri)
        info = self.store.head(uri.bucket, uri.key)
        if info is not None:
            same = info.size == len(plan.code_archive) and (
                info.etag.strip('"') == hashlib.md5(plan.code_archive).hexdigest()
                or hashlib.sha256(self.store.get(uri.bucket, uri.key)).hexdigest() == plan.code.sha256
            )
            if same:
                on_message(f"code {plan.code.sha256[:12]} already uploaded")
                return
            on_message(f"the stored code archive {uri} does not match its SHA-256; uploading it again")
        else:
            on_message(f"uploading code {plan.code.folder} ({plan.code.files} files) -> {uri}")
        self.store.put(uri.bucket, uri.key, plan.code_archive)

    def submit(
        self,
        plan: SubmitPlan,
        subscribers: list[TransferSubscriber] | None = None,
        idempotency_key: str | None = None,
        on_message: Callable[[str], None] = lambda _: None,
        secret_env: dict[str, str] | None = None,
    ) -> tuple[str, bool]:
        """Upload what the plan needs, write the record and start the runner. (job id, created?)

        The executor is checked first (engine, image, scheduler reachable), so a missing piece costs no
        upload and leaves no record; a launch that fails after the record exists marks it FAILED."""
        if plan.existing:
            return plan.existing, False
        if plan.estimate is not None:
            billing.check_max_cost(plan.estimate, plan.max_cost)
        request = self.launch_request(plan, secret_env)
        self.executor.check(request)
        record = self.record(plan.job_id)
        # a plan submitted again (an API retry after a failed launch) finds its old record: its runner must not
        # read that record before the new one replaces it, so it starts after the writes, as before
        early = self.executor.starts_before_record(request) and not record.exists()
        launch: _Launch | None = None
        if early and not plan.uploads and self.executor.starts_before_uploads(request):
            launch = _Launch(self.executor, request)  # before the code upload: see _keep_early_launch
        try:
            self._upload_inputs(plan, subscribers, on_message)
            if plan.code and plan.code_archive is not None:
                self._ensure_code(plan, on_message)
            if launch is not None and not self._keep_early_launch(launch):
                launch, early = None, False  # started again after the record, as for a plan submitted again
            if early and launch is None:
                launch = _Launch(self.executor, request)  # beside the record writes
            self._write_record(record, plan, secret_env)
        except BaseException:
            if launch is not None:
                launch.abandon()  # the runner waits for a record that will not come: stop it now
            raise
        try:
            handle = launch.result() if launch is not None else self.executor.submit(request)
        except BaseException as exc:
            if isinstance(exc, Exception):
                reason = f"{self.executor.kind} launch failed: {exc}"
            else:  # Ctrl-C while the runner was being started: stop it, and say so in the record
                if launch is not None:
                    launch.abandon()
                reason = "the submit was interrupted while its runner was being started: nothing was run"
            record.write_status(JobStatus(state=State.FAILED, finished=now_iso(), reason=reason))
            raise
        record.write_handle(handle)
        if idempotency_key:
            key = self._idempotency_uri(plan.spec.name, idempotency_key)
            self.store.put(key.bucket, key.key, plan.job_id.encode())
        return plan.job_id, True

    def _upload_inputs(
        self, plan: SubmitPlan, subscribers: list[TransferSubscriber] | None, on_message: Callable[[str], None]
    ) -> None:
        """Upload the plan's local inputs. A SubmitPlan built without plans (none made) uploads as before: each
        file is planned as it goes. The plans say what the server held when they were made: they are carried
        out once, and only soon after (a second submit of the same plan, or one after a long confirm step,
        plans again)."""
        fresh = time.monotonic() - plan.planned_at <= UPLOAD_PLAN_FRESH_SECONDS
        made = dict(zip((dest for _, _, dest in plan.uploads), plan.upload_plans, strict=False)) if fresh else {}
        plan.upload_plans = []
        for name, path, dest in plan.uploads:
            from jobsub.transfer import TransferManager  # here: a job without inputs needs no transfer engine

            on_message(f"uploading input {name}: {path} -> {dest}")
            target = ObjectURI.parse(dest)
            summary = TransferManager(self.store, subscribers=subscribers).upload([path], target, made.get(dest))
            for note in summary.skipped:
                on_message(f"warning: input {name}: not uploaded: {note}")
            if summary.failures:  # never start a job on an input that is only partly there
                raise JobError(
                    f"input {name}: {len(summary.failures)} file(s) failed to upload ({summary.failures[0]}); "
                    "nothing was submitted: run the same command again (the upload resumes)"
                )

    def _keep_early_launch(self, launch: _Launch) -> bool:
        """A runner started before the code upload waits record_wait_seconds() from its own start for the
        record. Kept when the upload ended within half of that (the two record writes have the other half);
        else it is stopped now, before any record exists (so it has read nothing), and the caller starts
        another after the record: a slow first upload of a changed code folder never leaves a job whose
        runner gave up waiting (docs/performance.md, "Start latency", fifth pass)."""
        from jobsub.executors.record_wait import record_wait_seconds

        if launch.age() <= record_wait_seconds() / 2:
            return True
        took = launch.age()
        problem = launch.stop()
        if problem:  # two runners would wait for one record (the claim lets one run it, the handle names one)
            raise JobError(f"{problem}; nothing was submitted: run the same command again (the code is uploaded)")
        log.info(
            "the code upload took %.1f s: the %s runner is started again after the record", took, launch.executor.kind
        )
        return False

    def _write_record(self, record: JobRecord, plan: SubmitPlan, secret_env: dict[str, str] | None) -> None:
        """job.json, then status.json (QUEUED): a runner started before them waits for status.json."""
        spec = plan.spec.model_copy(update={"inputs": plan.inputs, "outputs": plan.outputs})
        record.write_document(
            JobDocument(
                id=plan.job_id,
                spec=spec,
                inputs=plan.inputs,
                outputs=plan.outputs,
                code=plan.code,
                created=now_iso(),
                submitted_from=socket.gethostname(),
                profile=self.profile_name,
                executor=self.executor.kind,
                cost=billing.cost_record(self.profile.prices, plan.estimate, plan.max_cost) if plan.estimate else None,
                secret_env=sorted(secret_env or {}),  # the names only: values go to the executor, never here
            )
        )
        record.write_status(JobStatus())

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
    def executor_handle(self, record: JobRecord) -> BaseHandle | None:
        """The job's handle (None before an executor took it), parsed here and nowhere else: its kind picks
        the executor through the registry, that executor's handle model validates the rest, and the executor
        checks what it names (verify_handle) before anything acts on it. Whoever can write the bucket can
        rewrite executor.json: anything that is not a handle of this job is one line (JobError), never a
        traceback. The handle carries the record's job id (record_job_id) for the executors' own checks."""
        data = record.read_handle_data()
        if not data:
            return None
        where = f"job {record.job_id}: its executor record ({record.uri('executor.json')})"
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in EXECUTORS:
            named = " ".join(str(kind).split())[:60]
            raise RecordFormatError(
                f"{where} names executor {named!r}; this jobsub knows {', '.join(sorted(EXECUTORS))}: not acting on it"
            )
        executor = self._executor_of_kind(kind)
        try:
            handle = executor.handle_model.from_record(data, record.job_id)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = " ".join(".".join(str(p) for p in err["loc"]).split())[:60] or "(top)"
            raise RecordFormatError(
                f"{where} is not a {kind} handle ({field}: {err['msg']}): not acting on it (the record was rewritten?)"
            ) from None
        executor.verify_handle(handle, record.job_id)
        return handle

    def document(self, job_id: str, max_bytes: int | None = None) -> JobDocument:
        """The job's record (job.json) as its model; `max_bytes` refuses a larger one before reading it
        (the web view serves what a shared bucket holds)."""
        return self.record(job_id).read_document(max_bytes)

    def executor_description(self, job_id: str) -> str:
        """Where the job runs, in words ("not started" before its executor took it; the handle's kind when
        the executor cannot describe or refuses the handle)."""
        record = self.record(job_id)
        try:
            handle = self.executor_handle(record)
        except JobsubError:
            return "unknown"
        if handle is None:
            return "not started"
        try:
            return self.executor_for(handle).describe(handle)
        except JobsubError:
            return handle.kind

    def status(self, job_id: str) -> JobStatus:
        """The job's status, turned LOST (and written so) when its runner is gone without a final state."""
        record = self.record(job_id)
        status = record.read_status()
        if status.state.final:
            self._cleanup_once(record)
            return status
        handle = self.executor_handle(record)
        observation = self.executor_for(handle).poll(handle) if handle is not None else Observation("unknown")
        return self._reconcile(record, status, handle, observation)

    def _cleanup_once(self, record: JobRecord) -> None:
        """Let the executor release what it holds for a final job (a stopped container), once per service:
        the runner usually writes its final state itself, so no poll ever saw the job end."""
        if record.job_id in self._cleaned:
            return
        self._cleaned.add(record.job_id)
        try:
            handle = self.executor_handle(record)
        except JobError as exc:  # a handle its executor refuses: release nothing, the final state stands
            log.warning("cleanup of %s skipped: %s", record.job_id, exc)
            return
        if handle is not None and not self.executor_for(handle).capabilities.local_process:
            try:
                self.executor_for(handle).cleanup(handle)
            except JobsubError as exc:
                log.warning("cleanup of %s failed: %s", record.job_id, exc)

    def _reconcile(
        self, record: JobRecord, status: JobStatus, handle: BaseHandle | None, seen: Observation
    ) -> JobStatus:
        """Combine the record with what the executor sees. A dead runner without a final state is LOST, or
        FAILED with the executor's reason when it knows one (out of memory); a job the executor is holding
        (a scheduler queue) shows why in `reason` without that being written."""
        age = heartbeat_age(status)
        if status.state == State.QUEUED and self._never_started(record, status, handle, seen):
            return status
        if seen.liveness == "dead" or (seen.liveness == "unknown" and age is not None and age > LOST_AFTER_SECONDS):
            status = record.read_status()  # the runner may have finished between the two reads
            if not status.state.final:
                status.finished = now_iso()
                if seen.liveness == "dead" and record.cancel_requested():
                    # cancelled before the runner could write it (a queued batch job, a container not started)
                    status.state = State.CANCELLED
                    status.reason = "cancelled by request" + ("" if status.started else " before it started")
                elif seen.liveness == "dead" and seen.detail:
                    status.state, status.reason = State.FAILED, seen.detail
                    status.exit_code = seen.exit_code if seen.exit_code is not None else status.exit_code
                else:
                    status.state = State.LOST
                    status.reason = (
                        "the runner process is gone without a final state"
                        if seen.liveness == "dead"
                        else f"no heartbeat for {age:.0f}s"
                    )
                record.write_status(status)
        elif seen.detail and not status.reason:
            status.reason = seen.detail  # shown, not stored: e.g. "queued: Resources"
        if status.state.final and handle is not None:
            self.executor_for(handle).cleanup(handle)
        return status

    def _never_started(
        self, record: JobRecord, status: JobStatus, handle: BaseHandle | None, seen: Observation
    ) -> bool:
        """A runner that never wrote STAGING: FAILED (not LOST, not QUEUED forever) once the executor says it
        is gone, or it has not started within RUNNER_START_SECONDS and the executor cannot say it is alive
        (a scheduler that holds the job reports it alive, so a queued Slurm job is not failed)."""
        waited = (datetime.now(timezone.utc) - datetime.fromisoformat(status.created)).total_seconds()
        if seen.liveness == "alive":
            return False
        # only a runner that starts at once (local) or has no handle is late after a minute; a scheduler
        # asked from a machine that cannot see it says "unknown" for a job that may rightly wait in a queue
        starts_at_once = handle is None or self.executor_for(handle).capabilities.local_process
        if seen.liveness == "unknown" and (waited < RUNNER_START_SECONDS or not starts_at_once):
            return False
        fresh = record.read_status()  # the runner may have started between the two reads
        if fresh.state != State.QUEUED:
            return False
        where = self._runner_log(handle)
        if seen.liveness == "dead" and record.cancel_requested():  # a queued batch job that was cancelled
            status.state, status.reason, status.finished = (
                State.CANCELLED,
                "cancelled by request before it started",
                now_iso(),
            )
            record.write_status(status)
            return True
        if seen.liveness == "dead":
            reason = seen.detail or f"the runner exited before it started the job: see {where}"
            status.exit_code = seen.exit_code if seen.exit_code is not None else status.exit_code
        else:
            reason = f"runner did not start within {RUNNER_START_SECONDS:.0f} s: see {where}"
        status.state, status.reason, status.finished = State.FAILED, reason, now_iso()
        record.write_status(status)
        return True

    def _runner_log(self, handle: BaseHandle | None) -> str:
        if handle is None:
            return "the runner's log"
        return handle.runner_log() or f"the runner's log ({self.executor_for(handle).describe(handle)})"

    def describe(self, job_id: str) -> JobInfo:
        record = self.record(job_id)
        status = self.status(job_id)
        job = record.read_document()
        handle = self.executor_handle(record)
        return JobInfo(
            id=job_id,
            name=job.spec.name,
            status=status,
            duration_seconds=status.duration(),
            executor=self.executor_for(handle).describe(handle) if handle is not None else "not started",
            record=record.uri(),
            outputs=job.outputs,
            inputs=job.inputs,
            command=job.spec.command,
            cost=billing.job_cost(job, status.duration(), billing.stored_bytes(self.store, record.root, job)),
        )

    def list_jobs(
        self, state: str | None = None, limit: int = 50, name: str | None = None, with_cost: bool = False
    ) -> list[JobRow]:
        """Newest first. `name` keeps one template's jobs; `with_cost` adds each job's cost (reads job.json)."""
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
        ids = [i for i in ids if not i.startswith("_") and (name is None or job_name(i) == name)]
        statuses = self.statuses(ids if state else ids[:limit])
        rows: list[JobRow] = []
        for job_id, status in statuses:
            if state and status.state.value != state.upper():
                continue
            row = JobRow.from_status(job_id, status, costed=with_cost)
            if with_cost:
                try:
                    row.cost = billing.job_cost(self.record(job_id).read_document(), status.duration())
                except (JobError, StorageError):  # a missing or unreadable job.json: no cost for that row
                    row.cost = None
            rows.append(row)
            if len(rows) >= limit:
                break
        return rows

    def statuses(self, ids: list[str]) -> list[tuple[str, JobStatus]]:
        """Statuses of many jobs, asking each executor once for all of its live jobs (one squeue, not N).
        Ids with no readable status record are left out (a list shows what it can read)."""
        found: list[tuple[str, JobRecord, JobStatus]] = []
        for job_id in ids:
            try:
                record = self.record(job_id)
                found.append((job_id, record, record.read_status()))
            except (JobNotFoundError, RecordFormatError, StorageError, ValueError):
                continue  # a status.json anyone rewrote into nonsense hides that job, not the whole list
        live: dict[str, list[tuple[int, JobRecord, BaseHandle | None]]] = {}
        for index, (_, record, status) in enumerate(found):
            if not status.state.final:
                handle: BaseHandle | None = None
                try:
                    handle = self.executor_handle(record)
                except JobsubError as exc:
                    log.warning("%s", exc)
                live.setdefault(handle.kind if handle is not None else "", []).append((index, record, handle))
        result = [(job_id, status) for job_id, _, status in found]
        for kind, entries in live.items():
            handles = [h for _, _, h in entries if h is not None]
            try:
                seen = (
                    self._executor_of_kind(kind).poll_many(handles) if kind else [Observation("unknown")] * len(entries)
                )
            except JobsubError as exc:
                log.warning("cannot poll %s jobs: %s", kind, exc)
                seen = [Observation("unknown")] * len(entries)
            for (index, record, handle), observation in zip(entries, seen, strict=True):
                job_id, status = result[index]
                result[index] = (job_id, self._reconcile(record, status, handle, observation))
        return result

    def cancel_leftovers(self, job_id: str, status: JobStatus) -> str:
        """After LOST: the executor that owns the job stops what is left of it (what its handle names, the
        processes of the place the runner recorded) and says so, in one sentence."""
        record = self.record(job_id)
        handle = self.executor_handle(record)
        executor = self.executor_for(handle) if handle is not None else self.executor
        return executor.kill_leftovers(handle, status.executor, job_id)

    def cancel(self, job_id: str) -> JobStatus:
        record = self.record(job_id)
        status = self.status(job_id)
        if status.state.final:
            return status
        record.request_cancel()
        handle = self.executor_handle(record)
        if handle is not None:
            self.executor_for(handle).cancel(handle)
        return status

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> JobStatus:
        end = time.monotonic() + timeout if timeout else None
        while True:
            status = self.status(job_id)
            if status.state.final:
                return status
            if end and time.monotonic() > end:
                raise JobTimeoutError(f"job {job_id} still {status.state.value} after {timeout:g}s; it keeps running")
            time.sleep(poll)

    # -- logs ---------------------------------------------------------------------------------------------
    def log_lines(self, job_id: str, tail: int | None = None) -> list[LogLine]:
        record = self.record(job_id)
        record.read_status()  # JobNotFoundError for an unknown id
        if tail is None:
            return [line for key in record.chunks_after("") for line in record.read_chunk(key)]
        return _tail(record, tail)[0]

    def follow(
        self,
        job_id: str,
        tail: int | None = None,
        poll: float = 0.3,
        on_error: Callable[[str], None] | None = None,
        on_waiting: Callable[[str], None] | None = None,
    ) -> Iterator[LogLine | JobStatus]:
        """Yield log lines in order as they arrive, then the final JobStatus. While the job is not running
        yet, `on_waiting` hears each new reason the executor gives ("queued: Resources").

        A chunk is yielded only once it was read whole, and the position only moves past it then: a storage
        error mid-way costs a retry, never a lost or repeated line.
        """
        record = self.record(job_id)
        record.read_status()
        last_key = ""
        output_seen = False  # a line of the command's own (not jobsub's) shown by this follow
        if tail is not None:
            lines, last_key = _tail(record, tail)
            output_seen = any(line.stream != "jobsub" for line in lines)
            yield from lines
        finished = False
        failures = 0
        status: JobStatus | None = None
        waiting: str | None = None
        # faster listings while the command's first line is awaited (FIRST_OUTPUT_POLL): from now, and again
        # from when the runner is first seen past QUEUED (a job may queue for longer than the window)
        fast_until = time.monotonic() + FIRST_OUTPUT_WINDOW
        runner_seen = False
        last_status = float("-inf")
        ask_executor_from = time.monotonic() + EXECUTOR_POLL_DELAY
        while True:
            pass_started = time.monotonic()
            fast = not output_seen and pass_started < fast_until
            try:
                for key in record.chunks_after(last_key):
                    lines = record.read_chunk(key)
                    output_seen = output_seen or any(line.stream != "jobsub" for line in lines)
                    yield from lines
                    last_key = key
                if finished and status is not None:
                    yield status
                    return
                if status is None or not fast or pass_started - last_status >= poll * 0.95:
                    status = record.read_status() if pass_started < ask_executor_from else None
                    if status is None or status.state.final:  # a final job: the executor releases what it holds
                        status = self.status(job_id)
                    last_status = pass_started
                    if not runner_seen and status.state != State.QUEUED:
                        runner_seen = True
                        fast_until = max(fast_until, pass_started + FIRST_OUTPUT_WINDOW)
                failures = 0
                if on_waiting and status.state == State.QUEUED and status.reason and status.reason != waiting:
                    waiting = status.reason
                    on_waiting(waiting)
            except StorageError as exc:
                failures += 1
                if not exc.retryable and failures > 3:
                    raise
                if on_error:
                    on_error(f"storage error while following ({exc}); retrying")
                time.sleep(min(5.0, 0.5 * failures))
                continue
            if status.state.final:
                finished = True  # one more pass: the runner writes its last chunk before the final status
                continue
            # a listing every `poll` seconds, whatever the pass cost (the status asks the executor: squeue,
            # docker inspect): a line that lands during a slow pass is not kept waiting a whole poll more
            interval = FIRST_OUTPUT_POLL if not output_seen and time.monotonic() < fast_until else poll
            time.sleep(max(0.05, interval - (time.monotonic() - pass_started)))

    # -- results ------------------------------------------------------------------------------------------
    def outputs_uri(self, job_id: str) -> ObjectURI:
        return ObjectURI.parse(self.record(job_id).read_document().outputs).as_prefix()

    def results(self, job_id: str) -> Results:
        """Final metrics (the program's metrics.json, else its last metrics line), plots and outputs by URI."""
        status = self.status(job_id)
        record = self.record(job_id)
        job = record.read_document()
        uri = ObjectURI.parse(job.outputs).as_prefix()
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
        files = [
            OutputFile(uri=f"s3://{uri.bucket}/{o.key}", size=o.size)
            for o in objects
            if "/checkpoint-" not in o.key and "/model/" not in o.key
        ]
        return Results(
            id=job_id,
            state=status.state,
            exit_code=status.exit_code,
            metrics=metrics,
            metrics_source=source,
            plots=[f.uri for f in files if f.uri.lower().endswith((".png", ".svg", ".jpg"))],
            outputs=str(uri),
            files=files,
            warnings=warnings,
            cost=billing.job_cost(job, status.duration(), billing.stored_bytes(self.store, record.root, job)),
        )
