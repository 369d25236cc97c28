"""What each page of the web view is sent, as models: web/data.py builds them, web/app.py serialises them.

Why: the page's script reads these keys (static/*.js); a model fixes them in one place, so a change that
renames or drops one fails mypy and the tests here, not a chart in somebody's browser. The field names and
their order are the JSON the API served when these were plain dicts (`model_dump(mode="json")` gives it
back unchanged). data.dumps still cleans the dumped JSON (finite numbers, bounded and redacted strings):
the models say what shape a value has, the cleaning makes hostile values of that shape safe to send.

Free-form values stay JSON (``JsonValue``) where they are the user's own: a job's metric names and the
``final`` marker in metrics.jsonl, and the per-class table of its metrics.json. Their keys are whatever a
training script chose to log, so they cannot be fields; data.py bounds how many there are and how long.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from jobsub.api import PendingUpload
from jobsub.costs import Estimate
from jobsub.jobs.models import JobCost, State, StatusFields
from jobsub.jobs.spec import JobSpec

#: one metrics.jsonl row: metric name -> a finite number (``final`` may hold any scalar the script wrote)
MetricRow = dict[str, JsonValue]
Number = int | float


class HeadlineValue(BaseModel):
    """A job's best value of its template's headline metric (the jobs list ranks by it)."""

    metric: str
    goal: str
    best: int | float | None = None  # int stays int in JSON
    step: int | float | None = None


class StatusPage(StatusFields):
    """A job's status as the page shows it: status.json without where the runner runs (host and pid are not
    for the page), with its duration and whether it is final (the page stops following then)."""

    duration_seconds: float | None = None
    final: bool = False


class PageCost(JobCost):
    """The job's cost so far with the estimate submit made (none for a job submitted without one)."""

    estimate: Estimate | None = None


class JobPage(BaseModel):
    """One job: status with its timeline, the resolved spec and params, inputs, outputs and cost."""

    id: str
    name: str
    status: StatusPage
    executor: str = Field(description="where it runs, in words")
    executor_kind: str
    record: str
    spec: JobSpec
    params: dict[str, str | int | float | bool]
    inputs: dict[str, str]
    outputs: str
    submitted_from: str
    profile: str
    cost: PageCost
    headline: HeadlineValue | None = None


class WebLogLine(BaseModel):
    """One log line as the page gets it: ``t`` unix time (null when the line had none), ``s`` the stream
    (cut to 16 characters; "?" for a line that was not JSON), ``l`` the text (bounded and redacted)."""

    t: int | float | None = None
    s: str
    l: str  # noqa: E741 - the chunk's own short key, which the page reads


class FoundLine(WebLogLine):
    """A line the log search found, with its number in the whole log (from 1)."""

    n: int


class LogPage(BaseModel):
    """Lines of whole chunks after a cursor; ``cursor`` continues where this stopped, ``more`` if it did."""

    lines: list[WebLogLine]
    cursor: str
    more: bool


class LogTail(BaseModel):
    """The last lines of a log and the cursor a follower goes on from."""

    lines: list[WebLogLine]
    cursor: str


class LinesEvent(BaseModel):
    """A batch of a followed log: its chunk and number in it, ``done`` on the chunk's last batch."""

    lines: list[WebLogLine]
    chunk: str
    batch: int
    done: bool


class MetricsPage(BaseModel):
    """metrics.jsonl rows from an index, how many there are and the file's version (size:etag)."""

    rows: list[MetricRow]
    count: int
    version: str | None = None


class MetricsEvent(BaseModel):
    """New metric rows of a followed job, from row ``from`` on."""

    model_config = ConfigDict(serialize_by_alias=True)

    rows: list[MetricRow]
    from_: int = Field(serialization_alias="from")
    count: int


class ConfusionMatrix(BaseModel):
    """The confusion matrix as data: one label per row, cells a number or null."""

    labels: list[str]
    matrix: list[list[Number | None]]


class OutputEntry(BaseModel):
    """One of the job's outputs: its path under the outputs prefix (what /output/ serves), size and URI."""

    path: str
    size: int
    uri: str


class ResultsPage(BaseModel):
    """The service's results, the per-class table and the confusion matrix as data, outputs with sizes."""

    id: str
    state: State
    metrics: dict[str, Number | bool | str] = Field(description="the scalar final metrics")
    metrics_source: str | None = None
    per_class: dict[str, JsonValue] | None = None
    confusion_matrix: ConfusionMatrix | None = None
    outputs: str
    files: list[OutputEntry]
    warnings: list[str]


class CompareJob(BaseModel):
    """One column of the compare table: params and the numeric final metrics of one job."""

    id: str
    state: State
    params: dict[str, str | int | float | bool]
    metrics: dict[str, Number]
    headline: HeadlineValue | None = None
    duration_seconds: float | None = None


class ComparePage(BaseModel):
    jobs: list[CompareJob]


class StorageSummary(BaseModel):
    """What the profile's jobs prefix holds and costs a month, in the price table's currency."""

    prefix: str
    objects: int
    bytes: int
    per_month: float
    currency: str
    table: str


class StoragePage(BaseModel):
    uploads: list[PendingUpload]
    storage: StorageSummary
