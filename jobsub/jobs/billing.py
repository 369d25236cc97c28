"""Cost of jobs in one place: the estimate a submit shows, the actual cost of a job, and `jobsub cost`.

Pure arithmetic lives in jobsub/costs.py; this module gathers what it needs from the job records and the
object store (earlier runs of the same template, bytes uploaded, bytes kept under a job's prefix). It reads
records, not the service: what it needs of a job list is the `JobSource` protocol, so billing and the
service do not import each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from jobsub.config import Profile
from jobsub.costs import Estimate, Prices, compute_cost, estimate, hourly_rate, money, storage_cost
from jobsub.errors import BucketNotFoundError, JobError, SpecError, StorageError
from jobsub.jobs.models import Bill, BillJob, CostRecord, JobCost, JobDocument, JobRow, StorageBill
from jobsub.jobs.records import JobRecord
from jobsub.jobs.spec import JobSpec
from jobsub.storage.base import ObjectStore
from jobsub.uri import ObjectURI

if TYPE_CHECKING:  # imported where an upload is planned: following a job's log needs no transfer engine
    from jobsub.transfer import TransferOptions
    from jobsub.transfer.planning import UploadPlan


class JobSource(Protocol):
    """What billing needs from a list of jobs (JobService is one): the profile, its store and records."""

    profile: Profile
    store: ObjectStore
    jobs_uri: ObjectURI

    def list_jobs(
        self, state: str | None = None, limit: int = 50, name: str | None = None, with_cost: bool = False
    ) -> list[JobRow]: ...

    def record(self, job_id: str) -> JobRecord: ...


#: how many earlier jobs of the same name are read for the "typical" duration
HISTORY_LIMIT = 20


class CostLimitError(SpecError):
    """The upper estimate of a job exceeds its --max-cost: refused before anything is uploaded (exit 2)."""


def job_rate(prices: Prices, spec: JobSpec, memory_bytes: int | None) -> float:
    """Price per hour of the spec's resources (`memory_bytes`: resources.memory, parsed once by the caller)."""
    res = spec.resources
    return hourly_rate(prices, res.cpus, memory_bytes, res.gpus, res.flavor) * max(1, res.nodes)


def upload_plan(store: ObjectStore, path: Path, dest: str, options: TransferOptions | None = None) -> UploadPlan:
    """The transfer plan the upload of one input will carry out (transfer/planning.py, what `jobsub upload
    --dry-run` prints): its requests and bytes are what the estimate prices, so the two cannot disagree.

    Read-only (HEAD, ListParts, local reads); the SHA-256 it computes for a multipart input is remembered in
    the hash cache, so the upload that follows does not read the file for it again.
    """
    from jobsub.transfer import TransferManager

    return TransferManager(store, options).plan_upload([path], ObjectURI.parse(dest))


def earlier_durations(service: JobSource, spec: JobSpec, limit: int = HISTORY_LIMIT) -> list[float]:
    """Durations of the newest earlier SUCCEEDED jobs with this name and the same resources."""
    durations: list[float] = []
    wanted = spec.resources.model_dump()
    try:
        rows = service.list_jobs(state="SUCCEEDED", limit=limit, name=spec.name)
    except StorageError:
        return []
    for row in rows:
        if row.duration_seconds is None:
            continue
        try:
            job = service.record(row.id).read_document()
        except (JobError, StorageError):
            continue
        if job.spec.resources.model_dump() == wanted:
            durations.append(row.duration_seconds)
        if len(durations) >= limit:
            break
    return durations


def estimate_plan(
    service: JobSource,
    spec: JobSpec,
    uploads: Iterable[UploadPlan],
    code_bytes: int | None,
    timeout_seconds: float | None,
    memory_bytes: int | None,
) -> Estimate:
    """What a submit of `spec` will cost: the inputs' transfer plans (their requests, the bytes they keep
    stored) and the code archive, the job's rate up to its timeout (units already parsed by the plan)."""
    prices = service.profile.prices
    upload_bytes, requests = 0, 3  # job.json, status.json, executor.json
    for plan in uploads:
        totals = plan.totals()
        upload_bytes += totals["bytes_total"]  # stored for the job whether sent now or already there
        requests += totals["requests"]
    if code_bytes is not None:
        upload_bytes += code_bytes
        requests += 1
    history = earlier_durations(service, spec) if not prices.is_zero else []
    return estimate(prices, job_rate(prices, spec, memory_bytes), timeout_seconds, history, upload_bytes, requests)


