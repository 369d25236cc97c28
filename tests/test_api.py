"""The public Python API (jobsub/api.py): docs/api.md's examples, run as written, and the typed job record.

The examples run on the local store, on moto and on Ceph (the `env` harness): a job really runs (the local
executor's detached runner), so what a notebook user would see is what is asserted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, Env, code_folder

DOC = REPO / "docs" / "api.md"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_documented_examples_run(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    blocks = _examples()
    assert len(blocks) >= 3, "docs/api.md lost its examples"
    namespace: dict[str, object] = {"bucket": env.bucket}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/api.md example {number}", "exec"), namespace)
        except Exception as exc:  # name the block: the page is what a user copies
            raise AssertionError(f"docs/api.md example {number} failed: {exc!r}") from exc
    # the same job, seen from the CLI: one service under both
    job_id = namespace["job"].id  # type: ignore[attr-defined]
    shown = env.run_json("status", job_id)
    assert isinstance(shown, dict) and shown["status"]["state"] == "SUCCEEDED"


def _old_record(env: Env, job_id: str, extra: dict | None = None) -> None:
    """A job record as jobsub wrote it before job.json had a format version (fields as of 2026-11-29)."""
    from jobsub.jobs.records import JobRecord, JobStatus, State
    from jobsub.uri import ObjectURI

    record = JobRecord(env.store(), ObjectURI.parse(env.uri("jobs/")), job_id)
    spec = {
        "name": "python-script",
        "description": "",
        "command": 'python -m jobsub.runtime.pyscript "$JOBSUB_PARAM_SCRIPT" "$JOBSUB_PARAM_ARGS"',
        "code": None,
        "params": {"script": "main.py", "args": ""},
        "inputs": {},
        "outputs": record.uri("outputs/"),
        "env": {},
        "image": None,
        "resources": {"cpus": None, "gpus": 0, "memory": "2GiB", "nodes": 1, "flavor": None},
        "timeout": "2h",
        "max_retries": 0,
    }
    job = {
        "id": job_id,
        "spec": spec,
        "inputs": {},
        "outputs": record.uri("outputs/"),
        "code": None,
        "created": "2026-11-28T10:00:00.000+00:00",
        "submitted_from": "laptop",
        "profile": "loc",
        "executor": "local",
        "cost": {
            "currency": "EUR",
            "table": "mine",
            "source": "config",
            "rate_per_hour": 2.0,
            "storage_gib_month": 0.0,
            "max_cost": None,
            "estimate": {},
        },
        "secret_env": [],
        **(extra or {}),
    }
    record.put_json("job.json", job)
    record.write_status(
        JobStatus(
            state=State.SUCCEEDED,
            created="2026-11-28T10:00:00.000+00:00",
            started="2026-11-28T10:00:00.000+00:00",
            finished="2026-11-28T11:30:00.000+00:00",
            exit_code=0,
        )
    )


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    from tests.conftest import _isolated_env

    return _isolated_env(tmp_path, monkeypatch, "local", None)


def test_an_old_format_record_still_reads(local_env: Env) -> None:
    from jobsub.api import Client

    job_id = "python-script-20261128-100000-0a0a"
    _old_record(local_env, job_id)
    client = Client()
    job = client.job(job_id)
    document = client.service.record(job_id).read_document()
    assert document.format_version == 1
    assert document.timeout_seconds == 7200 and document.memory_bytes == 2 << 30  # parsed once, at load
    cost = job.cost()
    assert (cost.compute, cost.currency, cost.table) == (3.0, "EUR", "mine")  # 1.5 h at 2.0/h
    assert job.info().command.startswith("python -m jobsub.runtime.pyscript")
    assert [row.id for row in client.jobs()] == [job_id]
    # the CLI renders the same record as before
    shown = local_env.run("status", job_id, check=True).stdout
    assert "SUCCEEDED" in shown and "3.00 EUR compute at 2/h" in shown


def test_a_newer_format_version_fails_naming_both(local_env: Env) -> None:
    from jobsub.api import Client
    from jobsub.errors import RecordFormatError

    job_id = "python-script-20261128-100000-0b0b"
    _old_record(local_env, job_id, {"format_version": 7, "something_new": {"a": 1}})
    with pytest.raises(RecordFormatError, match=r"format version 7; this jobsub reads up to version 1"):
        Client().job(job_id).info()
    result = local_env.run("status", job_id)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "version 7" in result.stderr and "Traceback" not in result.stderr
    # a list of jobs still shows it (its state is in status.json), without a cost
    rows = local_env.run_json("jobs")
    assert isinstance(rows, list) and [r["id"] for r in rows] == [job_id]


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"id": "x"}', b'{"format_version": "2", "id": "x"}'])
def test_a_record_that_is_not_one_is_one_line(local_env: Env, body: bytes) -> None:
    """job.json lives in a shared bucket: anything may be there."""
    from jobsub.api import Client
    from jobsub.errors import RecordFormatError

    job_id = "python-script-20261128-100000-0c0c"
    _old_record(local_env, job_id)
    store = local_env.store()
    store.put(local_env.bucket, f"jobs/{job_id}/job.json", body)
    with pytest.raises(RecordFormatError) as caught:
        Client().job(job_id).results()
    assert "job.json" in str(caught.value) and "\n" not in str(caught.value)


def test_wait_with_a_deadline_and_cancel(local_env: Env, tmp_path: Path) -> None:
    from jobsub.api import Client, State
    from jobsub.errors import JobTimeoutError

    code = code_folder(tmp_path, "import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    client = Client()
    job = client.submit("python-script", code=code, params={"script": "main.py"})
    with pytest.raises(JobTimeoutError, match="keeps running"):
        job.wait(timeout=0.5, poll=0.1)
    assert not job.status().state.final
    final = job.cancel(wait=True, timeout=60)
    assert final.state == State.CANCELLED
    assert [row.state for row in client.jobs(state="CANCELLED")] == [State.CANCELLED]


def test_submit_refuses_what_the_cli_refuses(local_env: Env, tmp_path: Path) -> None:
    from jobsub.api import Client
    from jobsub.errors import SourceNotFoundError, SpecError, UsageError

    client = Client()
    code = code_folder(tmp_path, "print('x')\n")
    with pytest.raises(SpecError, match=r"valid keys: .*params\.script"):
        client.submit("python-script", code=code, params={"epoch": 3})
    with pytest.raises(SourceNotFoundError, match="no such file or folder"):
        client.submit("python-script", code=code, inputs={"data": str(tmp_path / "missing")})
    with pytest.raises(UsageError, match="secret_env"):
        client.submit("python-script", code=code, secret_env={"JOBSUB_X": "v"})
    with pytest.raises(SpecError, match="spec: command"):
        client.submit({"name": "x"})
    with pytest.raises(UsageError, match="state 'DONE'"):
        client.jobs(state="DONE")
    assert client.jobs() == []  # nothing was submitted by any of these


def test_secret_env_never_reaches_the_record(local_env: Env, tmp_path: Path) -> None:
    from jobsub.api import Client

    code = code_folder(
        tmp_path, "import os\nprint('len', len(os.environ['MY_TOKEN']))\nprint(os.environ['MY_TOKEN'])\n"
    )
    client = Client()
    job = client.submit("python-script", code=code, secret_env={"MY_TOKEN": "s3cr3t-value-123"})
    lines = list(job.logs(follow=True))
    assert "len 16" in lines and "s3cr3t-value-123" not in "\n".join(lines)
    raw = client.store.get(local_env.bucket, f"jobs/{job.id}/job.json")
    assert b"s3cr3t-value-123" not in raw and json.loads(raw)["secret_env"] == ["MY_TOKEN"]


def test_a_log_chunk_that_is_not_jobs_is_shown_not_a_traceback(local_env: Env) -> None:
    """Log chunks live in a shared bucket too: a line another tool wrote there is text, not a crash."""
    from jobsub.api import Client

    job_id = "python-script-20261128-100000-0d0d"
    _old_record(local_env, job_id)
    store = local_env.store()
    good = json.dumps({"t": 1.0, "s": "o", "l": "first"})
    body = f'{good}\nnot json at all\n[1, 2]\n{{"t": "x", "l": 5}}\n'.encode() + b"\xff\xfe bytes\n"
    store.put(local_env.bucket, f"jobs/{job_id}/logs/00000000-abcd.jsonl", body)
    lines = list(Client().job(job_id).logs())
    assert lines == ["first", "not json at all", "[1, 2]", '{"t": "x", "l": 5}', "\ufffd\ufffd bytes"]
    result = local_env.run("logs", job_id, "--timestamps")
    assert result.returncode == 0 and "not json at all" in result.stdout and "Traceback" not in result.stderr
