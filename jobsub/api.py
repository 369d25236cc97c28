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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobsub.config import Profile, resolve_profile
from jobsub.errors import JobTimeoutError, SpecError, UsageError
from jobsub.jobs.models import JobCost, JobInfo, JobRow, LogLine, Results
from jobsub.jobs.records import JobStatus, State
from jobsub.jobs.service import JobService
from jobsub.jobs.spec import JobSpec, apply_sets, load_spec
from jobsub.jobs.templates import find_template, template_paths
from jobsub.redact import register_secret
from jobsub.storage import open_store
from jobsub.storage.base import ObjectStore
from jobsub.transfer import TransferManager, TransferOptions, TransferSubscriber, TransferSummary
from jobsub.uri import ObjectURI

__all__ = [
    "Client",
    "Job",
    "JobCost",
    "JobInfo",
    "JobRow",
    "JobStatus",
    "JobTimeoutError",
    "ProgressCallback",
    "Results",
    "State",
    "TransferProgress",
]


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


def _subscribers(progress: ProgressCallback | None) -> list[TransferSubscriber]:
    return [_CallbackSubscriber(progress)] if progress else []


def _set_word(value: object) -> str:
    """A Python value as the text `--set` would take (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Job:
    """A handle on one job: everything it does reads the job's record, so any machine with the profile can
    hold one (`Client.job(id)`), and a Job object stays valid after the process that submitted it exits."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id
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

    def logs(self, follow: bool = False, tail: int | None = None, timestamps: bool = False) -> Iterator[str]:
        """The job's log lines in order; with `follow`, keeps yielding until the job is final, then sets
        `final_status`. `tail` starts from the last N lines."""
        service = self.client.service

        def render(line: LogLine) -> str:
            return f"{line.stamp()} {line.text}" if timestamps else line.text

        if not follow:
            for line in service.log_lines(self.id, tail):
                yield render(line)
            return
        for item in service.follow(self.id, tail=tail):
            if isinstance(item, JobStatus):
                self.final_status = item
            else:
                yield render(item)

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> JobStatus:
        """Block until the job is final; JobTimeoutError after `timeout` seconds (the job keeps running)."""
        status = self.client.service.wait(self.id, timeout=timeout, poll=poll)
        self.final_status = status
        return status

    def cancel(self, wait: bool = False, timeout: float = 120) -> JobStatus:
        """Ask the job to stop (SIGTERM, SIGKILL after its grace period). With `wait`, its final status."""
        status = self.client.service.cancel(self.id)
        if wait and not status.state.final:
            return self.wait(timeout=timeout)
        return status

    def results(self) -> Results:
        """Final metrics (metrics.json, else the last metrics line), plots and output files by URI."""
        return self.client.service.results(self.id)

    def cost(self) -> JobCost:
        """Compute so far (duration x rate) and a month of the storage it keeps, from the profile's prices."""
        return self.client.service.describe(self.id).cost

    def download(self, dest: str | Path, progress: ProgressCallback | None = None) -> TransferSummary:
        """The job's outputs into `dest` (resumable and verified, like `jobsub download JOB DEST`)."""
        return self.client.download(str(self.client.service.outputs_uri(self.id)), dest, progress=progress)


