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


@pytest.fixture
def motoenv(request, tmp_path: Path, monkeypatch) -> Env:
    return _isolated_env(tmp_path, monkeypatch, "s3", request.getfixturevalue("moto_server"))


def _counting(monkeypatch) -> dict[str, int]:
    """Count the reads that hash the file (the plan's pass, and per-part checksums made while sending)."""
    from jobsub.storage.checksums import Checksum
    from jobsub.transfer import checksums, upload

    calls = {"pass": 0, "part": 0}
    real_pass, real_range = checksums.sha256_and_parts, Checksum.of_range.__func__  # type: ignore[attr-defined]

    def counted_pass(*args, **kwargs):
        calls["pass"] += 1
        return real_pass(*args, **kwargs)

    def counted_range(cls, *args, **kwargs):
        calls["part"] += 1
        return real_range(cls, *args, **kwargs)

    monkeypatch.setattr(upload, "sha256_and_parts", counted_pass)
    monkeypatch.setattr(Checksum, "of_range", classmethod(counted_range))
    return calls


def test_the_submits_plan_is_carried_out_without_reading_the_file_again(motoenv: Env, tmp_path: Path, monkeypatch):
    """The submit plans each input for its estimate; its upload carries out that plan, so the file is
    hashed once (SHA-256 and part MD5s in one read), not planned and hashed a second time."""
    from jobsub.transfer import TransferManager
    from jobsub.uri import ObjectURI

    data = write_random(tmp_path / "in.bin", 20 * MiB, seed=7)
    dest = ObjectURI.parse(motoenv.uri("in/in.bin"))
    store = motoenv.store()
    calls = _counting(monkeypatch)
    plan = TransferManager(store).plan_upload([data], dest)
    assert calls == {"pass": 1, "part": 0}
    summary = TransferManager(store).upload([data], dest, plan)
    assert calls == {"pass": 1, "part": 0}  # the parts went with the plan's checksums
    assert summary.requests == plan.totals()["requests"] == 5 and not summary.failures
    out = tmp_path / "out.bin"
    motoenv.run("download", str(dest), str(out), "-q", check=True)
    assert out.read_bytes() == data.read_bytes()


def test_a_file_changed_after_the_submits_plan_is_planned_again(motoenv: Env, tmp_path: Path, monkeypatch) -> None:
    """Hostile: the input is rewritten (same size) between the estimate and the upload: the stale plan and
    its checksums are dropped, the new bytes are stored, with their own SHA-256."""
    import hashlib

    from jobsub.transfer import TransferManager
    from jobsub.uri import ObjectURI

    data = write_random(tmp_path / "in.bin", 20 * MiB, seed=8)
    dest = ObjectURI.parse(motoenv.uri("in/changed.bin"))
    store = motoenv.store()
    plan = TransferManager(store).plan_upload([data], dest)
    write_random(data, 20 * MiB, seed=9)
    calls = _counting(monkeypatch)
    summary = TransferManager(store).upload([data], dest, plan)
    assert not summary.failures
    assert calls["pass"] == 1  # planned again, from the new bytes
    head = store.head(dest.bucket, dest.key)
    assert head is not None and head.metadata["jobsub-sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "out.bin"
    motoenv.run("download", str(dest), str(out), "-q", check=True)
    assert out.read_bytes() == data.read_bytes()


def test_a_submit_plan_s_upload_plans_are_carried_out_once_and_only_while_fresh(
    motoenv: Env, tmp_path: Path, monkeypatch
) -> None:
    """The plans say what the server held when `plan()` ran. A SubmitPlan kept by an API caller (a confirm
    step, a retry of the same object) must not replay them: after a submit they are gone, and a plan older
    than UPLOAD_PLAN_FRESH_SECONDS is not handed to the upload (which then plans from the file and the
    server as they are now)."""
    from jobsub.api import Client
    from jobsub.jobs import service
    from jobsub.transfer import TransferManager

    handed: list[object] = []
    real_upload = TransferManager.upload

    def spy(self, sources, dest, plan=None, *args, **kwargs):
        handed.append(plan)
        return real_upload(self, sources, dest, plan, *args, **kwargs)

    monkeypatch.setattr(TransferManager, "upload", spy)
    data = write_random(tmp_path / "in.bin", 20 * MiB, seed=11)
    code = code_folder(tmp_path, "print('ok', flush=True)\n")
    client = Client()
    plan = client.plan("python-script", inputs={"data": str(data)}, code=code)
    assert len(plan.upload_plans) == 1
    made = plan.upload_plans[0]
    client.submit(plan)
    assert handed == [made]  # carried out as planned
    assert plan.upload_plans == []  # used once
    stale = client.plan("python-script", inputs={"data": str(data)}, code=code)
    assert len(stale.upload_plans) == 1
    stale.planned_at -= service.UPLOAD_PLAN_FRESH_SECONDS + 1
    client.submit(stale)
    assert handed[1:] == [None]  # too old: the upload plans again
