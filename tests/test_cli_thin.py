"""The CLI is a thin layer over the Python API (issue 19): what a maintainer and a user would notice.

A maintainer: the `cli-thin` contract in pyproject.toml (run by `make lint`) fails when a command imports
the job service, the transfer engine or `open_store` itself, naming the import; `api-no-terminal` fails when
the API pulls in click or rich, even through a module below it. A user: `jobsub ... --json`
prints exactly what the matching `jobsub.api` call returns, the CLI's errors are the API's exceptions, and the
web view's rows are the CLI's rows with more columns. Real stores only: the local store and moto's S3 server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Env, _isolated_env, _server, code_folder


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    if not found.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    return str(found)


def _check_contract(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [_lint_imports(), "--no-cache", "--contract", "cli-thin", "--contract", "api-no-terminal"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_hold_and_fail_on_a_command_that_builds_the_service_or_an_api_that_prints(
    tmp_path: Path,
) -> None:
    kept = _check_contract(REPO)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    shutil.copytree(REPO / "jobsub", tmp_path / "jobsub", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    cli = tmp_path / "jobsub" / "cli"
    jobs = cli / "job_cmds.py"  # inside a function, as the CLI used to do it: still an import
    bad = "\n\ndef _bad() -> None:\n    from jobsub.jobs.service import JobService  # noqa\n"
    jobs.write_text(jobs.read_text() + bad)
    transfers = cli / "transfer_cmds.py"
    transfers.write_text(transfers.read_text() + "\nfrom jobsub.storage import open_store  # noqa\n")
    records = tmp_path / "jobsub" / "jobs" / "records.py"  # below the API: a notebook would load rich through it
    records.write_text(records.read_text() + "\nimport rich.console  # noqa\n")
    broken = _check_contract(tmp_path)
    output = broken.stdout + broken.stderr
    assert broken.returncode != 0, output
    assert "jobsub.cli.job_cmds -> jobsub.jobs.service" in output
    assert "jobsub.cli.transfer_cmds -> jobsub.storage" in output
    assert "jobsub.api is not allowed to import rich" in output and "jobsub.jobs.records -> rich" in output


@pytest.fixture(params=["local", "moto"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A jobsub user on the local store, then on moto's S3 server (in this process too: API calls)."""
    server = _server(request, "moto") if request.param == "moto" else None
    return _isolated_env(tmp_path, monkeypatch, "s3" if server else "local", server)


def test_the_cli_prints_what_the_api_returns(store_env: Env, tmp_path: Path) -> None:
    from jobsub.api import Client
    from jobsub.cli.safe import log_line
    from jobsub.web.data import WebData

    env = store_env
    client = Client()
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a" * 1000)
    client.upload(data, env.uri("in/"))
    code = code_folder(tmp_path, "print('one')\nprint('two \\x1b[31mred')\n")
    job = client.submit("python-script", code=code, params={"script": "main.py"})
    job.wait(timeout=60, poll=0.1)

    assert env.run_json("jobs") == [row.model_dump(mode="json") for row in client.jobs(limit=20)]
    assert env.run_json("status", job.id) == job.info().model_dump(mode="json")
    assert env.run_json("results", job.id) == job.results().model_dump(mode="json")
    assert env.run_json("cost") == client.cost().model_dump(mode="json")
    planned = env.run_json("upload", str(data), env.uri("in/"), "--dry-run")
    assert planned == client.plan_upload(data, env.uri("in/")).as_dict()
    assert isinstance(planned, dict) and planned["files_unchanged"] == 1 and planned["plan"][0]["action"] == "skip"

    printed = env.run("logs", job.id, check=True).stdout.splitlines()
    api_lines = list(job.logs())
    assert "one" in api_lines and printed == [log_line(line) for line in api_lines]
    assert "\x1b" not in "\n".join(printed)  # the job's escape sequence is shown, never acted on

    # the web view's row of the job is the CLI's row with more columns, derived the same way
    web_row = WebData(client).jobs().jobs[0].model_dump(mode="json")
    cli_row = client.jobs()[0].model_dump(mode="json")
    assert {key: web_row[key] for key in cli_row} == cli_row
    assert web_row["template"] == "python-script" and web_row["executor"] == "local"


