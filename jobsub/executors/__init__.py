"""Executors start the jobsub runtime somewhere; everything executor-specific stays behind base.BaseExecutor.

The registry (config.EXECUTORS: kind -> "module:Class", and the "module:Model" of its profile settings when
they live in a light module of their own) is imported lazily, so `jobsub --help` never imports the docker
SDK or requests for Ray, and a missing optional dependency is an error only when that kind is used. It
lives in config.py because profiles validate their `executor` against it and config sits below the
executors.
"""

from __future__ import annotations

import importlib

from jobsub.config import EXECUTORS, Profile, executor_settings_model, executor_target
from jobsub.errors import ConfigError
from jobsub.executors.base import BaseExecutor, BaseHandle, Capabilities, Executor, Handle, LaunchRequest, Observation

__all__ = [
    "EXECUTORS",
    "BaseHandle",
    "Capabilities",
    "Executor",
    "Handle",
    "LaunchRequest",
    "Observation",
    "executor_class",
    "get_executor",
    "multi_node_kinds",
]


def executor_class(kind: str) -> type[Executor]:
    """The class registered for `kind` (its module imported now); ConfigError for an unknown kind."""
    target = executor_target(kind)
    if target is None:
        raise ConfigError(f"unknown executor {kind!r}; available: {', '.join(sorted(EXECUTORS))}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, BaseExecutor)):
        raise ConfigError(f"executor {kind!r}: {target} is not an executor class (see executors/base.py)")
    if cls.settings_model is not executor_settings_model(kind):  # the registry line and the class disagree
        raise ConfigError(
            f"executor {kind!r}: its registry line and {cls.__qualname__}.settings_model name different "
            "settings models (see config.EXECUTORS)"
        )
    return cls


def get_executor(kind: str, profile: Profile | None = None) -> Executor:
    """The executor of `kind`, configured from `profile` (the built-in local profile when None)."""
    return executor_class(kind)(profile or Profile())


def multi_node_kinds() -> list[str]:
    """Kinds whose class declares multi_node (for messages); a kind whose optional SDK is missing is skipped."""
    kinds = []
    for kind in EXECUTORS:
        try:
            if executor_class(kind).capabilities.multi_node:
                kinds.append(kind)
        except (ImportError, ConfigError):
            continue
    return kinds
