"""Profiles: where objects live (local folder or an S3-compatible endpoint) and where jobs run.

Stored as TOML in the user config dir (platformdirs, so XDG_CONFIG_HOME is honoured). No secret is ever
stored here: S3 credentials come from boto3's own chain (environment, ~/.aws files, AWS_PROFILE), and a
profile may only *name* an AWS profile.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobsub.costs import Prices
from jobsub.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "jobsub"
DEFAULT_PROFILE = "default"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def state_dir() -> Path:
    """Resume journals and runner logs: machine-local state that is safe to delete when nothing is pending."""
    return Path(platformdirs.user_state_dir(APP))


def config_file() -> Path:
    return config_dir() / "config.toml"


class DockerSettings(BaseModel):
    """Docker Engine / Podman (Docker-compatible socket). Owned by jobsub/executors/docker.py."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(default=None, description="unix:///... or ssh://user@host; default: DOCKER_HOST")
    network: str | None = Field(default=None, description="container network; 'host' reaches a loopback endpoint")
    keep: bool = Field(default=False, description="keep finished containers for debugging")
    shm_size: str | None = Field(default=None, description="shared memory for data loaders, e.g. 2GiB")


class SlurmSettings(BaseModel):
    """Slurm through sbatch/squeue/scancel on a login node. Owned by jobsub/executors/slurm.py."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_args: list[str] = Field(default_factory=list, description="extra sbatch options")
    setup: list[str] = Field(default_factory=list, description="lines run before the runtime (module load ...)")
    container: str | None = Field(
        default=None, description="prefix for the runtime, e.g. 'apptainer exec --nv {image}' ({image}: the job's)"
    )
    work_root: str | None = Field(
        default=None, description="folder for batch scripts, runner logs and work dirs (default: the state dir)"
    )
    python: str = Field(default="python3", description="the interpreter with jobsub installed, on the compute nodes")


class RaySettings(BaseModel):
    """A Ray cluster through its Jobs REST API. Owned by jobsub/executors/ray.py."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, description="dashboard address, e.g. http://head:8265")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="HTTP header -> name of the environment variable holding its value"
    )


class Profile(BaseModel):
    """One named configuration. ``extra='forbid'`` turns a typo in the TOML into an error naming the key."""

    model_config = ConfigDict(extra="forbid")

    storage: Literal["local", "s3"] = "local"
    root: str | None = Field(default=None, description="local storage: the folder that holds the buckets")
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    aws_profile: str | None = Field(default=None, description="name of a profile in ~/.aws (never a secret)")
    jobs_uri: str = Field(default="s3://jobsub/jobs/", description="where job records are kept")
    executor: str = Field(default="local", description="where jobs run: local, docker, slurm, ray")
    docker: DockerSettings = Field(default_factory=DockerSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    prices: Prices = Field(default_factory=Prices, description="price table for cost estimates (default: zeros)")

    @field_validator("executor")
    @classmethod
    def _check_executor(cls, value: str) -> str:
        from jobsub.executors import EXECUTORS

        if value not in EXECUTORS:
            raise ValueError(f"unknown executor {value!r}; available: {', '.join(sorted(EXECUTORS))}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("endpoint_url must start with http:// or https://")
        return value

    @field_validator("jobs_uri")
    @classmethod
    def _check_jobs_uri(cls, value: str) -> str:
        from jobsub.uri import ObjectURI

        return str(ObjectURI.parse(value).as_prefix())

    def local_root(self) -> Path:
        return Path(self.root).expanduser() if self.root else data_dir() / "store"

    def effective_endpoint(self) -> str | None:
        return os.environ.get("JOBSUB_ENDPOINT_URL") or self.endpoint_url


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current: str = DEFAULT_PROFILE
    profiles: dict[str, Profile] = Field(default_factory=dict)


def load_config(path: Path | None = None) -> Config:
    path = path or config_file()
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config {path}: {where}: {first['msg']}") from None


def save_config(config: Config, path: Path | None = None) -> Path:
    import tomli_w

    path = path or config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config.model_dump(exclude_none=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
    return path


def resolve_profile(name: str | None = None, config: Config | None = None) -> tuple[str, Profile]:
    """The profile to use: --profile, else JOBSUB_PROFILE, else the config's current, else the built-in local."""
    config = config or load_config()
    name = name or os.environ.get("JOBSUB_PROFILE") or config.current
    if name in config.profiles:
        return name, config.profiles[name]
    if name == DEFAULT_PROFILE:
        return name, Profile()
    known = ", ".join(sorted({DEFAULT_PROFILE, *config.profiles})) or DEFAULT_PROFILE
    raise ConfigError(f"no profile named {name!r} (known: {known}); add one with `jobsub profile add {name} ...`")
