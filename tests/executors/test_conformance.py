"""The conformance suite: the same cases on every executor kind (local, docker, slurm, ray) and store.

An executor is done when it passes every case that applies to it; a case that cannot apply skips with
the harness's reason. Every job here is real: a real runner on the real backend, real jobsub CLI calls.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env
from tests.executors.harness import ExecutorHarness


def _code(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(body)
    return folder


def _submit_args(harness: ExecutorHarness, code: Path, *extra: str) -> list[str]:
    sets = [arg for s in harness.spec_sets for arg in ("--set", s)]
    return ["submit", "python-script", "--code", str(code), *sets, *extra]


def test_follow_shows_every_line_once_in_order_and_exits_with_the_job_code(
    xenv: tuple[Env, ExecutorHarness], tmp_path: Path
) -> None:
    env, harness = xenv
    code = _code(
        tmp_path,
        "import sys\nfor i in range(200):\n    print(f'line {i}', flush=True)\nsys.exit(7)\n",
    )
    result = env.run(*_submit_args(harness, code, "--follow"), timeout=300)
    assert result.returncode == 7, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(200)]
    job_id = result.stdout.splitlines()[0]
    status = env.run_json("status", job_id)
    assert status["status"]["state"] == "FAILED" and status["status"]["exit_code"] == 7
    assert harness.kind in json.dumps(status["executor"]).lower() or status["executor"]


def test_idempotent_submit_starts_one_job(xenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    env, harness = xenv
    code = _code(tmp_path, "print('hello')\n")
    first = env.run_json(*_submit_args(harness, code, "--idempotency-key", "k1"))
    second = env.run_json(*_submit_args(harness, code, "--idempotency-key", "k1"))
    assert first["job_id"] == second["job_id"] and first["created"] and not second["created"]
    done = env.run("logs", "-f", first["job_id"], timeout=300)
    assert done.returncode == 0 and "hello" in done.stdout
