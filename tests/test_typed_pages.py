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


def _web(env: Env):
    from jobsub.web.data import WebData

    return WebData(_service(env))


def test_each_page_is_its_model_and_its_json_is_what_the_page_reads(local_env: Env, tmp_path: Path) -> None:
    """A real job (numbered lines, metric rows, metrics.json with a per-class table, a confusion matrix) read
    through every page method: each returns its model, with the keys static/*.js reads."""
    from jobsub.web import models
    from tests.web_helpers import submit_job, wait_final

    job_id = submit_job(local_env, tmp_path, lines=3)
    assert wait_final(local_env, job_id)["state"] == "SUCCEEDED"
    web = _web(local_env)

    status = web.status(job_id)
    assert isinstance(status, models.StatusPage) and status.final and status.duration_seconds is not None
    assert "executor" not in status.model_dump(mode="json")  # the runner's host and pid stay off the page
    job = web.job(job_id)
    assert isinstance(job, models.JobPage) and job.status.state == status.state
    assert list(job.model_dump(mode="json")) == [
        "id", "name", "status", "executor", "executor_kind", "record", "spec", "params", "inputs", "outputs",
        "submitted_from", "profile", "cost", "headline",
    ]  # fmt: skip
    assert job.headline is not None and job.headline.best == pytest.approx(0.5 + 2 / 12)
    assert list(job.model_dump(mode="json")["cost"])[-1] == "estimate"

    page = web.log_page(job_id)
    assert isinstance(page, models.LogPage)
    assert [line.l for line in page.lines if line.s == "out"][:3] == ["line 0", "line 1", "line 2"]
    assert set(page.model_dump(mode="json")) == {"lines", "cursor", "more"} and page.cursor
    tail = web.log_tail(job_id, 1)
    assert isinstance(tail, models.LogTail) and len(tail.lines) == 1 and tail.cursor == page.cursor
    (found,) = list(web.search_log(job_id, "LINE 1"))
    assert isinstance(found, models.FoundLine) and found.l == "line 1" and found.n >= 2
    assert list(found.model_dump(mode="json")) == ["t", "s", "l", "n"]

    metrics = web.metrics(job_id, after=1)
    assert isinstance(metrics, models.MetricsPage) and metrics.count == 3 and len(metrics.rows) == 2
    assert metrics.rows[0]["step"] == 1 and metrics.version

    results = web.results(job_id)
    assert isinstance(results, models.ResultsPage) and results.metrics["accuracy"] == 0.75
    assert results.confusion_matrix is not None and results.confusion_matrix.matrix == [[8, 2], [2, 3]]
    assert results.per_class is not None and "news_a" in results.per_class
    assert {f.path for f in results.files} >= {"metrics.json", "model.bin"}
    assert results.model_dump(mode="json")["state"] == "SUCCEEDED"

    compare = web.compare([job_id])
    assert isinstance(compare, models.ComparePage) and compare.jobs[0].metrics["accuracy"] == 0.75
    storage = web.storage()
    assert isinstance(storage, models.StoragePage) and storage.storage.objects > 0
    assert list(storage.model_dump(mode="json")["storage"]) == [
        "prefix", "objects", "bytes", "per_month", "currency", "table"
    ]  # fmt: skip


def test_hostile_log_and_metrics_lines_stay_bounded_and_typed(local_env: Env) -> None:
    """What a job can write into its own record: lines that are not JSON, not objects, nested past any sane
    depth, a megabyte without a newline, fields of the wrong type; metric rows with NaN, strings, hundreds of
    keys and a `final` holding a deep object. Every page still answers with its model, every value bounded."""
    import json

    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI
    from jobsub.web.data import MAX_LINE_CHARS, dumps
    from jobsub.web.models import WebLogLine

    job_id = "python-script-20261128-100000-3d3d"
    _old_record(local_env, job_id)
    record = JobRecord(local_env.store(), ObjectURI.parse(local_env.uri("jobs/")), job_id)
    deep = "[" * 100_000 + "]" * 100_000
    chunk = "\n".join(
        [
            json.dumps({"t": 1.5, "s": "out", "l": "fine"}),
            "not json at all",
            "[1, 2]",
            deep,
            json.dumps({"t": "noon", "s": "x" * 500, "l": {"nested": [1, 2]}}),
            json.dumps({"t": True, "s": None, "l": None}),
            "y" * (3 * MAX_LINE_CHARS),
        ]
    )
    record.store.put(record.bucket, record.chunk_key(1), chunk.encode())
    nested: object = "x" * 99_999
    for _ in range(40):
        nested = [nested]
    metric_rows = [
        '{"step": 0, "loss": NaN, "acc": "high", "flag": true}',
        json.dumps({f"m{i}": i for i in range(500)}),
        json.dumps({"k" * 1000: 1.0, "final": {"a": nested}}),
        deep,
        "[1, 2, 3]",
    ]
    record.store.put(record.bucket, record.key("metrics.jsonl"), "\n".join(metric_rows).encode())
    web = _web(local_env)

    lines = web.log_page(job_id).lines
    assert all(isinstance(line, WebLogLine) for line in lines)
    assert [line.l for line in lines][:3] == ["fine", "not json at all", deep[:MAX_LINE_CHARS] + "…"]
    odd = lines[3]
    assert odd.t is None and odd.s == "x" * 16 and odd.l == '{"nested": [1, 2]}'
    assert lines[4].t is None and lines[4].s == "None" and lines[4].l == "null"
    assert lines[-1].s == "?" and len(lines[-1].l) <= MAX_LINE_CHARS + 1
    assert all(len(line.l) <= MAX_LINE_CHARS + 1 and len(line.s) <= 16 for line in lines)
    assert len(dumps(web.log_tail(job_id, 100).model_dump(mode="json"))) < 8 * MAX_LINE_CHARS

    metrics = web.metrics(job_id)
    assert metrics.count == 3  # the deep row and the list are skipped, not a 500
    first, wide, odd_row = metrics.rows
    assert first == {"step": 0}  # NaN, a string and a bool are not points of a curve
    assert len(wide) == 64 and all(len(key) <= 64 for key in odd_row)
    sent = dumps(metrics.model_dump(mode="json"))
    assert "NaN" not in sent and len(sent) < 4 * MAX_LINE_CHARS
