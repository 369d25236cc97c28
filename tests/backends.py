"""One rule for tests that need a backend (a binary, a daemon, ../shared data): skip on a laptop, fail in CI.

In CI (``CI=true``) every backend is installed by .ci/run, so a backend that cannot start is a failure of
the build, never a silent skip. On a developer's machine the test skips and says what is missing.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def backend_unavailable(reason: str) -> NoReturn:
    """Skip (laptop) or fail (CI) the current test with `reason`."""
    if in_ci():
        pytest.fail(f"backend unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, hint: str) -> str:
    """The path of `name` on PATH, or skip/fail with `hint` (how to install it)."""
    path = shutil.which(name)
    if path is None:
        backend_unavailable(f"{name} not found on PATH: {hint}")
    return path
