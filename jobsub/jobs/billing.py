"""Cost of jobs in one place: the estimate a submit shows, the actual cost of a job, and `jobsub cost`.

Pure arithmetic lives in jobsub/costs.py; this module gathers what it needs from the job records and the
object store (earlier runs of the same template, bytes uploaded, bytes kept under a job's prefix).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobsub.costs import Estimate, Prices, compute_cost, estimate, hourly_rate, money, storage_cost
from jobsub.errors import BucketNotFoundError, JobNotFoundError, SpecError, StorageError
from jobsub.transfer.planning import DEFAULT_PART_SIZE
from jobsub.transfer.sources import folder_files
from jobsub.units import parse_duration, parse_size

if TYPE_CHECKING:
    from jobsub.jobs.service import JobService, SubmitPlan
    from jobsub.jobs.spec import JobSpec

#: how many earlier jobs of the same name are read for the "typical" duration
HISTORY_LIMIT = 20


class CostLimitError(SpecError):
    """The upper estimate of a job exceeds its --max-cost: refused before anything is uploaded (exit 2)."""


def job_rate(prices: Prices, spec: JobSpec) -> float:
    res = spec.resources
    memory = parse_size(res.memory) if res.memory else None
    return hourly_rate(prices, res.cpus, memory, res.gpus, getattr(res, "flavor", None)) * max(
        1, int(getattr(res, "nodes", 1) or 1)
    )


def _local_bytes(path: Path) -> tuple[int, int]:
    """(bytes, requests to upload them) for a local file or folder."""
    files = [path] if path.is_file() else folder_files(path)[0]
    total, requests = 0, 0
    for file in files:
        size = file.stat().st_size
        total += size
        parts = max(1, math.ceil(size / DEFAULT_PART_SIZE))
        requests += 1 if parts == 1 else parts + 2  # single PUT, or create + parts + complete
    return total, requests


def earlier_durations(service: JobService, spec: JobSpec, limit: int = HISTORY_LIMIT) -> list[float]:
    """Durations of the newest earlier SUCCEEDED jobs with this name and the same resources."""
    durations: list[float] = []
    wanted = spec.resources.model_dump()
    try:
        rows = service.list_jobs(state="SUCCEEDED", limit=limit, name=spec.name)
    except StorageError:
        return []
    for row in rows:
        if row["duration_seconds"] is None:
            continue
        try:
            job = service.record(row["id"]).read_job()
        except (JobNotFoundError, StorageError):
            continue
        if job.get("spec", {}).get("resources") == wanted:
            durations.append(float(row["duration_seconds"]))
        if len(durations) >= limit:
            break
    return durations


def estimate_plan(service: JobService, plan: SubmitPlan) -> Estimate:
    prices = service.profile.prices
    upload_bytes, requests = 0, 3  # job.json, status.json, executor.json
    for _, path, _ in plan.uploads:
        size, count = _local_bytes(path)
        upload_bytes += size
        requests += count
    if plan.code:
        upload_bytes += int(plan.code["bytes"])
        requests += 1
    spec = plan.spec
    timeout = parse_duration(spec.timeout) if spec.timeout else None
    history = earlier_durations(service, spec) if not prices.is_zero else []
    return estimate(prices, job_rate(prices, spec), timeout, history, upload_bytes, requests)


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


def cost_record(service: JobService, plan: SubmitPlan, plan_estimate: Estimate, max_cost: float | None) -> dict:
    """What job.json keeps about cost: enough for the runtime to stop at the limit and for `status` to bill."""
    prices = service.profile.prices
    return {
        "currency": prices.currency,
        "table": prices.table,
        "source": prices.source,
        "rate_per_hour": plan_estimate.rate_per_hour,
        "storage_gib_month": prices.storage_gib_month,
        "max_cost": max_cost,
        "estimate": plan_estimate.as_dict(),
    }


def stored_bytes(service: JobService, job_id: str, job: dict[str, Any]) -> int:
    """Bytes kept for a job: its record (logs, metrics) and its outputs, counted once each."""
    from jobsub.uri import ObjectURI

    prefixes = {service.record(job_id).root.as_prefix()}
    if job.get("outputs"):
        prefixes.add(ObjectURI.parse(job["outputs"]).as_prefix())
    total = 0
    seen: set[tuple[str, str]] = set()
    for prefix in prefixes:
        try:
            for obj in service.store.iter_objects(prefix.bucket, prefix.key):
                if (prefix.bucket, obj.key) not in seen:
                    seen.add((prefix.bucket, obj.key))
                    total += obj.size
        except StorageError:
            continue
    return total


def job_cost(job: dict[str, Any], duration_seconds: float | None, stored: int | None = None) -> dict[str, Any]:
    """The actual cost of a job so far: duration x its rate, plus a month of what it keeps in storage."""
    cost = job.get("cost") or {}
    rate = float(cost.get("rate_per_hour", 0.0))
    currency = cost.get("currency", "USD")
    compute = compute_cost(rate, duration_seconds)
    result: dict[str, Any] = {
        "currency": currency,
        "table": cost.get("table", "none"),
        "rate_per_hour": rate,
        "compute": compute,
        "max_cost": cost.get("max_cost"),
    }
    if stored is not None:
        month = stored / (1 << 30) * float(cost.get("storage_gib_month", 0.0))
        result.update(stored_bytes=stored, storage_month=month)
    return result


def describe_cost(cost: dict[str, Any]) -> str:
    text = f"{money(cost['compute'], cost['currency'])} compute at {cost['rate_per_hour']:g}/h"
    if "storage_month" in cost:
        text += f" + {money(cost['storage_month'], cost['currency'])}/month storage ({cost['stored_bytes']} B kept)"
    return text + f" [{cost['table']}]"


def account(service: JobService, since_seconds: float | None, prefix: str | None) -> dict[str, Any]:
    """`jobsub cost`: compute of the jobs started in the period, and what the storage under PREFIX costs a month."""
    from jobsub.uri import ObjectURI

    prices = service.profile.prices
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=since_seconds) if since_seconds else None
    jobs: list[dict[str, Any]] = []
    compute_total = 0.0
    for row in service.list_jobs(limit=100_000, with_cost=True):
        started = row.get("started") or row.get("created")
        if cutoff and started and datetime.fromisoformat(started) < cutoff:
            continue
        cost = row.pop("cost")
        if cost is None:
            continue
        compute_total += cost["compute"] if cost["currency"] == prices.currency else 0.0
        jobs.append({"id": row["id"], "state": row["state"], "duration_seconds": row["duration_seconds"], **cost})
    target = ObjectURI.parse(prefix) if prefix else ObjectURI(service.jobs_uri.bucket, "")
    objects, total = 0, 0
    try:
        for obj in service.store.iter_objects(target.bucket, target.key):
            objects += 1
            total += obj.size
    except BucketNotFoundError:  # a local store creates its buckets on first write: nothing stored yet
        pass
    storage_month = storage_cost(prices, total)
    return {
        "currency": prices.currency,
        "table": prices.table,
        "source": prices.source,
        "since_seconds": since_seconds,
        "jobs": jobs,
        "compute": compute_total,
        "storage": {"prefix": str(target), "objects": objects, "bytes": total, "per_month": storage_month},
        "total": compute_total + storage_month,
    }
