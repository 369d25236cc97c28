"""The typed core (issue 19 item 1): the runtime, the web view and the cost bill read job.json as its model.

The runtime is started as executors start it (`python -m jobsub.runtime JOB_URI`) on a record written the
way jobsub wrote them before job.json had a format version, and on one from a newer jobsub.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.test_api import _old_record


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    from tests.conftest import _isolated_env

    return _isolated_env(tmp_path, monkeypatch, "local", None)


def _queued_old_record(env: Env, job_id: str, extra: dict | None = None) -> None:
    """An old-format record (no format_version) put back to QUEUED, as an executor would find it."""
    from jobsub.jobs.records import JobRecord, JobStatus
    from jobsub.uri import ObjectURI

    _old_record(env, job_id, extra)
    record = JobRecord(env.store(), ObjectURI.parse(env.uri("jobs/")), job_id)
    job = record.get_json("job.json")
    job["spec"]["command"] = "python -c \"print('old record ran', flush=True)\""
    record.put_json("job.json", job)
    record.write_status(JobStatus())


def _runtime(env: Env, job_id: str, work: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobsub.runtime", env.uri(f"jobs/{job_id}/"), "--work-dir", str(work)],
        env=env.vars,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_runtime_runs_an_old_format_record(local_env: Env, tmp_path: Path) -> None:
    job_id = "python-script-20261128-100000-1a1a"
    _queued_old_record(local_env, job_id)
    result = _runtime(local_env, job_id, tmp_path / "work")
    assert result.returncode == 0, result.stderr
    shown = local_env.run_json("status", job_id)
    assert isinstance(shown, dict) and shown["status"]["state"] == "SUCCEEDED"
    assert "old record ran" in local_env.run("logs", job_id, check=True).stdout


def test_the_runtime_refuses_a_newer_format_with_one_line(local_env: Env, tmp_path: Path) -> None:
    job_id = "python-script-20261128-100000-1b1b"
    _queued_old_record(local_env, job_id, {"format_version": 7})
    result = _runtime(local_env, job_id, tmp_path / "work")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "version 7" in result.stderr and "up to version 1" in result.stderr
    assert not (tmp_path / "work" / "code").exists()  # nothing was staged or run
    from jobsub.jobs.records import JobRecord, State
    from jobsub.uri import ObjectURI

    record = JobRecord(local_env.store(), ObjectURI.parse(local_env.uri("jobs/")), job_id)
    assert record.read_status().state == State.QUEUED  # left alone for a jobsub that can read it


def test_the_runtime_refuses_a_record_that_does_not_validate(local_env: Env, tmp_path: Path) -> None:
    """A shared bucket holds anything: a job.json whose inputs are not a mapping is one line, not a KeyError."""
    job_id = "python-script-20261128-100000-1c1c"
    _queued_old_record(local_env, job_id, {"inputs": ["not", "a", "mapping"]})
    result = _runtime(local_env, job_id, tmp_path / "work")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "job.json" in result.stderr and "inputs" in result.stderr


def _web(env: Env):
    from jobsub.config import resolve_profile
    from jobsub.jobs.service import JobService
    from jobsub.web.data import WebData

    name, profile = resolve_profile()
    return WebData(JobService(profile, env.store(), name))


def test_the_web_view_shows_an_old_record_from_its_model(local_env: Env) -> None:
    """The page's row and job view come from the service's models: an old record lists with its cost, and the
    job view shows the resolved spec, params and cost (estimate kept) as before."""
    job_id = "python-script-20261128-100000-2a2a"
    _old_record(local_env, job_id)
    web = _web(local_env)
    page = web.jobs().model_dump(mode="json")
    assert page["total"] == 1
    (row,) = page["jobs"]
    assert row["id"] == job_id and row["state"] == "SUCCEEDED" and row["template"] == "python-script"
    assert row["executor"] == "local" and row["duration_seconds"] == 5400.0
    assert row["cost"] == {"currency": "EUR", "table": "mine", "rate_per_hour": 2.0, "compute": 3.0, "max_cost": None}
    assert row["headline"] is None
    shown = web.job(job_id).model_dump(mode="json")  # the page's JSON
    assert shown["spec"]["name"] == "python-script" and shown["params"] == {"script": "main.py", "args": ""}
    assert shown["cost"]["compute"] == 3.0 and shown["cost"]["estimate"] is None  # `{}` reads as no estimate
    assert shown["executor"] == "not started" and shown["executor_kind"] == "local"
    assert shown["profile"] == "loc" and shown["submitted_from"] == "laptop"
    assert web.jobs(sort="cost").jobs[0].id == job_id  # rows sort by their model's fields


def test_the_web_view_refuses_a_newer_or_oversized_record_but_still_lists_it(local_env: Env) -> None:
    from jobsub.errors import JobNotFoundError
    from jobsub.web.data import MAX_DOCUMENT_BYTES

    newer, huge = "python-script-20261128-100000-2b2b", "python-script-20261128-100001-2c2c"
    _old_record(local_env, newer, {"format_version": 7})
    _old_record(local_env, huge, {"padding": "x" * (MAX_DOCUMENT_BYTES + 1)})
    web = _web(local_env)
    rows = {r["id"]: r for r in web.jobs().model_dump(mode="json")["jobs"]}
    assert set(rows) == {newer, huge}  # both list from status.json, without what job.json would add
    assert all(r["state"] == "SUCCEEDED" and r["cost"] is None and r["template"] is None for r in rows.values())
    with pytest.raises(JobNotFoundError, match="version 7"):
        web.job(newer)
    with pytest.raises(JobNotFoundError, match="not read"):
        web.results(huge)
    local_env.store().put(local_env.bucket, f"jobs/{newer}/job.json", b"\xff not json")  # damaged: a 404 too
    with pytest.raises(JobNotFoundError, match="is not JSON"):
        web.job(newer)


def test_the_cost_bill_and_the_list_keep_their_json_shapes(local_env: Env) -> None:
    """`cost --json`, `jobs --json` and `status --json` are a public contract: the models behind them
    (Bill, BillJob, JobRow, JobInfo) write exactly the keys the dicts wrote."""
    job_id = "python-script-20261128-100000-3a3a"
    _old_record(local_env, job_id)
    bill = local_env.run_json("cost", "--since", "0")
    assert isinstance(bill, dict)
    assert list(bill) == ["currency", "table", "source", "since_seconds", "jobs", "compute", "storage", "total"]
    assert bill["since_seconds"] is None and list(bill["storage"]) == ["prefix", "objects", "bytes", "per_month"]
    (job,) = bill["jobs"]
    assert job == {
        "id": job_id,
        "state": "SUCCEEDED",
        "duration_seconds": 5400.0,
        "currency": "EUR",
        "table": "mine",
        "rate_per_hour": 2.0,
        "compute": 3.0,
        "max_cost": None,
    }
    assert bill["compute"] == 0.0  # EUR is not the profile's currency: listed, not added up
    text = local_env.run("cost", "--since", "0", check=True).stdout
    assert job_id in text and "3.00 EUR" in text
    rows = local_env.run_json("jobs")
    assert isinstance(rows, list) and set(rows[0]) == {
        "id", "name", "state", "created", "started", "duration_seconds", "exit_code", "reason"
    }  # fmt: skip
    shown = local_env.run("jobs", check=True).stdout
    assert job_id in shown and "SUCCEEDED" in shown


@pytest.mark.parametrize("claim", [b"[1, 2]", b"{not json", b'{"host": 7, "pid": "x"}'])
def test_a_claim_that_is_not_one_still_stops_a_second_runner(local_env: Env, tmp_path: Path, claim: bytes) -> None:
    """claim.json is read as its model (RunnerClaim): one another tool wrote badly is somebody's claim, so the
    runtime exits with one line and never runs the command (before: a traceback from dict(...))."""
    job_id = "python-script-20261128-100000-4a4a"
    _queued_old_record(local_env, job_id)
    local_env.store().put(local_env.bucket, f"jobs/{job_id}/claim.json", claim)
    from jobsub.errors import JobClaimedError

    result = _runtime(local_env, job_id, tmp_path / "work")
    assert result.returncode == JobClaimedError.exit_code  # the code a second runner always exits with
    assert result.stderr.count("\n") == 1 and "already being run by ? pid ?" in result.stderr
    assert "old record ran" not in local_env.run("logs", job_id).stdout


def test_log_lines_are_models_and_odd_ones_still_print(local_env: Env) -> None:
    """Log lines cross the service as LogLine (time, stream, text; "t"/"s"/"l" on the wire, as before). A
    line with a time no clock shows, or a stream that is not text, prints with question marks, not a crash."""
    from jobsub.api import Client
    from jobsub.jobs.models import LogLine
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    job_id = "python-script-20261128-100000-5a5a"
    _old_record(local_env, job_id)
    record = JobRecord(local_env.store(), ObjectURI.parse(local_env.uri("jobs/")), job_id)
    record.write_chunk(0, [LogLine(time=1.5, stream="out", text="héllo")], "w1")
    raw = local_env.store().get(local_env.bucket, record.chunk_key(0, "w1"))
    assert raw == '{"t":1.5,"s":"out","l":"héllo"}\n'.encode()  # the chunk format readers already know
    local_env.store().put(
        local_env.bucket, record.chunk_key(1, "w2"), b'{"t": Infinity, "s": 5, "l": "odd"}\n{"t": 1e300, "l": "far"}\n'
    )
    assert [(x.stream, x.text) for x in record.read_chunk(record.chunk_key(1, "w2"))] == [("5", "odd"), ("?", "far")]
    assert list(Client().job(job_id).logs(timestamps=False)) == ["héllo", "odd", "far"]
    stamped = list(Client().job(job_id).logs(timestamps=True))
    assert stamped[1] == "1970-01-01 00:00:00.000 odd" or stamped[1].endswith(" odd")
    assert stamped[2] == "????-??-?? ??:??:??.??? far"
    result = local_env.run("logs", job_id, "--timestamps")
    assert result.returncode == 0 and "????-??-?? ??:??:??.??? far" in result.stdout
