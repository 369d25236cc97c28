"""The README's main command, `jobsub demo`, end to end on a fresh user's default profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("transformers")


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_default_profile(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBSUB_", "XDG_"))}
    env.update({f"XDG_{d}_HOME": str(tmp_path / d.lower()) for d in ("CONFIG", "DATA", "STATE", "CACHE")})
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "jobsub", "demo", "--epochs", "1"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "profile default" in result.stderr
    assert "[jobsub] job succeeded" in result.stdout and "accuracy" in result.stdout
    image = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("confusion matrix: "))
    assert Path(image).read_bytes()[:4] == b"\x89PNG"
    assert "news_entertainment" in result.stdout  # the per-class table
