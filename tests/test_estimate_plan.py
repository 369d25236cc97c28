"""The submit's cost estimate counts the requests of the very transfer plan the upload carries out.

Issue 22 item 1: the estimate reads the plan (transfer/planning.py, what `jobsub upload --dry-run` prints)
instead of re-deriving part counts, so a user comparing the estimate with the upload sees one number. Local
store and moto; each test is a few small subprocess runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Env, _isolated_env, code_folder, write_random

MiB = 1 << 20
RECORD_REQUESTS = 3  # job.json, status.json, executor.json
CODE_REQUESTS = 1  # the code archive


@pytest.fixture(params=["local", "moto"])
def planenv(request, tmp_path: Path, monkeypatch) -> Env:
    if request.param == "local":
        return _isolated_env(tmp_path, monkeypatch, "local", None)
    return _isolated_env(tmp_path, monkeypatch, "s3", request.getfixturevalue("moto_server"))


def _dry_submit(env: Env, code: Path, data: Path) -> dict:
    result = env.run("submit", "python-script", "--code", str(code), "--input", f"data={data}", "--dry-run")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_estimate_counts_the_requests_of_the_upload_plan(planenv: Env, tmp_path: Path) -> None:
    data = write_random(tmp_path / "data.bin", 20 * MiB + 123)  # three 8 MiB parts on S3
    code = code_folder(tmp_path, "print(1)\n")
    first = _dry_submit(planenv, code, data)
    dest = first["uploads"][0]["destination"]
    plan = planenv.run_json("upload", "--dry-run", str(data), dest)
    expected_upload = 3 + 2 if planenv.kind == "s3" else 1  # create + 3 parts + complete; a local copy is one
    assert plan["requests"] == expected_upload
    assert first["estimate"]["requests"] == RECORD_REQUESTS + CODE_REQUESTS + plan["requests"]

    # the plan is what the upload then does: the same requests, and nothing sent by the dry runs before it
    assert planenv.run_json("upload", "--dry-run", str(data), dest)["requests"] == plan["requests"]
    summary = planenv.run_json("upload", str(data), dest)
    assert summary["requests"] == plan["requests"]
    assert summary["parts_sent"] == (3 if planenv.kind == "s3" else 1)


def test_an_input_already_stored_costs_no_upload_requests_in_the_estimate(planenv: Env, tmp_path: Path) -> None:
    """Hostile to a re-derived count: parts x size says 5 requests; the plan knows the object is there."""
    data = write_random(tmp_path / "data.bin", 20 * MiB, seed=3)
    code = code_folder(tmp_path, "print(2)\n")
    dest = _dry_submit(planenv, code, data)["uploads"][0]["destination"]
    planenv.run("upload", str(data), dest, "-q", check=True)

    again = _dry_submit(planenv, code, data)
    assert again["uploads"][0]["destination"] == dest
    assert planenv.run_json("upload", "--dry-run", str(data), dest)["requests"] == 0
    assert again["estimate"]["requests"] == RECORD_REQUESTS + CODE_REQUESTS
    assert again["estimate"]["upload_bytes"] >= data.stat().st_size  # still stored for the job: priced
