"""Profiles: where objects live (local folder or an S3-compatible endpoint) and where jobs run.

Stored as TOML in the user config dir (platformdirs, so XDG_CONFIG_HOME is honoured). No secret is ever
stored here: S3 credentials come from boto3's own chain (environment, ~/.aws files, AWS_PROFILE), and a
profile may only *name* an AWS profile.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from jobsub.costs import Prices
from jobsub.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "jobsub"
DEFAULT_PROFILE = "default"


def private_mkdir(path: Path, mode: int = 0o700) -> Path:
    """Create a folder (and its missing parents) readable by the owner only, whatever the umask.

    Folders that already exist keep their mode: a user who opened one on purpose keeps it open.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(folder, mode)  # mkdir's mode is filtered by the umask; chmod is not
    return path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``data``, owner-only, through a temp name no other writer shares."""
    private_mkdir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def strip_userinfo(url: str) -> str:
    """``https://user:pass@host/`` -> ``https://host/``: for any place an endpoint URL could be printed."""
    parsed = urlsplit(url)
    if "@" not in parsed.netloc:
        return url
    return urlunsplit(parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]))


def check_endpoint_url(value: str) -> str:
    """Refuse endpoint URLs that carry credentials: they would end up in config files and logs."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("endpoint_url must start with http:// or https://")
    if "@" in urlsplit(value).netloc:
        raise ValueError(
            f"endpoint_url {strip_userinfo(value)} must not contain user:password@; credentials come from "
            "the AWS credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, or --aws-profile)"
        )
    return value


def config_dir() -> Path:
    """Profiles and templates; created 0700 (private by default) when first asked for."""
    return private_mkdir(Path(platformdirs.user_config_dir(APP)))


def data_dir() -> Path:
    """The default local store lives here; created 0700."""
    return private_mkdir(Path(platformdirs.user_data_dir(APP)))


def state_dir() -> Path:
    """Resume journals and runner logs: machine-local state that is safe to delete when nothing is pending.

    Created 0700: journals name source paths and runner logs can hold job output."""
    return private_mkdir(Path(platformdirs.user_state_dir(APP)))


def config_file() -> Path:
    return config_dir() / "config.toml"


#: Executor kind -> "module:Class" (imported only when used). Add a line here for a new executor; the class
#: declares its capabilities, handle model and profile settings itself (executors/base.py). The settings of
#: the built-in executors are the Profile fields below (the CLI's --docker-*/--slurm-*/... options build
#: them); a new executor's own section is found through its class (`executor_settings_model`).
EXECUTORS: dict[str, str] = {
    "local": "jobsub.executors.local:LocalExecutor",
    "docker": "jobsub.executors.docker:DockerExecutor",
    "ray": "jobsub.executors.ray:RayExecutor",
    "slurm": "jobsub.executors.slurm:SlurmExecutor",
    "modelarts": "jobsub.executors.modelarts:ModelArtsExecutor",
}


class DockerSettings(BaseModel):
    """Docker Engine / Podman (Docker-compatible socket). Owned by jobsub/executors/docker.py."""

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
            from jobsub.units import parse_size

            try:
                parse_size(value)
            except Exception:
                raise ValueError(f"cannot read size {value!r}: e.g. 2GiB or 512MiB") from None
        return value


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
    """A Ray cluster through its Jobs REST API (no Ray needed on this machine). Owned by jobsub/executors/ray.py."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, description="dashboard address, e.g. http://head:8265")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="HTTP header -> name of the environment variable holding its value"
    )
    ship_jobsub: bool = Field(
        default=True, description="upload this jobsub with each job (runtime_env py_modules); off if the image has it"
    )
    pip: list[str] = Field(
        default_factory=list,
        description="requirements Ray installs for the runner (runtime_env pip), e.g. jobsub's own dependencies",
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        """The dashboard's HTTP address; a bare host:port means http. A ray:// (Ray Client) or GCS address is a
        different service, so it is refused with the address to use instead."""
        if not value:
            return None
        value = value.strip().rstrip("/")
        if value.startswith("ray://"):
            raise ValueError(f"{value} is a Ray Client address; jobsub uses the dashboard's Jobs API: http://HEAD:8265")
        if "://" not in value:
            value = "http://" + value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value}: the Ray dashboard address starts with http:// or https://")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "a Ray address must not hold credentials (user:password@): put the token in an environment "
                "variable and name it in ray.headers_env"
            )
        return value


