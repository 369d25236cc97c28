"""The public Python API: what the CLI does, for notebooks and scripts (docs/api.md).

    from jobsub.api import Client

    client = Client(profile="obs")                 # or Client() for the configured / built-in profile
    client.upload("ckpt/", "s3://bucket/models/ckpt/", progress=lambda p: print(p.bytes_done))
    job = client.submit("bert-finetune", inputs={"data": "./tnews"}, params={"epochs": 3})
    for line in job.logs(follow=True):
        print(line)
    print(job.status().state, job.results().metrics, job.cost().compute)

Why a layer of its own: the CLI, the web view and notebooks need the same operations with the same rules
(specs validated, local inputs uploaded resumably, secrets never stored). This module holds no rule of its
own; it turns friendly arguments into the service's and hands back the service's models. Every failure is
an exception from jobsub.errors (the tree documented there), never a traceback from a dependency.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from jobsub.config import Profile, resolve_profile
from jobsub.errors import BucketNotFoundError, JobTimeoutError, SpecError, StorageError, UsageError
from jobsub.redact import register_secret
from jobsub.storage.base import ListResult, ObjectInfo, ObjectStore
from jobsub.transfer.events import TransferSubscriber
from jobsub.uri import ObjectURI

if TYPE_CHECKING:  # imported when first used: `jobsub --help` and a notebook's import stay quick
    from jobsub.jobs.models import Bill, JobCost, JobInfo, JobRow, LogLine, Results
    from jobsub.jobs.records import JobStatus, State
    from jobsub.jobs.service import JobService, SubmitPlan
    from jobsub.jobs.spec import JobSpec
    from jobsub.transfer import TransferManager, TransferSummary, UploadPlan

__all__ = [
    "Bill",
    "Client",
    "Job",
    "JobCost",
    "JobInfo",
    "JobRow",
    "JobStatus",
    "JobTimeoutError",
    "LogLine",
    "PendingUpload",
    "ProgressCallback",
    "Results",
    "State",
    "TransferProgress",
]

#: the job models re-exported above, imported on first use: a transfer (`jobsub download`) never needs them,
#: and their pydantic classes cost ~0.05-0.1 s of CPU to build (docs/performance.md, issue 22, third pass)
_LAZY = {
    **dict.fromkeys(("Bill", "JobCost", "JobInfo", "JobRow", "LogLine", "Results"), "jobsub.jobs.models"),
    **dict.fromkeys(("JobStatus", "State"), "jobsub.jobs.records"),
    "JobSpec": "jobsub.jobs.spec",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


@dataclass(frozen=True)
class TransferProgress:
    """One progress report: the file that moved and the totals so far (bytes_total grows as files queue)."""

    path: str
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[TransferProgress], None]


class _CallbackSubscriber(TransferSubscriber):
    """Turns the engine's events into one callback with running totals. Workers call it from their threads,
    one at a time (the engine's event hub holds a lock), so the callback needs no locking of its own."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._done = 0
        self._total = 0
        self._sizes: dict[str, int] = {}
        self._moved: dict[str, int] = {}
        self._lock = threading.Lock()

    def on_queued(self, *, path: str, size: int, **kwargs: Any) -> None:
        with self._lock:
            self._total += size
            self._sizes[path] = size

    def on_progress(self, *, path: str, bytes_transferred: int, **kwargs: Any) -> None:
        with self._lock:
            self._done += bytes_transferred
            self._moved[path] = self._moved.get(path, 0) + bytes_transferred
            report = TransferProgress(path, self._done, self._total)
        self._callback(report)

    def on_done(self, *, path: str, outcome: str, **kwargs: Any) -> None:
        """An unchanged (skipped) file counts as done, so a bar reaches its end when nothing had to move."""
        if outcome != "skipped":
            return
        with self._lock:
            rest = self._sizes.get(path, 0) - self._moved.get(path, 0)
            if rest <= 0:
                return
            self._done += rest
            self._moved[path] = self._sizes.get(path, 0)
            report = TransferProgress(path, self._done, self._total)
        self._callback(report)


def start_early(profile: Profile) -> None:
    """Begin an S3 profile's client start-up (importing botocore, parsing its S3 data) on a thread now, so it
    overlaps what a caller does before its first request (reading a spec, importing the job service). A
    no-op for the local store; anything that fails there is met again, in words, when the store opens."""
    if profile.storage == "s3":
        from jobsub.storage.s3_client import prepare

        prepare()


def _subscribers(
    progress: ProgressCallback | None, subscribers: Sequence[TransferSubscriber] = ()
) -> list[TransferSubscriber]:
    """The engine's subscribers: the progress callback's adapter, then any the caller brings (the CLI's bars)."""
    return ([_CallbackSubscriber(progress)] if progress else []) + list(subscribers)


class PendingUpload(BaseModel):
    """An interrupted multipart upload on the server (`jobsub uploads list`): what a resume would continue.
    `source` and `percent_done` are known when this machine's resume journal knows the upload."""

    upload_id: str
    uri: str
    initiated: str | None = None
    age_seconds: float | None = None
    source: str | None = None
    size: int | None = None
    percent_done: float | None = None


#: At most this many pending uploads are read per bucket (a shared bucket can hold any number).
MAX_PENDING_PER_BUCKET = 1000


def find_pending_uploads(
    store: ObjectStore,
    buckets: Sequence[str] | None = None,
    prefix: str = "",
    *,
    also: Sequence[str] = (),
    skip_unreadable: bool = False,
) -> list[PendingUpload]:
    """Interrupted multipart uploads in `buckets` under `prefix`, joined with this machine's resume journals
    (source, size and % sent where a journal knows the upload). The one reading of pending uploads: the CLI's
    `uploads list`, `Client.pending_uploads` and the web view's storage page all call it.

    `buckets` None: the buckets this machine's journals name, with `also` (the web view adds its jobs
    bucket). `skip_unreadable` passes over a bucket that is missing or refuses the listing (a page over
    several buckets shows what it can); otherwise that error is raised.
    """
    from jobsub.transfer.journal import all_journals

    journals = {j.upload_id: j for j in all_journals() if j.store == store.description}
    if buckets is None:
        buckets = sorted({*also, *(j.bucket for j in journals.values())})
    found: list[PendingUpload] = []
    for bucket in buckets:
        try:
            listed = store.list_uploads(bucket, prefix)
        except (BucketNotFoundError, StorageError):
            if skip_unreadable:
                continue
            raise
        for upload in listed[:MAX_PENDING_PER_BUCKET]:
            journal = journals.get(upload.upload_id)
            percent = None
            if journal:
                done = sum(
                    min(journal.part_size, journal.size - (int(n) - 1) * journal.part_size) for n in journal.parts
                )
                percent = round(100.0 * done / journal.size, 1) if journal.size else 100.0
            found.append(
                PendingUpload(
                    upload_id=upload.upload_id,
                    uri=f"s3://{bucket}/{upload.key}",
                    initiated=upload.initiated.isoformat() if upload.initiated else None,
                    age_seconds=time.time() - upload.initiated.timestamp() if upload.initiated else None,
                    source=str(journal.source) if journal else None,
                    size=journal.size if journal else None,
                    percent_done=percent,
                )
            )
    return found


def _set_word(value: object) -> str:
    """A Python value as the text `--set` would take (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _uri(value: str | ObjectURI) -> ObjectURI:
    return value if isinstance(value, ObjectURI) else ObjectURI.parse(value)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Job:
    """A handle on one job: everything it does reads the job's record, so any machine with the profile can
    hold one (`Client.job(id)`), and a Job object stays valid after the process that submitted it exits."""

    def __init__(self, client: Client, job_id: str, created: bool = True) -> None:
        self.client = client
        self.id = job_id
        #: False when `submit` found an earlier job with the same name and idempotency key (nothing started)
        self.created = created
        #: the final status, once `logs(follow=True)` has followed the job to its end
        self.final_status: JobStatus | None = None

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        """The job's state now (LOST, and so recorded, when its runner vanished without a final state)."""
        return self.client.service.status(self.id)

    def info(self) -> JobInfo:
        """What `jobsub status` shows: status, where it runs, record, inputs, outputs and cost."""
        return self.client.service.describe(self.id)

    def record_uri(self) -> str:
        """Where the job's record lives (s3://bucket/jobs/ID/); reads nothing."""
        return self.client.service.record(self.id).uri()

    def outputs_uri(self) -> ObjectURI:
        """The prefix the job's outputs go to (read from its record)."""
        return self.client.service.outputs_uri(self.id)

    def log_lines(
        self,
        follow: bool = False,
        tail: int | None = None,
        on_error: Callable[[str], None] | None = None,
        on_waiting: Callable[[str], None] | None = None,
    ) -> Iterator[LogLine]:
        """The job's log as typed `LogLine`s (time, stream, text), in order. With `follow`, keeps yielding until
        the job is final, then sets `final_status`; `on_waiting` hears each reason a queued job gives
        ("queued: Resources"), `on_error` each storage error that following retries past."""
        service = self.client.service
        if not follow:
            yield from service.log_lines(self.id, tail)
            return
        from jobsub.jobs.records import JobStatus

        for item in service.follow(self.id, tail=tail, on_error=on_error, on_waiting=on_waiting):
            if isinstance(item, JobStatus):
                self.final_status = item
            else:
                yield item

    def logs(self, follow: bool = False, tail: int | None = None, timestamps: bool = False) -> Iterator[str]:
        """The job's log lines as text, in order; with `follow`, keeps yielding until the job is final, then
        sets `final_status`. `tail` starts from the last N lines. (`log_lines` gives typed lines.)"""
        for line in self.log_lines(follow=follow, tail=tail):
            yield f"{line.stamp()} {line.text}" if timestamps else line.text

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> JobStatus:
        """Block until the job is final; JobTimeoutError after `timeout` seconds (the job keeps running)."""
        status = self.client.service.wait(self.id, timeout=timeout, poll=poll)
        self.final_status = status
        return status

    def cancel(self, wait: bool = False, timeout: float = 120) -> JobStatus:
        """Ask the job to stop (SIGTERM, SIGKILL after its grace period); its status when asked (a final one
        means there was nothing to stop). With `wait`, its final status. A LOST job's leftovers are stopped by
        `cancel_leftovers`."""
        status = self.client.service.cancel(self.id)
        if wait and not status.state.final:
            return self.wait(timeout=timeout)
        return status

    def cancel_leftovers(self, status: JobStatus | None = None) -> str:
        """For a LOST job: stop what is left of it (its container or scheduler job, its recorded process group
        on this host) and say what was done, in one sentence."""
        return self.client.service.cancel_leftovers(self.id, status or self.status())

    def results(self) -> Results:
        """Final metrics (metrics.json, else the last metrics line), plots and output files by URI."""
        return self.client.service.results(self.id)

    def cost(self) -> JobCost:
        """Compute so far (duration x rate) and a month of the storage it keeps, from the profile's prices."""
        return self.client.service.describe(self.id).cost

    def download(
        self,
        dest: str | Path,
        progress: ProgressCallback | None = None,
        *,
        subscribers: Sequence[TransferSubscriber] = (),
    ) -> TransferSummary:
        """The job's outputs into `dest` (resumable and verified, like `jobsub download JOB DEST`)."""
        return self.client.download(self.outputs_uri(), dest, progress=progress, subscribers=subscribers)


class Client:
    """One profile's object store and jobs. Cheap to create; the store opens on first use.

    `profile` is a profile name (else JOBSUB_PROFILE, else the config's current, else the built-in local
    profile) or a Profile object built in code (`name` then names it in job records; default "custom");
    `store` replaces the profile's store (tests, custom stores); `executor` replaces the profile's executor
    for jobs submitted through this client; `concurrency` and `read_timeout` set the store's connection pool
    and how long a request may wait for a reply (default: the profile's read_timeout).
    """

    def __init__(
        self,
        profile: str | Profile | None = None,
        *,
        name: str | None = None,
        store: ObjectStore | None = None,
        executor: str | None = None,
        concurrency: int = 8,
        read_timeout: float | None = None,
    ) -> None:
        if isinstance(profile, Profile):
            self.profile_name, self.profile = name or "custom", profile
        else:
            self.profile_name, self.profile = resolve_profile(profile)
        self._store = store
        self._executor = executor
        self._service: JobService | None = None
        self.concurrency = concurrency
        self.read_timeout = read_timeout

    def __repr__(self) -> str:
        return f"Client(profile={self.profile_name!r})"

    def with_executor(self, executor: str | None) -> Client:
        """This client with its jobs sent to another executor (`--executor`); an open store is shared."""
        return Client(
            self.profile,
            name=self.profile_name,
            store=self._store,
            executor=executor,
            concurrency=self.concurrency,
            read_timeout=self.read_timeout,
        )

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from jobsub.storage import open_store

            self._store = open_store(self.profile, self.concurrency, read_timeout=self.read_timeout)
        return self._store

    @property
    def service(self) -> JobService:
        """The job service under this client (for what the API does not wrap yet)."""
        if self._service is None:
            from jobsub.jobs.service import JobService

            self._service = JobService(self.profile, self.store, self.profile_name, executor=self._executor)
        return self._service

    # -- transfers --------------------------------------------------------------------------------------
    def _manager(
        self,
        part_size: int | None,
        max_bandwidth: int | None,
        progress: ProgressCallback | None = None,
        subscribers: Sequence[TransferSubscriber] = (),
    ) -> TransferManager:
        from jobsub.transfer import TransferManager, TransferOptions

        options = TransferOptions(part_size=part_size, concurrency=self.concurrency, max_bandwidth=max_bandwidth)
        return TransferManager(self.store, options, _subscribers(progress, subscribers))

    def upload(
        self,
        sources: str | Path | list[str | Path],
        dest: str | ObjectURI,
        *,
        progress: ProgressCallback | None = None,
        part_size: int | None = None,
        max_bandwidth: int | None = None,
        subscribers: Sequence[TransferSubscriber] = (),
    ) -> TransferSummary:
        """Upload files or folders under `dest` (s3://bucket/prefix): resumable, verified, unchanged files
        skipped. Raises SourceNotFoundError, StorageError, IntegrityError, SourceChangedError, and
        TransferInterrupted on Ctrl-C (what was sent is kept: the same call resumes). `subscribers` take
        the engine's own events (jobsub.transfer.events.TransferSubscriber), for a richer display."""
        items: list[str | Path] = list(sources) if isinstance(sources, list) else [sources]
        return self._manager(part_size, max_bandwidth, progress, subscribers).upload(items, _uri(dest))

    def plan_upload(
        self, sources: str | Path | list[str | Path], dest: str | ObjectURI, *, part_size: int | None = None
    ) -> UploadPlan:
        """What `upload` would do, found with read-only requests (HEAD, ListParts) and nothing sent: per file
        the action (unchanged, single, multipart), parts to send and reused, bytes and requests."""
        items: list[str | Path] = list(sources) if isinstance(sources, list) else [sources]
        return self._manager(part_size, None).plan_upload(items, _uri(dest))

    def download(
        self,
        source: str | ObjectURI,
        dest: str | Path,
        *,
        progress: ProgressCallback | None = None,
        part_size: int | None = None,
        max_bandwidth: int | None = None,
        subscribers: Sequence[TransferSubscriber] = (),
    ) -> TransferSummary:
        """Download an object or a prefix into `dest`: parallel ranged reads, verified, never outside dest."""
        return self._manager(part_size, max_bandwidth, progress, subscribers).download(_uri(source), dest)

    def pending_uploads(self, uri: str | None = None) -> list[PendingUpload]:
        """Interrupted multipart uploads under s3://bucket[/prefix] (default: the buckets this machine's resume
        journals name), with the local source and how much was sent where a journal knows them."""
        target = ObjectURI.parse(uri) if uri else None
        return find_pending_uploads(self.store, [target.bucket] if target else None, target.key if target else "")

    def abort_upload(self, upload: PendingUpload) -> None:
        """Abort a pending upload (the server deletes its parts) and forget this machine's journal of it."""
        from jobsub.transfer.journal import all_journals

        target = ObjectURI.parse(upload.uri)
        self.store.abort_multipart(target.bucket, target.key, upload.upload_id)
        journal = {j.upload_id: j for j in all_journals()}.get(upload.upload_id)
        if journal is not None:
            journal.delete()

    # -- objects ----------------------------------------------------------------------------------------
    def buckets(self) -> list[str]:
        """The buckets these credentials see (`jobsub ls`)."""
        return self.store.list_buckets()

    def ls(self, uri: str | ObjectURI, recursive: bool = False) -> ListResult:
        """Objects and folders (prefixes) under s3://bucket/prefix, one level unless `recursive` (then every
        object, no prefixes). `s3://b/dir` without a slash lists the folder dir/ when that is all it names."""
        target = _uri(uri)
        if recursive:
            return ListResult(objects=list(self.store.iter_objects(target.bucket, target.key)), prefixes=[])
        listing = self.store.list(target.bucket, target.key, "/")
        if not listing.objects and listing.prefixes == [target.key + "/"]:
            listing = self.store.list(target.bucket, target.key + "/", "/")
        return listing

    def head(self, uri: str | ObjectURI) -> ObjectInfo | None:
        """One object's size, ETag, time and metadata; None when there is no such object."""
        target = _uri(uri)
        return self.store.head(target.bucket, target.key)

    def folder_keys(self, uri: str | ObjectURI) -> list[str]:
        """What `rm -r s3://b/PREFIX` names: the object PREFIX itself and everything in the folder PREFIX/.

        Like `ls` and `download`, the argument is a folder, never a string prefix: `runs/data` does not reach
        `runs/data2/...` or `runs/database.csv`.
        """
        target = _uri(uri)
        keys: list[str] = []
        if target.key and not target.is_prefix and self.store.head(target.bucket, target.key) is not None:
            keys.append(target.key)
        folder = target.as_prefix().key if target.key else ""
        keys.extend(o.key for o in self.store.iter_objects(target.bucket, folder))
        return keys

    def delete(self, bucket: str, keys: Sequence[str]) -> int:
        """Delete these keys of `bucket` (from `folder_keys`, or one object's key), in order; how many."""
        for key in keys:
            self.store.delete(bucket, key)
        return len(keys)

    # -- jobs -------------------------------------------------------------------------------------------
    def templates(self) -> list[str]:
        """Names of the job templates (built-in and the user's own)."""
        from jobsub.jobs.templates import template_paths

        return list(template_paths())

    def template(self, name: str) -> JobSpec:
        """A template's spec by name (SpecError listing the names when there is none)."""
        from jobsub.jobs.spec import load_spec
        from jobsub.jobs.templates import find_template

        return load_spec(find_template(name))

    def load_spec(self, spec: str | Path | JobSpec | Mapping[str, Any]) -> tuple[JobSpec, Path | None]:
        """A spec from a JobSpec, a dict, a YAML file path or a template name, and the folder that relative
        paths in it are read from (None: the current folder)."""
        from jobsub.jobs.spec import JobSpec, load_spec
        from jobsub.jobs.templates import find_template

        if isinstance(spec, JobSpec):
            return spec, None
        if isinstance(spec, Mapping):
            from pydantic import ValidationError

            try:
                return JobSpec.model_validate(dict(spec)), None
            except ValidationError as exc:
                err = exc.errors()[0]
                raise SpecError(f"spec: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        path = Path(spec)
        if isinstance(spec, Path) or path.suffix in (".yaml", ".yml"):
            return load_spec(path), path.resolve().parent
        return load_spec(find_template(str(spec))), None

    def plan(
        self,
        spec: str | Path | JobSpec | Mapping[str, Any],
        *,
        inputs: Mapping[str, str | Path] | None = None,
        params: Mapping[str, object] | None = None,
        sets: Mapping[str, object] | Sequence[str] | None = None,
        name: str | None = None,
        code: str | Path | None = None,
        output: str | None = None,
        idempotency_key: str | None = None,
        max_cost: float | None = None,
    ) -> SubmitPlan:
        """What `submit` would do, with nothing uploaded or started (`jobsub submit --dry-run`): the resolved
        spec, where each input comes from or is uploaded to, the outputs, the code archive, an earlier job
        with the same idempotency key, and the cost estimate (`plan.document()` is the dry run's JSON, typed).
        Arguments as for `submit`; `sets` may also be `--set` words ("KEY=VALUE"). Pass the plan to `submit`
        to carry it out."""
        loaded, base_dir = self.load_spec(spec)
        assignments = [f"params.{k}={_set_word(v)}" for k, v in (params or {}).items()]
        if isinstance(sets, Mapping):
            assignments += [f"{k}={_set_word(v)}" for k, v in sets.items()]
        else:
            assignments += list(sets or ())
        if name:
            assignments.append(f"name={name}")
        if assignments:
            from jobsub.jobs.spec import apply_sets

            loaded = apply_sets(loaded, assignments)
        if code is not None:
            folder = Path(code).expanduser()
            if not folder.is_dir():
                raise SpecError(f"code {code}: no such folder")
            loaded = loaded.model_copy(update={"code": str(folder.resolve())})
        if max_cost is not None and not (max_cost >= 0 and max_cost != float("inf")):
            raise UsageError(f"max_cost {max_cost}: give a finite amount >= 0")
        return self.service.plan(
            loaded,
            {k: str(v) for k, v in (inputs or {}).items()},
            output,
            idempotency_key,
            base_dir=base_dir,
            max_cost=max_cost,
        )

    def check(self, plan: SubmitPlan) -> None:
        """Ask the executor whether it can run the plan now (engine reachable, image present, scheduler up):
        a missing one is one error before anything is built or uploaded."""
        self.service.executor.check(self.service.launch_request(plan))

    def submit(
        self,
        spec: str | Path | JobSpec | Mapping[str, Any] | SubmitPlan,
        *,
        inputs: Mapping[str, str | Path] | None = None,
        params: Mapping[str, object] | None = None,
        sets: Mapping[str, object] | Sequence[str] | None = None,
        name: str | None = None,
        code: str | Path | None = None,
        output: str | None = None,
        idempotency_key: str | None = None,
        max_cost: float | None = None,
        secret_env: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
        on_message: Callable[[str], None] | None = None,
        subscribers: Sequence[TransferSubscriber] = (),
    ) -> Job:
        """Submit a job; returns at once (the runner starts in the background).

        `spec`: a template name, a spec file, a dict, a JobSpec, or a plan from `plan()` (then the other
        spec arguments are already in it; give the same `idempotency_key`). `inputs`: name -> URI or local
        path (local ones are uploaded first). `params`: the template's params (typed as in the template; an
        unknown name is a SpecError that lists the valid ones). `sets`: any other `--set` key
        (`resources.cpus`, `timeout`). `secret_env`: name -> value for the job's environment only, never
        stored in a record. `job.created` is False when the idempotency key found an earlier job.
        """
        secrets = dict(secret_env or {})
        for env_name, value in secrets.items():
            if not _ENV_NAME.match(env_name) or env_name.startswith("JOBSUB_"):
                raise UsageError(f"secret_env {env_name!r}: give an environment variable name (not JOBSUB_*)")
            register_secret(value)
        from jobsub.jobs.spec import JobSpec

        if isinstance(spec, str | Path | JobSpec | Mapping):
            plan = self.plan(
                spec,
                inputs=inputs,
                params=params,
                sets=sets,
                name=name,
                code=code,
                output=output,
                idempotency_key=idempotency_key,
                max_cost=max_cost,
            )
        else:
            plan = spec
        job_id, created = self.service.submit(
            plan,
            _subscribers(progress, subscribers),
            idempotency_key,
            on_message=on_message or (lambda _: None),
            secret_env=secrets,
        )
        return Job(self, job_id, created)

    def job(self, job_id: str, check: bool = True) -> Job:
        """A handle on an existing job (JobNotFoundError when there is none; `check=False` reads nothing
        now, and the first call that reads the record raises it instead)."""
        if check:
            self.service.record(job_id).read_status()
        return Job(self, job_id)

    def jobs(self, state: str | State | None = None, limit: int = 50, name: str | None = None) -> list[JobRow]:
        """Jobs of this profile, newest first; `state` keeps one state, `name` one template's jobs. Rows carry
        their cost when the profile has prices."""
        from jobsub.jobs.records import State

        wanted = state.value if isinstance(state, State) else state
        if wanted is not None and wanted.upper() not in State.__members__:
            raise UsageError(f"state {state!r}: one of {', '.join(State.__members__)}")
        return self.service.list_jobs(wanted, limit, name=name, with_cost=not self.profile.prices.is_zero)

    def cost(self, since: float | None = 30 * 86400, prefix: str | None = None) -> Bill:
        """The bill before the cloud sends it (`jobsub cost`): compute of the jobs started in the last `since`
        seconds (None: all) plus a month of the storage under `prefix` (default: the jobs' bucket), from the
        profile's price table."""
        from jobsub.jobs.billing import account

        return account(self.service, since, prefix)
