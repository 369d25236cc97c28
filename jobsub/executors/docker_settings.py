"""The docker executor's profile options (``[profiles.X.docker]``), apart from jobsub/executors/docker.py.

A module of its own because every profile that holds this section imports it when it is loaded (the CLI
at each command, the runner in each job through JOBSUB_PROFILE_JSON), and the executor module is heavier
(measured in docs/architecture.md, "Executor settings"). DockerExecutor.settings_model names this class.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobsub.config import strip_userinfo
from jobsub.units import parse_size


class DockerSettings(BaseModel):
    """Docker Engine / Podman (Docker-compatible socket)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        default=None, description="unix:///... or ssh://user@host; default: DOCKER_HOST, then the docker context"
    )
    image: str | None = Field(default=None, description="image for specs without image: (default jobsub-train:latest)")
    network: str | None = Field(
        default=None, description="container network; default: 'host' for a loopback endpoint, else the engine's"
    )
    keep: bool = Field(default=False, description="keep finished containers for debugging")
    shm_size: str | None = Field(default=None, description="shared memory for data loaders, e.g. 2GiB (default 1GiB)")

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value and not value.startswith(("unix://", "tcp://", "ssh://", "npipe://", "http://", "https://")):
            raise ValueError("use unix:///path/docker.sock, tcp://host:2376 or ssh://user@host")
        if value and ":" in urlsplit(value).netloc.rpartition("@")[0]:
            raise ValueError(f"{strip_userinfo(value)} must not contain user:password@; use ssh://user@host with a key")
        return value

    @field_validator("shm_size")
    @classmethod
    def _check_shm(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_size(value)
            except Exception:
                raise ValueError(f"cannot read size {value!r}: e.g. 2GiB or 512MiB") from None
        return value