def test_pending_uploads_listed_and_aborted_through_the_api(store_env: Env, tmp_path: Path) -> None:
    from jobsub.api import Client
    from jobsub.web.data import WebData

    env = store_env
    client = Client()
    (tmp_path / "seed.txt").write_text("x")
    client.upload(tmp_path / "seed.txt", env.uri("seed/"))  # the local store makes its bucket on first write
    upload_id = client.store.create_multipart(env.bucket, "big/ckpt.bin")

    listed = env.run_json("uploads", "list", env.uri())
    pending = [row.model_dump(mode="json") for row in client.pending_uploads(env.uri())]
    # the web view's storage page reads the same uploads the same way (one finder, api.find_pending_uploads)
    on_page = [row.model_dump(mode="json") for row in WebData(client).storage().uploads]
    assert isinstance(listed, list)
    for row in listed + pending + on_page:  # seconds since it started: moves between the reads
        assert isinstance(row.pop("age_seconds"), float)
    assert (
        listed
        == pending
        == [
            {
                "upload_id": upload_id,
                "uri": env.uri("big/ckpt.bin"),
                "initiated": pending[0]["initiated"],
                "source": None,
                "size": None,
                "percent_done": None,
            }
        ]
        == on_page
    )
    aborted = env.run("uploads", "abort", upload_id, "--uri", env.uri(), check=True)
    assert aborted.stdout.strip() == f"aborted {upload_id} ({env.uri('big/ckpt.bin')})"
    assert client.pending_uploads(env.uri()) == []


def test_the_cli_fails_with_the_apis_own_error(store_env: Env) -> None:
    """Hostile: a job id that names no job, and one that names a path. The CLI's one line is the API's
    exception, word for word, with its exit code: no second wording to drift apart."""
    from jobsub.api import Client
    from jobsub.errors import JobsubError

    client = Client()
    for bad in ("no-such-job-20260101-000000-abcd", "../../etc"):
        with pytest.raises(JobsubError) as caught:
            client.job(bad).status()
        for command in (("status", bad), ("logs", bad), ("cancel", bad))[: 3 if bad.startswith("no-") else 1]:
            result = store_env.run(*command)
            assert result.returncode == caught.value.exit_code, result.stderr
            assert result.stderr.strip() == f"error: {caught.value}", (command, result.stderr)
            assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_plan_submitted_with_its_key_starts_one_job_for_api_and_cli(store_env: Env, tmp_path: Path) -> None:
    """`Client.plan` is the dry run, `Client.submit(plan)` carries it out; a retried submit with the same name
    and idempotency key, from the API or the CLI, returns that job and starts nothing."""
    from jobsub.api import Client
    from jobsub.errors import SpecError

    client = Client()
    code = code_folder(tmp_path, "print('hi')\n")
    with pytest.raises(SpecError, match="expected KEY=VALUE"):  # --set words are checked as the CLI checks them
        client.plan("python-script", code=code, sets=["oops"])
    plan = client.plan("python-script", code=code, sets=["name=nightly"], idempotency_key="k1")
    assert plan.existing is None and plan.spec.name == "nightly" and client.jobs() == []  # nothing started
    first = client.submit(plan, idempotency_key="k1")
    assert first.created and first.id == plan.job_id
    again = client.submit("python-script", code=code, name="nightly", idempotency_key="k1")
    assert again.id == first.id and not again.created
    shown = store_env.run_json("submit", "python-script", "--code", str(code), "--name", "nightly",
                               "--idempotency-key", "k1")  # fmt: skip
    assert isinstance(shown, dict) and shown["job_id"] == first.id and shown["created"] is False
    assert first.wait(timeout=60, poll=0.1).exit_code == 0
    assert [row.id for row in client.jobs()] == [first.id]
