"""The layers contract ([tool.importlinter] in pyproject.toml) really catches what it is for.

`make lint` runs it on the tree; here it runs on a copy of the package with one bad import of each kind
added, and must fail naming both: an import that runs up a floor, and a circle between sibling modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    if not found.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    return str(found)


def test_the_contract_fails_on_an_upward_import_and_on_a_circle(tmp_path: Path) -> None:
    tool = _lint_imports()
    shutil.copytree(REPO / "jobsub", tmp_path / "jobsub", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    units = tmp_path / "jobsub" / "units.py"  # the floor of helpers reaching up to the job service
    units.write_text(units.read_text() + "\n\ndef _bad() -> None:\n    from jobsub.jobs import service  # noqa\n")
    billing = tmp_path / "jobsub" / "jobs" / "billing.py"  # billing <-> service: the circle that was removed
    billing.write_text(billing.read_text() + "\n\nif False:\n    from jobsub.jobs.service import JobService  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([tool, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "jobsub.units is not allowed to import jobsub.jobs" in output
    assert "- jobsub.units -> jobsub.jobs.service" in output
    assert "No cycles are allowed in jobsub.jobs" in output  # which of the two imports to drop is its guess
    assert ".billing -> .service" in output or ".service -> .billing" in output
