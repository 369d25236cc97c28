"""The one adapter between the web view and the job service: every read of a job goes through here.

It reads jobs as the service's models (JobDocument, JobStatus, Results, JobCost; never job.json itself) and
keeps its own rows as models (WebRow); each page function returns its page's model (web/models.py), which
app.py dumps and `dumps` cleans (finite numbers, bounded and redacted strings). Records come from a shared bucket and
were written by other programs: every size is bounded, every key the browser names is checked against the
job's own prefixes, and nothing here writes (the service may still turn a job whose runner is gone LOST,
exactly as `jobsub status` does).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from jobsub.errors import BucketNotFoundError, JobNotFoundError, JobsubError, RecordFormatError, StorageError
from jobsub.jobs import billing
from jobsub.jobs.models import JobDocument, JobRow, JobStatus, State, job_name
from jobsub.jobs.records import JobRecord
from jobsub.redact import redact
from jobsub.uri import ObjectURI, key_problem
from jobsub.web.models import (
    CompareJob,
    ComparePage,
    ConfusionMatrix,
    FoundLine,
    HeadlineValue,
    JobPage,
    LogPage,
    LogTail,
    MetricRow,
    MetricsPage,
    OutputEntry,
    PageCost,
    ResultsPage,
    StatusPage,
    StoragePage,
    StorageSummary,
    WebLogLine,
)

if TYPE_CHECKING:
    from jobsub.api import Client
    from jobsub.jobs.service import JobService

#: what one range read of a log chunk or an output brings into memory
READ_BYTES = 1 << 20
#: one log line is cut here (a job can print a megabyte without a newline)
MAX_LINE_CHARS = 16_384
#: metrics.jsonl: only its last part is read past this size, and at most this many rows are kept
MAX_METRICS_BYTES = 16 << 20
MAX_METRIC_ROWS = 50_000
#: job.json, status.json, metrics.json, confusion_matrix.json are small documents; larger ones are refused
MAX_DOCUMENT_BYTES = 4 << 20
#: the jobs page never asks for more rows than this at once
MAX_PAGE = 500
SORT_KEYS = ("created", "id", "name", "state", "executor", "started", "duration", "cost", "headline")
_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")


class WebInputError(ValueError):
    """A request named something this view will not serve (a path outside the job's outputs, a bad sort)."""


def clean(value: Any, depth: int = 0) -> Any:
    """JSON that every browser parses: non-finite numbers become null, strings are bounded and redacted."""
    if depth > 20:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value if len(value) <= MAX_LINE_CHARS else value[:MAX_LINE_CHARS] + "…"
        return _USERINFO.sub("***@", redact(text))
    if isinstance(value, dict):
        return {str(clean(k, depth + 1)): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    return clean(str(value), depth + 1)


def dumps(value: Any) -> str:
    """The one serializer of API answers: cleaned, then one more redaction pass over the whole text."""
    return _USERINFO.sub("***@", redact(json.dumps(clean(value), ensure_ascii=False, allow_nan=False)))


def _line(raw: Any) -> WebLogLine | None:
    """A chunk's line as the page's model. The chunk is the job's own writing: a time that is not a finite
    number is none, the stream is cut to 16 characters and any text that is not a string is shown as JSON."""
    if not isinstance(raw, dict):
        return None
    text, stamp = raw.get("l"), raw.get("t")
    return WebLogLine(
        t=stamp if _is_number(stamp) else None,
        s=clean(str(raw.get("s", ""))[:16]),
        l=clean(text if isinstance(text, str) else json.dumps(clean(text))),
    )


def _parse_lines(data: bytes) -> list[WebLogLine]:
    lines = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            parsed = _line(json.loads(raw))
        except (ValueError, RecursionError):
            parsed = WebLogLine(t=None, s="?", l=clean(raw.decode("utf-8", "replace")))
        if parsed is not None:
            lines.append(parsed)
    return lines


class WebRow(JobRow):
    """One row of the web view's jobs list: a JobRow (built by `JobRow.from_status`, as `jobsub jobs` builds
    its rows) plus what the page shows and sorts by. Its cost is always a key (null when unreadable)."""

    costed: bool = Field(default=True, exclude=True)
    finished: str | None = None
    executor: str | None = None
    template: str | None = None
    headline: HeadlineValue | None = None

    @classmethod
    def from_status(cls, job_id: str, status: JobStatus, **fields: Any) -> WebRow:
        return super().from_status(job_id, status, finished=status.finished, **fields)

    def sort_value(self, sort: str) -> Any:
        """The value the list is sorted by (None sorts last whatever the order)."""
        if sort == "duration":
            return self.duration_seconds
        if sort == "cost":
            return self.cost.compute if self.cost else None
        if sort == "headline":
            return self.headline.best if self.headline else None
        return {
            "created": self.created,
            "id": self.id,
            "name": self.name,
            "state": self.state.value,
            "executor": self.executor,
            "started": self.started,
        }[sort]


class JobsPage(BaseModel):
    """One page of the jobs list: the rows (what `jobsub jobs` shows, plus the page's columns) and where the
    page sits in the whole list."""

    total: int
    offset: int
    limit: int
    jobs: list[WebRow]


def _dict(value: Any) -> dict[str, Any]:
    """A record's field that should be an object; anything else another tool wrote counts as empty."""
    return value if isinstance(value, dict) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class WebData:
    """Reads for the web view over one profile's jobs: a `jobsub.api.Client` (what `jobsub ui` passes) or the
    JobService under one (its store and jobs prefix)."""

    READERS = 8  # parallel reads of a page's records
    IDS_TTL = 2.0  # seconds the list of job ids is reused (a new job shows up within this; states never wait)

    def __init__(self, source: Client | JobService) -> None:
        from jobsub.api import Client

        service = source.service if isinstance(source, Client) else source
        self.service = service
        self.store = service.store
        self.jobs_uri: ObjectURI = service.jobs_uri
        self._final_rows: dict[str, WebRow] = {}  # rows of finished jobs: they never change again
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.READERS, thread_name_prefix="web-read")
        self._rows_pool = ThreadPoolExecutor(max_workers=self.READERS, thread_name_prefix="web-row")
        self._ids: tuple[float, list[str]] = (0.0, [])

    # -- small documents ---------------------------------------------------------------------------------
    def _record(self, job_id: str) -> JobRecord:
        return self.service.record(job_id)

    def _document(self, bucket: str, key: str) -> Any:
        info = self.store.head(bucket, key)
        if info is None:
            return None
        if info.size > MAX_DOCUMENT_BYTES:
            raise StorageError(f"s3://{bucket}/{key} is {info.size} bytes; not read (limit {MAX_DOCUMENT_BYTES})")
        try:
            return json.loads(self.store.get(bucket, key))
        except ValueError:
            return None

    def _job_doc(self, job_id: str) -> JobDocument:
        """job.json as its model, through the service (bounded in size); one this jobsub cannot read is
        answered like a missing job, with the record's own reason."""
        try:
            return self.service.document(job_id, MAX_DOCUMENT_BYTES)
        except RecordFormatError as exc:
            raise JobNotFoundError(str(exc)) from None

    # -- the jobs list -----------------------------------------------------------------------------------
    def job_ids(self) -> list[str]:
        """Every job id under the profile's jobs prefix, newest first (one delimited listing, no scan; reused
        for IDS_TTL seconds, so a page that refreshes does not list again at once)."""
        at, ids = self._ids
        if time.monotonic() - at < self.IDS_TTL:
            return list(ids)
        ids = self._list_ids()
        self._ids = (time.monotonic(), ids)
        return list(ids)

    def _list_ids(self) -> list[str]:
        key = self.jobs_uri.key
        try:
            listing = self.store.list(self.jobs_uri.bucket, key, "/")
        except BucketNotFoundError:
            return []
        ids = [p[len(key) :].rstrip("/") for p in listing.prefixes]
        ids = [i for i in ids if i and not i.startswith(("_", "."))]
        return sorted(ids, key=lambda i: i.rsplit("-", 3)[-3:], reverse=True)

    def _headline(self, job: JobDocument, job_id: str) -> HeadlineValue | None:
        """The best value of the spec's headline metric in the job's metrics (read only when it has one)."""
        headline = job.spec.headline
        if headline is None:
            return None
        metric, goal = headline.metric, headline.goal
        values: list[tuple[int | float, int | float | None]] = []
        for row in self._metric_rows(job_id):
            value, step = row.get(metric), row.get("step")
            if isinstance(value, int | float) and _is_number(value):
                values.append((value, step if isinstance(step, int | float) and _is_number(step) else None))
        if not values:
            return HeadlineValue(metric=metric, goal=goal)
        best = (min if goal == "min" else max)(values, key=lambda v: v[0])
        return HeadlineValue(metric=metric, goal=goal, best=best[0], step=best[1])

    def _row(self, job_id: str, status: JobStatus) -> WebRow:
        with self._lock:
            cached = self._final_rows.get(job_id)
        if cached is not None:
            return cached
        row = WebRow.from_status(job_id, status)
        try:
            job = self._job_doc(job_id)
            row.executor = job.executor or None
            row.template = job.spec.name
            row.cost = billing.job_cost(job, status.duration())
            row.headline = self._headline(job, job_id)
        except (JobsubError, ValueError):
            pass  # a record another tool wrote badly still lists, with what could be read
        if status.state.final and status.state != State.LOST:  # LOST may still turn final: never cached
            with self._lock:
                self._final_rows[job_id] = row
        return row

    def _rows(self, ids: list[str]) -> list[WebRow]:
        with self._lock:
            cached = {i: self._final_rows[i] for i in ids if i in self._final_rows}
        live = [i for i in ids if i not in cached]
        # the service asks each executor once per group for all of its live jobs (one squeue for many); the
        # groups read their status records in parallel (one GET each: the latency adds up on a remote store)
        groups = [live[i :: self.READERS] for i in range(self.READERS) if live[i :: self.READERS]]
        statuses = {i: status for found in self._pool.map(self.service.statuses, groups) for i, status in found}
        fresh = dict(zip(statuses, self._rows_pool.map(lambda i: self._row(i, statuses[i]), statuses), strict=True))
        return [cached.get(i) or fresh[i] for i in ids if i in cached or i in fresh]

    def jobs(
        self,
        offset: int = 0,
        limit: int = 50,
        state: str | None = None,
        name: str | None = None,
        template: str | None = None,
        sort: str = "created",
        order: str = "desc",
    ) -> JobsPage:
        """One page of the jobs list. Newest-first without a state filter reads only the page's records;
        another sort or a state filter reads every job once (finished ones are kept and never re-read)."""
        if sort not in SORT_KEYS:
            raise WebInputError(f"sort must be one of {', '.join(SORT_KEYS)}")
        if order not in ("asc", "desc"):
            raise WebInputError("order must be asc or desc")
        if state and state.upper() not in State.__members__:
            raise WebInputError(f"state must be one of {', '.join(State.__members__)}")
        offset, limit = max(0, offset), max(1, min(limit, MAX_PAGE))
        ids = self.job_ids()
        if name:
            ids = [i for i in ids if name.lower() in i.lower()]
        if template:
            ids = [i for i in ids if job_name(i) == template]
        cheap = sort in ("created", "id") and not state
        if cheap:
            if sort == "id":
                ids.sort(reverse=order == "desc")
            elif order == "asc":
                ids.reverse()
            total = len(ids)
            rows = self._rows(ids[offset : offset + limit])
        else:
            rows = self._rows(ids)
            if state:
                rows = [r for r in rows if r.state.value == state.upper()]
            rows = _sorted(rows, sort, order == "desc")
            total = len(rows)
            rows = rows[offset : offset + limit]
        return JobsPage(total=total, offset=offset, limit=limit, jobs=rows)

    # -- one job ------------------------------------------------------------------------------------------
    def status(self, job_id: str) -> StatusPage:
        status = self.service.status(job_id)
        return StatusPage(
            **status.model_dump(exclude={"executor"}),  # host and pid of the runner: not for the page
            duration_seconds=status.duration(),
            final=status.state.final,
        )

    def job(self, job_id: str) -> JobPage:
        """Status with its timeline, the resolved spec and params, inputs, outputs and cost."""
        job = self._job_doc(job_id)
        status = self.status(job_id)
        cost = billing.job_cost(job, status.duration_seconds)
        return JobPage(
            id=job_id,
            name=job_name(job_id),
            status=status,
            executor=self.service.executor_description(job_id),
            executor_kind=job.executor,
            record=self._record(job_id).uri(),
            spec=job.spec,
            params=job.spec.params,
            inputs=job.inputs,
            outputs=job.outputs,
            submitted_from=job.submitted_from,
            profile=job.profile,
            cost=PageCost(**dict(cost), estimate=job.cost.estimate if job.cost else None),
            headline=self._headline(job, job_id),
        )

    # -- logs ---------------------------------------------------------------------------------------------
    def _logs_prefix(self, job_id: str) -> tuple[str, str]:
        record = self._record(job_id)
        return record.bucket, record.key("logs/")

    def chunks(self, job_id: str, after: str = "") -> list[tuple[str, int]]:
        """(key, size) of the log chunks after `after` (a key this job's own logs/ prefix holds)."""
        bucket, prefix = self._logs_prefix(job_id)
        if after and not after.startswith(prefix):
            raise WebInputError("cursor is not a log chunk of this job")
        return [(o.key, o.size) for o in self.store.iter_objects(bucket, prefix, start_after=after or "")]

    def chunk_lines(self, job_id: str, key: str, size: int) -> Iterator[list[WebLogLine]]:
        """The chunk's lines in batches, read READ_BYTES at a time: memory stays flat whatever the log's size."""
        bucket, prefix = self._logs_prefix(job_id)
        if not key.startswith(prefix):
            raise WebInputError("not a log chunk of this job")
        carry = b""
        offset = 0
        while offset < size:
            data = carry + self.store.get_range(bucket, key, offset, min(READ_BYTES, size - offset))
            offset += min(READ_BYTES, size - offset)
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data[: 4 * MAX_LINE_CHARS]  # one endless line: kept bounded, cut when it ends
                continue
            carry = data[cut + 1 :]
            yield _parse_lines(data[:cut])
        if carry.strip():
            yield _parse_lines(carry)

    def log_page(self, job_id: str, after: str = "", max_chunks: int = 20) -> LogPage:
        """Lines of up to `max_chunks` whole chunks after the cursor; `cursor` continues where this stopped."""
        self.service.record(job_id).read_status()  # JobNotFoundError for an unknown id
        lines: list[WebLogLine] = []
        cursor = after
        chunks = self.chunks(job_id, after)
        for key, size in chunks[: max(1, min(max_chunks, 200))]:
            for batch in self.chunk_lines(job_id, key, size):
                lines.extend(batch)
            cursor = key
        return LogPage(lines=lines, cursor=cursor, more=len(chunks) > max_chunks)

    def log_tail(self, job_id: str, count: int = 500) -> LogTail:
        """The last `count` lines (chunks read from the end, each once) and the cursor a follower goes on from."""
        self.service.record(job_id).read_status()
        count = max(0, min(count, 10_000))
        chunks = self.chunks(job_id)
        lines: list[WebLogLine] = []
        for key, size in reversed(chunks):
            if len(lines) >= count:
                break
            part = [line for batch in self.chunk_lines(job_id, key, size) for line in batch]
            lines[:0] = part[-count:]
        return LogTail(lines=lines[-count:] if count else [], cursor=chunks[-1][0] if chunks else "")

    def log_text(self, job_id: str) -> Iterator[bytes]:
        """The whole log as text, chunk by chunk (a download; never held in memory whole)."""
        self.service.record(job_id).read_status()
        for key, size in self.chunks(job_id):
            for batch in self.chunk_lines(job_id, key, size):
                yield "".join(line.l + "\n" for line in batch).encode()

    def search_log(self, job_id: str, query: str, limit: int = 1000) -> Iterator[FoundLine]:
        """Lines containing `query` (case-insensitive), found by the server chunk by chunk, as they are found."""
        self.service.record(job_id).read_status()
        needle, found = query.lower()[:200], 0
        number = 0
        for key, size in self.chunks(job_id):
            for batch in self.chunk_lines(job_id, key, size):
                for line in batch:
                    number += 1
                    if needle in line.l.lower():
                        found += 1
                        yield FoundLine(**dict(line), n=number)
                        if found >= limit:
                            return

    # -- metrics ------------------------------------------------------------------------------------------
    def metrics_version(self, job_id: str) -> str | None:
        record = self._record(job_id)
        info = self.store.head(record.bucket, record.key("metrics.jsonl"))
        return f"{info.size}:{info.etag}" if info else None

    def _metric_rows(self, job_id: str) -> list[MetricRow]:
        """The last MAX_METRIC_ROWS rows of metrics.jsonl: at most 64 keys of 64 characters each, finite numbers
        only, plus the ``final`` marker (cleaned: a script may write anything there)."""
        record = self._record(job_id)
        info = self.store.head(record.bucket, record.key("metrics.jsonl"))
        if info is None:
            return []
        start = max(0, info.size - MAX_METRICS_BYTES)
        data = self.store.get_range(record.bucket, record.key("metrics.jsonl"), start, info.size - start)
        if start:
            data = data[data.find(b"\n") + 1 :]  # the first line was cut by the range
        rows: list[MetricRow] = []
        for raw in data.splitlines()[-MAX_METRIC_ROWS:]:
            try:
                row = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if isinstance(row, dict):
                rows.append(
                    {
                        str(k)[:64]: v if _is_number(v) else clean(v)
                        for k, v in list(row.items())[:64]
                        if _is_number(v) or k == "final"
                    }
                )
        return rows

    def metrics(self, job_id: str, after: int = 0) -> MetricsPage:
        """metrics.jsonl rows from index `after` (numbers only: a curve needs nothing else)."""
        self.service.record(job_id).read_status()
        rows = self._metric_rows(job_id)
        return MetricsPage(rows=rows[max(0, after) :], count=len(rows), version=self.metrics_version(job_id))

    # -- results and outputs ------------------------------------------------------------------------------
    def _outputs_prefix(self, job_id: str) -> ObjectURI:
        return ObjectURI.parse(self._job_doc(job_id).outputs).as_prefix()

    def results(self, job_id: str) -> ResultsPage:
        """The service's results, the per-class table and the confusion matrix as data, outputs with sizes."""
        prefix = self._outputs_prefix(job_id)  # first: a job.json over the bound is refused before any read
        results = self.service.results(job_id)
        metrics = results.metrics
        per_class = clean(_dict(metrics.get("per_class"))) or None  # the user's own table: depth and size bounded
        matrix = self._confusion(prefix, metrics)
        scalars = {str(k): v for k, v in metrics.items() if _is_number(v) or isinstance(v, str | bool)}
        base = f"s3://{prefix.bucket}/{prefix.key}"
        files = [
            OutputEntry(path=item.uri[len(base) :], size=item.size, uri=item.uri)
            for item in results.files
            if item.uri.startswith(base)
        ]
        return ResultsPage(
            id=job_id,
            state=results.state,
            metrics=scalars,
            metrics_source=results.metrics_source,
            per_class=per_class,
            confusion_matrix=matrix,
            outputs=results.outputs,
            files=files,
            warnings=results.warnings,
        )

    def _confusion(self, prefix: ObjectURI, metrics: dict[str, Any]) -> ConfusionMatrix | None:
        data: Any = None
        try:
            data = self._document(prefix.bucket, prefix.key + "confusion_matrix.json")
        except StorageError:
            data = None
        if not isinstance(data, dict) and isinstance(metrics.get("confusion_matrix"), list):
            data = {"labels": metrics.get("labels"), "matrix": metrics["confusion_matrix"]}
        if not isinstance(data, dict):
            return None
        matrix, labels = data.get("matrix"), data.get("labels")
        if not isinstance(matrix, list) or len(matrix) > 200:
            return None
        rows = [[v if _is_number(v) else None for v in row[:200]] for row in matrix if isinstance(row, list)]
        if not isinstance(labels, list) or len(labels) != len(rows):
            labels = [str(i) for i in range(len(rows))]
        return ConfusionMatrix(labels=[str(x) for x in labels], matrix=rows)

    def output(self, job_id: str, path: str) -> tuple[str, int]:
        """(key, size) of one of the job's own outputs; anything else is refused before any read."""
        prefix = self._outputs_prefix(job_id)
        problem = key_problem(path) if path else "is empty"
        if problem or any(part in ("", ".", "..") for part in path.split("/")):
            raise WebInputError(f"not an output of job {job_id}: {path!r}")
        key = prefix.key + path
        info = self.store.head(prefix.bucket, key)
        if info is None:
            raise WebInputError(f"not an output of job {job_id}: {path!r}")
        return key, info.size

    def output_bytes(self, job_id: str, key: str, size: int) -> Iterator[bytes]:
        bucket = self._outputs_prefix(job_id).bucket
        for start in range(0, size, READ_BYTES):
            yield self.store.get_range(bucket, key, start, min(READ_BYTES, size - start))

    # -- compare and storage ------------------------------------------------------------------------------
    def compare(self, ids: list[str]) -> ComparePage:
        """Params and final metrics of 2..N jobs in one table (the page hides equal rows on request)."""
        if not 1 <= len(ids) <= 20:
            raise WebInputError("compare 2 to 20 jobs: ?ids=JOB1,JOB2")
        jobs = []
        for job_id in ids:
            job = self._job_doc(job_id)
            status = self.service.status(job_id)
            try:
                final = self.service.results(job_id).metrics
            except JobsubError:
                final = {}
            jobs.append(
                CompareJob(
                    id=job_id,
                    state=status.state,
                    params=job.spec.params,
                    metrics={str(k): v for k, v in final.items() if _is_number(v)},
                    headline=self._headline(job, job_id),
                    duration_seconds=status.duration(),
                )
            )
        return ComparePage(jobs=jobs)

    def storage(self) -> StoragePage:
        """Interrupted multipart uploads under the jobs bucket (file and % where this machine's journal
        knows them) and what the profile's jobs prefix costs a month."""
        from jobsub.api import find_pending_uploads
        from jobsub.costs import storage_cost

        bucket = self.jobs_uri.bucket
        uploads = find_pending_uploads(self.store, also=[bucket], skip_unreadable=True)
        objects = total = 0
        try:
            for obj in self.store.iter_objects(bucket, self.jobs_uri.key):
                objects += 1
                total += obj.size
        except BucketNotFoundError:
            pass
        prices = self.service.profile.prices
        return StoragePage(
            uploads=uploads,
            storage=StorageSummary(
                prefix=str(self.jobs_uri),
                objects=objects,
                bytes=total,
                per_month=storage_cost(prices, total),
                currency=prices.currency,
                table=prices.table,
            ),
        )


def _sorted(rows: list[WebRow], sort: str, descending: bool) -> list[WebRow]:
    def key(row: WebRow) -> tuple[int, Any]:
        value = row.sort_value(sort)
        return (0, "") if value is None else (1, value if isinstance(value, int | float) else str(value))

    with_value = [r for r in rows if key(r)[0]]
    without = [r for r in rows if not key(r)[0]]
    return sorted(with_value, key=key, reverse=descending) + without
