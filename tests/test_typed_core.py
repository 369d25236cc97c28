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
