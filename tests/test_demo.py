"""The README's main command, `jobsub demo`, end to end on a fresh user's default profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("transformers")


def fresh_user(tmp_path: Path, *dropped: str) -> dict[str, str]:
    """The environment of a new user of this machine: own config/data/state/cache dirs, no profile, no AWS
    or JOBSUB_ settings (nor any other prefix in `dropped`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBSUB_", "XDG_", *dropped))}
    env.update({f"XDG_{d}_HOME": str(tmp_path / d.lower()) for d in ("CONFIG", "DATA", "STATE", "CACHE")})
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_default_profile(tmp_path: Path) -> None:
    env = fresh_user(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "jobsub", "demo", "--epochs", "1"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "profile default" in result.stderr
    assert "[jobsub] job succeeded" in result.stdout and "accuracy" in result.stdout
    image = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("confusion matrix: "))
    assert Path(image).read_bytes()[:4] == b"\x89PNG"
    assert "news_entertainment" in result.stdout  # the per-class table


def test_the_demo_checks_its_executor_before_building_or_uploading_anything(tmp_path: Path) -> None:
    """No Docker engine behind DOCKER_HOST: one line that says so, exit 2, no checkpoint built, nothing stored."""
    env = {**fresh_user(tmp_path, "DOCKER_"), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    work = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "jobsub", "demo", "--executor", "docker", "--work-dir", str(work)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no Docker engine at unix://{tmp_path}/no-engine.sock" in result.stderr and "Traceback" not in result.stderr
    assert not work.exists()
    store = tmp_path / "data" / "jobsub" / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