def check_max_cost(plan_estimate: Estimate, max_cost: float | None) -> None:
    if max_cost is None:
        return
    upper = plan_estimate.upper
    if upper is not None and upper > max_cost:
        raise CostLimitError(
            f"estimated cost up to {money(upper, plan_estimate.currency)} exceeds --max-cost "
            f"{money(max_cost, plan_estimate.currency)} [{plan_estimate.table}]: lower the timeout or resources, "
            "or raise --max-cost"
        )


def cost_record(prices: Prices, plan_estimate: Estimate, max_cost: float | None) -> CostRecord:
    """What job.json keeps about cost: enough for the runtime to stop at the limit and for `status` to bill."""
    return CostRecord(
        currency=prices.currency,
        table=prices.table,
        source=prices.source,
        rate_per_hour=plan_estimate.rate_per_hour,
        storage_gib_month=prices.storage_gib_month,
        max_cost=max_cost,
        estimate=plan_estimate,
    )


def stored_bytes(store: ObjectStore, record_root: ObjectURI, job: JobDocument) -> int:
    """Bytes kept for a job: its record (logs, metrics) and its outputs, counted once each."""
    prefixes = {record_root.as_prefix()}
    if job.outputs:
        prefixes.add(ObjectURI.parse(job.outputs).as_prefix())
    total = 0
    seen: set[tuple[str, str]] = set()
    for prefix in prefixes:
        try:
            for obj in store.iter_objects(prefix.bucket, prefix.key):
                if (prefix.bucket, obj.key) not in seen:
                    seen.add((prefix.bucket, obj.key))
                    total += obj.size
        except StorageError:
            continue
    return total


def job_cost(job: JobDocument, duration_seconds: float | None, stored: int | None = None) -> JobCost:
    """The actual cost of a job so far: duration x its rate, plus a month of what it keeps in storage."""
    cost = job.cost or CostRecord()
    result = JobCost(
        currency=cost.currency,
        table=cost.table,
        rate_per_hour=cost.rate_per_hour,
        compute=compute_cost(cost.rate_per_hour, duration_seconds),
        max_cost=cost.max_cost,
    )
    if stored is not None:
        result.stored_bytes = stored
        result.storage_month = stored / (1 << 30) * cost.storage_gib_month
    return result


def account(service: JobSource, since_seconds: float | None, prefix: str | None) -> Bill:
    """`jobsub cost`: compute of the jobs started in the period, and what the storage under PREFIX costs a month."""
    prices = service.profile.prices
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=since_seconds) if since_seconds else None
    jobs: list[BillJob] = []
    compute_total = 0.0
    for row in service.list_jobs(limit=100_000, with_cost=True):
        started = row.started or row.created
        if cutoff and started and datetime.fromisoformat(started) < cutoff:
            continue
        if row.cost is None:
            continue
        compute_total += row.cost.compute if row.cost.currency == prices.currency else 0.0
        jobs.append(BillJob(id=row.id, state=row.state, duration_seconds=row.duration_seconds, cost=row.cost))
    target = ObjectURI.parse(prefix) if prefix else ObjectURI(service.jobs_uri.bucket, "")
    objects, total = 0, 0
    try:
        for obj in service.store.iter_objects(target.bucket, target.key):
            objects += 1
            total += obj.size
    except BucketNotFoundError:  # a local store creates its buckets on first write: nothing stored yet
        pass
    storage_month = storage_cost(prices, total)
    return Bill(
        currency=prices.currency,
        table=prices.table,
        source=prices.source,
        since_seconds=since_seconds,
        jobs=jobs,
        compute=compute_total,
        storage=StorageBill(prefix=str(target), objects=objects, bytes=total, per_month=storage_month),
        total=compute_total + storage_month,
    )