# -- ModelArts (owned by jobsub/executors/modelarts.py) -------------------------------------------------------
class ModelArtsSettings(BaseModel):
    """Huawei Cloud ModelArts training jobs through the official SDK. Never a credential: the SDK's own chain
    (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK, ~/.huaweicloud/credentials, OIDC) provides them."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(default=None, description="e.g. cn-north-4 (the SDK's region list gives the endpoint)")
    endpoint: str | None = Field(
        default=None, description="API endpoint override, e.g. https://modelarts.cn-north-4.myhuaweicloud.com"
    )
    project_id: str | None = Field(
        default=None, description="the project of the region (default: HUAWEICLOUD_SDK_PROJECT_ID)"
    )
    flavor: str | None = Field(default=None, description="training flavor id for jobs without resources.flavor")
    pool_id: str | None = Field(default=None, description="a dedicated resource pool (default: the public pool)")
    image: str | None = Field(default=None, description="SWR image with jobsub, for specs without image:")
    log_export_path: str | None = Field(default=None, description="obs://bucket/path/ where ModelArts exports job logs")
    credentials_ttl_seconds: int = Field(
        default=6 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="how long a queued job may wait for its one-time storage credentials",
    )
    keep_jobs: bool = Field(default=True, description="keep finished training jobs on ModelArts (False: delete them)")

    @field_validator("endpoint")
    @classmethod
    def _check_ma_endpoint(cls, value: str | None) -> str | None:
        return check_endpoint_url(value.rstrip("/")) if value else value


S = TypeVar("S", bound=BaseModel)


def executor_settings_model(kind: str) -> type[BaseModel] | None:
    """The settings model (its ``[profiles.X.<kind>]`` section) that the executor class registered for
    `kind` declares as ``settings_model``; None for an unknown kind or a class without settings.

    The executor's module is imported by name, as the registry's own lookup does (executors/__init__.py):
    config sits below the executors in the layers contract and never imports them statically. So a
    profile that holds such a section imports that executor's module when it is loaded: keep its
    module-level imports light (SDKs inside functions), as every executor module does.
    """
    target = EXECUTORS.get(kind)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    executor = getattr(importlib.import_module(module_name), class_name, None)
    model = getattr(executor, "settings_model", None)  # a class attribute, declared or inherited
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


class Profile(BaseModel):
    """One named configuration. ``extra='forbid'`` turns a typo in the TOML into an error naming the key.

    Beside the fields below, a profile holds a section for every registered executor whose class declares
    its own ``settings_model`` and is not one of the built-in fields (``[profiles.X.<kind>]`` in TOML, a
    key of the profile's JSON): validated by that model when the profile is, written back flat, read by
    the executor with ``section(kind, Model)``. Adding an executor with settings touches no line here.
    """

    model_config = ConfigDict(extra="forbid")

    #: sections of executors that are not built-in fields, by kind (see the class doc)
    _sections: dict[str, BaseModel] = PrivateAttr(default_factory=dict)

    storage: Literal["local", "s3"] = "local"
    root: str | None = Field(default=None, description="local storage: the folder that holds the buckets")
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    aws_profile: str | None = Field(default=None, description="name of a profile in ~/.aws (never a secret)")
    jobs_uri: str = Field(default="s3://jobsub/jobs/", description="where job records are kept")
    checksum: Literal["auto", "md5", "crc32", "crc32c", "crc64nvme", "sha256"] = Field(
        default="auto",
        description="per-part checksum: auto = CRC32 on AWS, MD5 + Content-MD5 on other S3-compatible servers",
    )
    read_timeout: float = Field(default=60.0, gt=0, description="seconds without a reply before a request fails")
    connect_timeout: float = Field(default=10.0, gt=0)
    shared_store: bool = Field(
        default=False, description="local storage: create folders 0770/files 0660 (a group-shared store)"
    )
    executor: str = Field(default="local", description="where jobs run: local, docker, slurm, ray, modelarts")
    docker: DockerSettings = Field(default_factory=DockerSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    modelarts: ModelArtsSettings = Field(default_factory=ModelArtsSettings)
    prices: Prices = Field(default_factory=Prices, description="price table for cost estimates (default: zeros)")

    @model_validator(mode="wrap")
    @classmethod
    def _executor_sections(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Profile:
        """Take the sections of registered executors that are not fields out of the input and validate each
        with its executor's settings model; any other unknown key stays for extra='forbid' to name."""
        sections: dict[str, BaseModel] = {}
        if isinstance(data, dict):
            data = dict(data)
            for key in [k for k in data if k not in cls.model_fields and k in EXECUTORS]:
                model = executor_settings_model(key)
                if model is None:
                    continue
                raw = data.pop(key)
                try:
                    sections[key] = raw if isinstance(raw, model) else model.model_validate(raw)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in (key, *first["loc"]))
                    context = {"where": where, "msg": first["msg"]}
                    raise PydanticCustomError("executor_section", "{where}: {msg}", context) from None
        profile = handler(data)
        if not isinstance(profile, Profile):  # pragma: no cover - the handler builds this class
            raise TypeError("Profile validation returned another type")
        if sections:
            profile._sections = {**profile._sections, **sections}
        return profile

    @model_serializer(mode="wrap")
    def _dump_sections(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """The executor sections written flat beside the fields, as they are read (TOML and JSON alike)."""
        data: dict[str, Any] = handler(self)
        for kind, section in self._sections.items():
            data[kind] = section.model_dump(mode=info.mode, exclude_none=info.exclude_none)
        return data

    def section(self, kind: str, model: type[S]) -> S:
        """The settings of executor `kind` that its class declares (`model`); its defaults when the profile
        has no such section."""
        found = self._sections.get(kind)
        if found is None:
            return model()
        if not isinstance(found, model):
            raise ConfigError(f"profile section {kind!r} is a {type(found).__name__}, not {model.__name__}")
        return found

    @field_validator("executor")
    @classmethod
    def _check_executor(cls, value: str) -> str:
        if value not in EXECUTORS:
            raise ValueError(f"unknown executor {value!r}; available: {', '.join(sorted(EXECUTORS))}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return check_endpoint_url(value) if value else value

    @field_validator("jobs_uri")
    @classmethod
    def _check_jobs_uri(cls, value: str) -> str:
        from jobsub.uri import ObjectURI

        return str(ObjectURI.parse(value).as_prefix())

    def local_root(self) -> Path:
        return Path(self.root).expanduser() if self.root else data_dir() / "store"

    def effective_endpoint(self) -> str | None:
        override = os.environ.get("JOBSUB_ENDPOINT_URL")
        if override:
            try:
                return check_endpoint_url(override)
            except ValueError as exc:
                raise ConfigError(f"JOBSUB_ENDPOINT_URL: {exc}") from None
        return self.endpoint_url


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
    """Write the config owner-only (0600 in a 0700 folder) through a unique temp name, replaced atomically."""
    import tomli_w

    path = path or config_file()
    data = config.model_dump(exclude_none=True)
    write_private(path, tomli_w.dumps(data).encode("utf-8"))
    return path


@contextmanager
def _config_lock(path: Path) -> Iterator[None]:
    import fcntl

    private_mkdir(path.parent)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def update_config(change: Callable[[Config], None], path: Path | None = None) -> Path:
    """Load, change and save the config under an exclusive lock: parallel `profile add` lose nothing."""
    path = path or config_file()
    with _config_lock(path):
        config = load_config(path)
        change(config)
        return save_config(config, path)


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
