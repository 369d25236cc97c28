"""`jobsub profile add ... --executor docker --docker-host ssh://me@gpu-box`: the Docker settings of a profile.

Beside slurm_options.py, for the same reason: profile_cmds applies the decorator and passes what it
collected to `docker_settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from jobsub.errors import ConfigError
from jobsub.executors.docker_settings import DockerSettings

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option(
        "--docker-host",
        "docker_host",
        help="docker: engine address, unix:///... or ssh://user@host (default: DOCKER_HOST, then the docker context).",
    ),
    click.option(
        "--docker-image", "docker_image", help="docker: image for specs without image: (default jobsub-train:latest)."
    ),
    click.option(
        "--docker-network", "docker_network", help="docker: container network (default: host for a loopback endpoint)."
    ),
    click.option("--docker-shm-size", "docker_shm_size", help="docker: shared memory for data loaders (default 1GiB)."),
    click.option(
        "--docker-keep",
        "docker_keep",
        is_flag=True,
        default=None,
        help="docker: keep finished containers for debugging (default: removed once the job is final).",
    ),
]


def docker_options(func: F) -> F:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def docker_settings(executor: str, options: dict[str, Any]) -> DockerSettings:
    """The DockerSettings the options describe; an error when they are given for another executor."""
    given = {k.removeprefix("docker_"): v for k, v in options.items() if k.startswith("docker_") and v is not None}
    if given and executor != "docker":
        names = ", ".join("--docker-" + k.replace("_", "-") for k in sorted(given))
        raise ConfigError(f"{names} only apply to --executor docker (this profile uses {executor})")
    try:
        return DockerSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--docker-" + str(first["loc"][0]).replace("_", "-")
        raise ConfigError(f"{option}: {first['msg'].removeprefix('Value error, ')}") from None
