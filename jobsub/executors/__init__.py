"""Executors start the jobsub runtime somewhere; everything executor-specific stays behind base.Executor."""

from __future__ import annotations

from jobsub.executors.base import Executor


def get_executor(kind: str) -> Executor:
    if kind == "local":
        from jobsub.executors.local import LocalExecutor

        return LocalExecutor()
    from jobsub.errors import ConfigError

    raise ConfigError(f"unknown executor {kind!r}; available: local")
