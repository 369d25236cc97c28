"""Executors start the jobsub runtime somewhere; everything executor-specific stays behind base.Executor.

The registry maps a kind to ``module:Class`` and imports lazily, so `jobsub --help` never imports the
docker SDK or requests for Ray, and a missing optional dependency is an error only when that kind is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from jobsub.executors.base import Executor, Handle, LaunchRequest, Observation

if TYPE_CHECKING:
    from jobsub.config import Profile

__all__ = ["EXECUTORS", "Executor", "Handle", "LaunchRequest", "Observation", "get_executor"]

#: kind -> "module:Class". Add a line here for a new executor (and its settings in jobsub/config.py).
EXECUTORS: dict[str, str] = {
    "local": "jobsub.executors.local:LocalExecutor",
    "docker": "jobsub.executors.docker:DockerExecutor",
    "ray": "jobsub.executors.ray:RayExecutor",
    "slurm": "jobsub.executors.slurm:SlurmExecutor",
    "modelarts": "jobsub.executors.modelarts:ModelArtsExecutor",
}


def get_executor(kind: str, profile: Profile | None = None) -> Executor:
    """The executor of `kind`, configured from `profile` (the built-in local profile when None)."""
    from jobsub.config import Profile
    from jobsub.errors import ConfigError

    target = EXECUTORS.get(kind)
    if target is None:
        raise ConfigError(f"unknown executor {kind!r}; available: {', '.join(sorted(EXECUTORS))}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    executor: Executor = cls(profile or Profile())
    return executor
