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
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

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


def _platformdirs() -> Any:
    """platformdirs, imported when a folder is first asked for: the runtime (its profile comes as JSON)
    never asks, and the import is ~10-25 ms of its start (docs/performance.md, "Start latency")."""
    import platformdirs

    return platformdirs


def config_dir() -> Path:
    """Profiles and templates; created 0700 (private by default) when first asked for."""
    return private_mkdir(Path(_platformdirs().user_config_dir(APP)))


def data_dir() -> Path:
    """The default local store lives here; created 0700."""
    return private_mkdir(Path(_platformdirs().user_data_dir(APP)))


def state_dir() -> Path:
    """Resume journals and runner logs: machine-local state that is safe to delete when nothing is pending.

    Created 0700: journals name source paths and runner logs can hold job output."""
    return private_mkdir(Path(_platformdirs().user_state_dir(APP)))


def config_file() -> Path:
    return config_dir() / "config.toml"


class Registered(NamedTuple):
    """A registry line whose executor has profile options in a module of their own: ``executor`` is the
    "module:Class" of the executor, ``settings`` the "module:Model" its class names as ``settings_model``.

    The settings path is there so that loading a profile with that executor's section imports only the
    light settings module, not the executor (the CLI loads profiles at each command, the runner in each
    job): executors/__init__.py checks, when it imports the class, that both name the same model.
    """

    executor: str
    settings: str


#: Executor kind -> "module:Class", or Registered("module:Class", "module:Model") when its settings live in a
#: module of their own (imported only when used). Add one line here for a new executor; the class declares
#: its capabilities, handle model and profile options itself (executors/base.py). A profile holds a section
#: (``[profiles.X.<kind>]``) for any kind here whose class declares ``settings_model``; config names none of
#: their options. Sections are written in this order (docker, slurm, ray, modelarts: as before they left
#: config.py, so saved profiles keep their bytes).
EXECUTORS: dict[str, str | Registered] = {
    "local": "jobsub.executors.local:LocalExecutor",
    "docker": Registered("jobsub.executors.docker:DockerExecutor", "jobsub.executors.docker_settings:DockerSettings"),
    "slurm": Registered("jobsub.executors.slurm:SlurmExecutor", "jobsub.executors.slurm_settings:SlurmSettings"),
    "ray": Registered("jobsub.executors.ray:RayExecutor", "jobsub.executors.ray_settings:RaySettings"),
    "modelarts": Registered(
        "jobsub.executors.modelarts:ModelArtsExecutor", "jobsub.executors.modelarts_settings:ModelArtsSettings"
    ),
}


def executor_target(kind: str) -> str | None:
    """The "module:Class" registered for `kind`; None for an unknown kind."""
    entry = EXECUTORS.get(kind)
    return entry.executor if isinstance(entry, Registered) else entry


def _import_target(target: str) -> Any:
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name, None)


S = TypeVar("S", bound=BaseModel)


def executor_settings_model(kind: str) -> type[BaseModel] | None:
    """The settings model of executor `kind` (its ``[profiles.X.<kind>]`` section); None for an unknown kind
    or an executor without options.

    Imported by name (config sits below the executors in the layers contract and never imports them
    statically): from the registry line's settings module when it names one, else from the executor's
    class (``settings_model``), which imports the executor's module when a profile with its section is
    loaded: so an executor whose module is heavy keeps its settings in a light module of their own.
    """
    entry = EXECUTORS.get(kind)
    if entry is None:
        return None
    if isinstance(entry, Registered):
        model = _import_target(entry.settings)
    else:
        model = getattr(_import_target(entry), "settings_model", None)  # a class attribute, declared or inherited
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


class Profile(BaseModel):
    """One named configuration. ``extra='forbid'`` turns a typo in the TOML into an error naming the key.

    Beside the fields below, a profile holds a section for every registered executor whose class declares
    a ``settings_model`` (``[profiles.X.docker]``, ``.slurm``, ``.ray``, ``.modelarts`` and any executor
    added later; a key of the profile's JSON): validated by that model when the profile is (a typo in one
    names ``<kind>.<key>``), written back flat right after ``executor`` in registry order (saved profiles
    keep their bytes), read by the executor with ``section(kind, Model)`` and replaced with
    ``with_section``. config.py names no executor's options: adding an executor with settings touches its
    own module and its registry line.
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
        description=(
            "per-part checksum: auto = CRC32 on AWS; on other S3-compatible servers a signed SHA-256 where the "
            "server was shown to verify it, else MD5 + Content-MD5"
        ),
    )
    read_timeout: float = Field(default=60.0, gt=0, description="seconds without a reply before a request fails")
    connect_timeout: float = Field(default=10.0, gt=0)
    shared_store: bool = Field(
        default=False, description="local storage: create folders 0770/files 0660 (a group-shared store)"
    )
    executor: str = Field(default="local", description="where jobs run: local, docker, slurm, ray, modelarts")
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
        """The executor sections written flat right after ``executor``, in registry order (TOML and JSON)."""
        fields: dict[str, Any] = handler(self)
        if not self._sections:
            return fields
        kinds = [kind for kind in EXECUTORS if kind in self._sections]
        kinds += [kind for kind in self._sections if kind not in kinds]  # one registered later, by a test
        sections = {
            kind: self._sections[kind].model_dump(
                mode=info.mode, exclude_none=info.exclude_none, exclude_defaults=info.exclude_defaults
            )
            for kind in kinds
        }
        data: dict[str, Any] = {}
        for key, value in fields.items():
            data[key] = value
            if key == "executor":
                data.update(sections)
        data.update({kind: value for kind, value in sections.items() if kind not in data})  # executor excluded
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

    def shown(self) -> dict[str, Any]:
        """The profile as `profile show/list --json` print it: every registered executor's section, its
        defaults where the profile has none (scripts read `.docker.image` whether or not it was ever set)."""
        data: dict[str, Any] = self.model_dump()
        for kind in EXECUTORS:
            model = executor_settings_model(kind)
            if model is not None and kind not in data:
                data[kind] = model().model_dump()
        return data

    def with_section(self, kind: str, settings: BaseModel) -> Profile:
        """A copy of this profile with executor `kind`'s section replaced (e.g. `jobsub image --docker-host`);
        checked as a loaded one would be."""
        model = executor_settings_model(kind)
        if model is None or not isinstance(settings, model):
            raise ConfigError(f"executor {kind!r} has no profile section of type {type(settings).__name__}")
        copy = self.model_copy()
        copy._sections = {**self._sections, kind: settings}
        return copy

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
        raise ConfigError(f"config {path}: {first_problem(exc)}") from None


def first_problem(exc: ValidationError) -> str:
    """``where: what`` for the first error of a profile's validation, the key inside an executor's section
    named in full (``profiles.w.docker.hots: Extra inputs are not permitted``)."""
    first = exc.errors()[0]
    where, msg = [str(p) for p in first["loc"]], first["msg"]
    context = first.get("ctx") or {}
    if first["type"] == "executor_section":
        where, msg = [*where, str(context["where"])], str(context["msg"])
    return f"{'.'.join(where)}: {msg}"


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
