"""What a submit will do, as a typed document: `jobsub submit --dry-run --json` prints it, `Client.plan()`
hands it out through `SubmitPlan.document()`.

Why a model apart from SubmitPlan: the plan itself carries what only this machine can use (local paths, the
packed code archive's bytes); the document is the part a user reads, with its JSON keys fixed here (they were
a hand-built dict before; scripts read them, so the keys and their order do not change).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobsub.costs import Estimate
from jobsub.jobs.models import CodeRef
from jobsub.jobs.spec import JobSpec


class PlannedUpload(BaseModel):
    """One local input the submit uploads before the job starts."""

    input: str = Field(description="the input's name in the spec")
    source: str = Field(description="the local path, as given")
    destination: str = Field(description="the URI it is uploaded to")


class PlanDocument(BaseModel):
    """The dry run's JSON: the resolved spec, inputs after upload, outputs, code, an earlier job with the same
    idempotency key, and the cost estimate."""

    job_id: str
    spec: JobSpec
    inputs: dict[str, str] = Field(description="input name -> URI after upload")
    uploads: list[PlannedUpload] = Field(default_factory=list)
    outputs: str = ""
    code: CodeRef | None = None
    existing_job: str | None = Field(default=None, description="an earlier job with the same idempotency key")
    estimate: Estimate | None = None
    max_cost: float | None = None
