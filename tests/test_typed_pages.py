"""Typed documents to the screen (issue 19 item 1): the cost estimate, the dry run's JSON and the web view's
pages are models, and what they put on the wire is what it was before they were typed.

Records are written the way jobsub writes them today (tests.test_api._old_record) on the local store; the
hostile ones are what any program with write access to a shared bucket could leave there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Env
from tests.test_api import _old_record

#: cost.estimate exactly as jobsub wrote it before Estimate was a model (dataclasses.asdict + "upper")
OLD_ESTIMATE = {
    "currency": "EUR",
    "table": "mine",
    "rate_per_hour": 2.0,
    "compute_upper": 4.0,
    "compute_typical": None,
    "typical_seconds": None,
    "runs_seen": 0,
    "upload_bytes": 2048,
    "storage_month": 0.25,
    "requests": 4,
    "requests_cost": 0.5,
    "upper": 4.75,
}


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    from tests.conftest import _isolated_env

    return _isolated_env(tmp_path, monkeypatch, "local", None)


def _with_estimate(env: Env, job_id: str, estimate: object) -> None:
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    _old_record(env, job_id)
    record = JobRecord(env.store(), ObjectURI.parse(env.uri("jobs/")), job_id)
    job = record.get_json("job.json")
    job["cost"]["estimate"] = estimate
    record.put_json("job.json", job)


def _service(env: Env):
    from jobsub.config import resolve_profile
    from jobsub.jobs.service import JobService

    name, profile = resolve_profile()
    return JobService(profile, env.store(), name)


def test_an_old_estimate_reads_as_the_model_and_writes_back_the_same_keys(local_env: Env) -> None:
    from jobsub.costs import Estimate

    job_id = "python-script-20261128-100000-3a3a"
    _with_estimate(local_env, job_id, OLD_ESTIMATE)
    doc = _service(local_env).document(job_id)
    assert doc.cost is not None and isinstance(doc.cost.estimate, Estimate)
    assert doc.cost.estimate.upper == pytest.approx(4.75) and doc.cost.estimate.table == "mine"
    assert doc.cost.estimate.model_dump(mode="json") == OLD_ESTIMATE  # same keys, same order, same values
    assert list(doc.cost.estimate.model_dump(mode="json")) == list(OLD_ESTIMATE)
    assert "estimate: at most 4.75 EUR" in doc.cost.estimate.line()


def test_a_stored_upper_cannot_claim_a_bound_its_parts_do_not_add_up_to(local_env: Env) -> None:
    job_id = "python-script-20261128-100000-3b3b"
    _with_estimate(local_env, job_id, {**OLD_ESTIMATE, "upper": 0.01})
    doc = _service(local_env).document(job_id)
    assert doc.cost is not None and doc.cost.estimate is not None
    assert doc.cost.estimate.upper == pytest.approx(4.75)


@pytest.mark.parametrize("estimate", [{}, "lots", [1, 2], {**OLD_ESTIMATE, "runs_seen": "many"}])
def test_an_unreadable_estimate_leaves_the_job_readable(local_env: Env, estimate: object) -> None:
    """The estimate is informational: a hostile or half-written one is shown as none, the job still reads."""
    job_id = "python-script-20261128-100000-3c3c"
    _with_estimate(local_env, job_id, estimate)
    doc = _service(local_env).document(job_id)
    assert doc.cost is not None and doc.cost.estimate is None and doc.cost.rate_per_hour == 2.0
    shown = local_env.run_json("status", job_id)
    assert isinstance(shown, dict) and shown["status"]["state"] == "SUCCEEDED"


def test_the_dry_run_json_is_the_typed_plan_document(local_env: Env, tmp_path: Path) -> None:
    """`submit --dry-run --json` prints `SubmitPlan.document()`: keys in the order scripts read them."""
    from jobsub.api import Client
    from jobsub.costs import Estimate
    from jobsub.jobs.plan_document import PlanDocument

    code = tmp_path / "src"
    code.mkdir()
    (code / "main.py").write_text("print('hi')\n")
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    printed = local_env.run_json(
        "submit", "python-script", "--code", str(code), "--input", f"data={data}", "--set", "timeout=1h", "--dry-run"
    )
    assert isinstance(printed, dict)
    assert list(printed) == [
        "job_id", "spec", "inputs", "uploads", "outputs", "code", "existing_job", "estimate", "max_cost", "dry_run"
    ]  # fmt: skip
    assert list(printed["uploads"][0]) == ["input", "source", "destination"]
    assert printed["uploads"][0]["source"] == str(data)
    assert list(printed["estimate"]) == list(OLD_ESTIMATE)
    plan = Client().plan("python-script", code=code, inputs={"data": str(data)}, sets=["timeout=1h"])
    document = plan.document()
    assert isinstance(document, PlanDocument) and isinstance(document.estimate, Estimate)
    assert document.spec.timeout == "1h" and document.uploads[0].input == "data"