class Client:
    """One profile's object store and jobs. Cheap to create; the store opens on first use.

    `profile` is a profile name (else JOBSUB_PROFILE, else the config's current, else the built-in local
    profile) or a Profile object built in code; `store` replaces the profile's store (tests, custom stores).
    """

    def __init__(
        self,
        profile: str | Profile | None = None,
        *,
        store: ObjectStore | None = None,
        executor: str | None = None,
        concurrency: int = 8,
    ) -> None:
        if isinstance(profile, Profile):
            self.profile_name, self.profile = "custom", profile
        else:
            self.profile_name, self.profile = resolve_profile(profile)
        self._store = store
        self._executor = executor
        self._service: JobService | None = None
        self.concurrency = concurrency

    def __repr__(self) -> str:
        return f"Client(profile={self.profile_name!r})"

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.profile, self.concurrency)
        return self._store

    @property
    def service(self) -> JobService:
        """The job service under this client (for what the API does not wrap yet)."""
        if self._service is None:
            self._service = JobService(self.profile, self.store, self.profile_name, executor=self._executor)
        return self._service

    # -- transfers --------------------------------------------------------------------------------------
    def _options(self, part_size: int | None, max_bandwidth: int | None) -> TransferOptions:
        return TransferOptions(part_size=part_size, concurrency=self.concurrency, max_bandwidth=max_bandwidth)

    def upload(
        self,
        sources: str | Path | list[str | Path],
        dest: str,
        *,
        progress: ProgressCallback | None = None,
        part_size: int | None = None,
        max_bandwidth: int | None = None,
    ) -> TransferSummary:
        """Upload files or folders under `dest` (s3://bucket/prefix): resumable, verified, unchanged files
        skipped. Raises SourceNotFoundError, StorageError, IntegrityError, SourceChangedError."""
        items: list[str | Path] = list(sources) if isinstance(sources, list) else [sources]
        manager = TransferManager(self.store, self._options(part_size, max_bandwidth), _subscribers(progress))
        return manager.upload(items, ObjectURI.parse(dest))

    def download(
        self,
        source: str,
        dest: str | Path,
        *,
        progress: ProgressCallback | None = None,
        part_size: int | None = None,
        max_bandwidth: int | None = None,
    ) -> TransferSummary:
        """Download an object or a prefix into `dest`: parallel ranged reads, verified, never outside dest."""
        manager = TransferManager(self.store, self._options(part_size, max_bandwidth), _subscribers(progress))
        return manager.download(ObjectURI.parse(source), dest)

    # -- jobs -------------------------------------------------------------------------------------------
    def templates(self) -> list[str]:
        """Names of the job templates (built-in and the user's own)."""
        return list(template_paths())

    def load_spec(self, spec: str | Path | JobSpec | Mapping[str, Any]) -> tuple[JobSpec, Path | None]:
        """A spec from a JobSpec, a dict, a YAML file path or a template name, and the folder that relative
        paths in it are read from (None: the current folder)."""
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

    def submit(
        self,
        spec: str | Path | JobSpec | Mapping[str, Any],
        *,
        inputs: Mapping[str, str | Path] | None = None,
        params: Mapping[str, object] | None = None,
        sets: Mapping[str, object] | None = None,
        name: str | None = None,
        code: str | Path | None = None,
        output: str | None = None,
        idempotency_key: str | None = None,
        max_cost: float | None = None,
        secret_env: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> Job:
        """Submit a job; returns at once (the runner starts in the background).

        `spec`: a template name, a spec file, a dict or a JobSpec. `inputs`: name -> URI or local path (local
        ones are uploaded first). `params`: the template's params (typed as in the template; an unknown name
        is a SpecError that lists the valid ones). `sets`: any other `--set` key (`resources.cpus`, `timeout`).
        `secret_env`: name -> value for the job's environment only, never stored in a record.
        """
        loaded, base_dir = self.load_spec(spec)
        assignments = [f"params.{k}={_set_word(v)}" for k, v in (params or {}).items()]
        assignments += [f"{k}={_set_word(v)}" for k, v in (sets or {}).items()]
        if name:
            assignments.append(f"name={name}")
        if assignments:
            loaded = apply_sets(loaded, assignments)
        if code is not None:
            folder = Path(code).expanduser()
            if not folder.is_dir():
                raise SpecError(f"code {code}: no such folder")
            loaded = loaded.model_copy(update={"code": str(folder.resolve())})
        if max_cost is not None and not (max_cost >= 0 and max_cost != float("inf")):
            raise UsageError(f"max_cost {max_cost}: give a finite amount >= 0")
        secrets = dict(secret_env or {})
        for env_name, value in secrets.items():
            if not _ENV_NAME.match(env_name) or env_name.startswith("JOBSUB_"):
                raise UsageError(f"secret_env {env_name!r}: give an environment variable name (not JOBSUB_*)")
            register_secret(value)
        plan = self.service.plan(
            loaded,
            {k: str(v) for k, v in (inputs or {}).items()},
            output,
            idempotency_key,
            base_dir=base_dir,
            max_cost=max_cost,
        )
        job_id, _ = self.service.submit(
            plan,
            _subscribers(progress),
            idempotency_key,
            on_message=on_message or (lambda _: None),
            secret_env=secrets,
        )
        return Job(self, job_id)

    def job(self, job_id: str) -> Job:
        """A handle on an existing job (JobNotFoundError when there is none)."""
        self.service.record(job_id).read_status()
        return Job(self, job_id)

    def jobs(self, state: str | State | None = None, limit: int = 50, name: str | None = None) -> list[JobRow]:
        """Jobs of this profile, newest first; `state` keeps one state, `name` one template's jobs."""
        wanted = state.value if isinstance(state, State) else state
        if wanted is not None and wanted.upper() not in State.__members__:
            raise UsageError(f"state {state!r}: one of {', '.join(State.__members__)}")
        return self.service.list_jobs(wanted, limit, name=name, with_cost=not self.profile.prices.is_zero)
