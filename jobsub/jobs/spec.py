"""JobSpec: what to run, with which inputs, parameters and resources; loaded from YAML with line numbers.

Placeholders in ``command``: ``${{inputs.NAME}}``, ``${{outputs.dir}}``, ``${{params.NAME}}``, ``${{job.id}}``.
They are resolved by the runtime (inputs become local paths only there), and every value is shell-quoted.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobsub.errors import SpecError

PLACEHOLDER = re.compile(r"\$\{\{\s*([a-z_]+)\.([A-Za-z0-9_\-]+)\s*\}\}")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,40}$")


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus: float | None = None
    gpus: int = 0
    memory: str | None = None
    flavor: str | None = Field(default=None, description="a named instance flavor of the profile's price table")


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    command: str
    code: str | None = Field(default=None, description="local folder packed and unpacked as the working folder")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    inputs: dict[str, str | None] = Field(
        default_factory=dict, description="name -> URI or local path; null = required"
    )
    outputs: str | None = Field(default=None, description="URI prefix for outputs (default: inside the job record)")
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    resources: Resources = Field(default_factory=Resources)
    timeout: str | None = Field(default=None, description="e.g. 30m, 2h")
    max_retries: int = Field(default=0, ge=0, le=10)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("use 1-41 lowercase letters, digits and '-', starting with a letter or digit")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        from jobsub.redact import is_secret_env

        secret = [k for k in value if is_secret_env(k)]
        if secret:
            raise ValueError(
                f"{', '.join(secret)} looks like a secret; pass secrets through the executor, not the spec"
            )
        return {k: str(v) for k, v in value.items()}

    def placeholders(self) -> list[tuple[str, str]]:
        return PLACEHOLDER.findall(self.command)

    def check_placeholders(self) -> None:
        for scope, name in self.placeholders():
            scopes: dict[str, set[str]] = {
                "inputs": set(self.inputs),
                "params": set(self.params),
                "outputs": {"dir"},
                "job": {"id"},
            }
            known = scopes.get(scope)
            if known is None or name not in known:
                raise SpecError(f"command uses ${{{{{scope}.{name}}}}} but the spec has no {scope} named {name!r}")

    def render_command(self, values: dict[str, dict[str, Any]]) -> str:
        def replace(match: re.Match) -> str:
            value = values[match.group(1)][match.group(2)]
            return shlex.quote(str(value).lower() if isinstance(value, bool) else str(value))

        return PLACEHOLDER.sub(replace, self.command)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node a pydantic error location points to (or of its nearest parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        child = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def load_spec(path: Path) -> JobSpec:
    """Read and validate a spec file; errors name the file, the line and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read job spec {path}: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise SpecError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a job spec is a YAML mapping (name, command, params, inputs, ...)")
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        line = _line_of(node, err["loc"])
        raise SpecError(f"{path}{f':{line}' if line else ''}: {field}: {err['msg']}") from None
    if spec.code:
        code = Path(spec.code)
        spec.code = str(code if code.is_absolute() else (path.parent / code).resolve())
    try:
        spec.check_placeholders()
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return spec


def _coerce(key: str, current: Any, raw: str) -> Any:
    kind = type(current) if current is not None else str
    try:
        if kind is bool:
            if raw.lower() in ("true", "1", "yes", "on"):
                return True
            if raw.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        return kind(raw)
    except ValueError:
        raise SpecError(f"--set {key}={raw}: {key} expects {kind.__name__}, got {raw!r}") from None


def apply_sets(spec: JobSpec, assignments: list[str]) -> JobSpec:
    """Apply ``--set key=value``: params.NAME (typed by its default), env.NAME, name, timeout, image, max_retries,
    resources.cpus|gpus|memory."""
    data = spec.model_dump()
    scalars = {"name": str, "timeout": str, "image": str, "max_retries": int, "outputs": str, "description": str}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep:
            raise SpecError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set params.epochs=3")
        scope, _, sub = key.partition(".")
        if scope == "params" and sub in data["params"]:
            data["params"][sub] = _coerce(key, data["params"][sub], raw)
        elif scope == "env" and sub:
            data["env"][sub] = raw
        elif scope == "resources" and sub in ("cpus", "gpus", "memory", "flavor"):
            data["resources"][sub] = _coerce(key, {"cpus": 1.0, "gpus": 1, "memory": "", "flavor": ""}[sub], raw)
        elif key in scalars:
            data[key] = _coerce(key, scalars[key](), raw) if scalars[key] is int else raw
        else:
            valid = sorted(
                [f"params.{p}" for p in data["params"]]
                + ["env.NAME", "resources.cpus", "resources.gpus", "resources.memory", "resources.flavor", *scalars]
            )
            raise SpecError(f"--set {key}: unknown key; valid keys: {', '.join(valid)}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(f"--set: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
