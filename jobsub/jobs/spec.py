"""JobSpec: what to run, with which inputs, parameters and resources; loaded from YAML with line numbers.

Placeholders in ``command``: ``${{inputs.NAME}}``, ``${{outputs.dir}}``, ``${{params.NAME}}``, ``${{job.id}}``.
They are resolved by the runtime (inputs become local paths only there), and every value becomes exactly one
shell word (shlex.quote). A placeholder where the shell would read the quoted value again is refused at load
and again when the runtime renders it (jobs/shell_context.py): inside quotes, backticks, heredoc bodies and
eval (``echo "${{params.msg}}"`` with ``msg=$(touch x)`` runs ``touch``), and in arithmetic (``(( ))``,
``$(( ))``, ``let``, ``[[ -eq ]]``, subscripts) unless the value is a plain number (``a[$(id)]`` runs ``id``).

Everything that could fail at run time is checked here, at submit: names, the timeout, resources, finite
numbers, duplicate keys.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from jobsub.errors import SpecError, UsageError
from jobsub.jobs.shell_context import is_number, placeholder_contexts
from jobsub.jobs.spec_guard import check_spec_depth, env_problem, read_spec_bytes

if TYPE_CHECKING:  # PyYAML is imported where a spec file is read: the runtime only validates records
    import yaml

PLACEHOLDER = re.compile(r"\$\{\{\s*([a-z_]+)\.([A-Za-z0-9_\-]+)\s*\}\}")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,40}$")
#: Input, output and param names: they become folder names and environment variable names.
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDENT_RULE = "names match [A-Za-z_][A-Za-z0-9_]* (letters, digits and '_', not starting with a digit)"
#: An image reference as container engines take it (registry/name:tag@digest, docker://..., library://...,
#: pyxis' registry#name, an image file path): one word, no shell or option syntax, so it can stand in a
#: profile's container prefix ('apptainer exec {image}') or an engine's argument list and mean only an image.
IMAGE_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|\.{0,2}/)?[A-Za-z0-9_][A-Za-z0-9_./:@#+-]{0,511}$")


ENV_OF_SCOPE = {
    "inputs": "JOBSUB_INPUT_",
    "params": "JOBSUB_PARAM_",
    "outputs": "JOBSUB_OUTPUT_DIR",
    "job": "JOBSUB_JOB_ID",
}


def _pydantic_message(err: Any) -> str:
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def check_name(kind: str, name: str) -> str:
    """One rule for every input, output and param name (they become paths and JOBSUB_* variable names)."""
    if not IDENT_RE.match(name):
        raise ValueError(f"{kind} name {name!r} is not allowed: {IDENT_RULE}")
    return name


def _finite(value: Any, what: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} is {value}: use a finite number")
    return value


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus: float | None = Field(default=None, ge=0)
    gpus: int = Field(default=0, ge=0)
    memory: str | None = None
    nodes: int = Field(default=1, ge=1, description="machines for one job (multi-node needs the slurm executor)")
    flavor: str | None = Field(default=None, description="a named instance flavor of the profile's price table")

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, value: float | None) -> float | None:
        if value == 0:  # an engine reads 0 as "no limit": the job would use every core and be priced as one
            raise ValueError("cpus: 0 would run without a CPU limit; give the cores the job needs (e.g. 1 or 0.5)")
        return _finite(value, "cpus")

    #: `memory` in bytes, parsed once when the spec is read (the text stays what the user wrote)
    _memory_bytes: int | None = PrivateAttr(default=None)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            from jobsub.units import parse_size

            try:
                parse_size(value)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        from jobsub.units import parse_size

        self._memory_bytes = parse_size(self.memory) if self.memory is not None else None

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes (None: no limit)."""
        return self._memory_bytes


def nodes_problem(resources: Resources, executor_kind: str) -> str | None:
    """Why this executor cannot run a job over `resources.nodes` machines, or None when it can (the executor
    class says so: Capabilities.multi_node)."""
    from jobsub.executors import executor_class, multi_node_kinds

    if resources.nodes > 1 and not executor_class(executor_kind).capabilities.multi_node:
        kinds = " or ".join(multi_node_kinds()) or "a multi-node"
        return (
            f"resources.nodes: {resources.nodes} needs the {kinds} executor (this profile runs jobs on "
            f"{executor_kind!r}, one machine); set resources.nodes to 1 or use a {kinds} profile"
        )
    return None


class Headline(BaseModel):
    """The one metric a template is judged by (the jobs list shows each job's best value of it, not its last)."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(description="a key of the program's metrics.jsonl rows, e.g. eval_accuracy")
    goal: Literal["max", "min"] = Field(default="max", description="whether higher or lower is better")


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
    headline: Headline | None = Field(default=None, description="the metric the web view ranks jobs by")

    #: `timeout` in seconds, parsed once when the spec is read
    _timeout_seconds: float | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        from jobsub.units import parse_duration

        self._timeout_seconds = parse_duration(str(self.timeout)) if self.timeout is not None else None

    @property
    def timeout_seconds(self) -> float | None:
        """The timeout in seconds (None: no timeout)."""
        return self._timeout_seconds

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("use 1-41 lowercase letters, digits and '-', starting with a letter or digit")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        from jobsub.redact import has_url_userinfo, is_secret_env

        for name, item in value.items():
            problem = env_problem(str(name), str(item))
            if problem:
                raise ValueError(problem)
        secret = [k for k in value if is_secret_env(k)]
        if secret:
            raise ValueError(
                f"{', '.join(secret)} looks like a secret and would be stored in the job record; "
                f"pass it with --secret-env {secret[0]} (taken from your shell, never stored)"
            )
        with_password = [k for k, v in value.items() if has_url_userinfo(str(v))]
        if with_password:
            raise ValueError(
                f"{with_password[0]} holds a URL with user:password@, which would be stored in the job record; "
                f"pass it with --secret-env {with_password[0]} (taken from your shell, never stored)"
            )
        return {k: str(v) for k, v in value.items()}

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_RE.match(value):
            raise ValueError(
                f"{value[:80]!r} is not an image reference: letters, digits and . _ - / : @ # + only, "
                "starting with a letter, digit or path (e.g. python:3.11-slim, docker://org/train:1, /img/train.sif)"
            )
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, param in value.items():
            check_name("param", name)
            _finite(param, f"params.{name}")
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            check_name("input", name)
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | None) -> str | None:
        if value is not None:
            from jobsub.units import parse_duration

            try:
                seconds = parse_duration(str(value))
            except UsageError as exc:
                raise ValueError(str(exc)) from None
            if seconds <= 0:
                raise ValueError(f"timeout {value!r} must be longer than 0s")
        return value

    def placeholders(self) -> list[tuple[str, str]]:
        return PLACEHOLDER.findall(self.command)

    def _env_hint(self, scope: str, name: str) -> str:
        return ENV_OF_SCOPE[scope] + ("" if scope in ("outputs", "job") else name.upper())

    def check_quoting(self, values: dict[str, dict[str, Any]] | None = None) -> None:
        """Refuse placeholders where the shell would read their value again (jobs/shell_context.py): inside
        quotes, backticks, heredoc bodies and eval always; in arithmetic unless the value is a plain number.
        ``values`` are the values rendered (the runtime's); at submit the spec's params are checked."""
        spans = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(self.command)]
        contexts = placeholder_contexts(self.command, spans)
        for match in PLACEHOLDER.finditer(self.command):
            context = contexts.get(match.start())
            if context is None:
                continue
            placeholder, scope, name = match.group(0), match.group(1), match.group(2)
            env_name = self._env_hint(scope, name)
            if context.kind == "reparse":
                if context.where in ("single quotes", "double quotes", "backticks"):
                    fix = f'write it outside quotes (e.g. --msg={placeholder}), or use "${env_name}" inside the quotes'
                else:
                    fix = f'pass it as an argument or read "${env_name}" (a variable\'s value is not parsed again)'
                raise SpecError(
                    f"command: {placeholder} is inside {context.where}, where the shell would parse its value "
                    f"again; a placeholder is already one quoted word: {fix}"
                )
            value = (values or {}).get(scope, {}).get(name) if values is not None else self.params.get(name)
            if scope != "params" or not is_number(value):
                shown = "" if scope != "params" else f" (value {str(value)[:40]!r})"
                raise SpecError(
                    f"command: {placeholder} is in {context.where}, where bash evaluates the value as an "
                    f"arithmetic expression (a value like a[$(cmd)] runs cmd); only a number may stand there"
                    f'{shown}: give params.{name} a number, or compare text with [[ "${env_name}" == ... ]]'
                )

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
        """The command with every placeholder as one quoted word; the quoting rules are checked again here,
        on the values rendered (a job record in a shared bucket may have been rewritten since submit)."""
        self.check_quoting(values)

        def replace(match: re.Match) -> str:
            value = values[match.group(1)][match.group(2)]
            return shlex.quote(str(value).lower() if isinstance(value, bool) else str(value))

        return PLACEHOLDER.sub(replace, self.command)


@functools.cache
def _unique_key_loader() -> type[yaml.SafeLoader]:
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last). Made
    on first use: importing PyYAML costs ~25 ms that the runtime, which never reads a spec file, skips."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
                try:
                    hash(key)
                except TypeError:
                    continue
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (lines {seen[key]} and {line})", key_node.start_mark
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...], message: str = "") -> int | None:
    """The 1-based line of the YAML node a pydantic error location points to (or of its nearest parent).
    A mapping-wide error that names one of the mapping's keys (params, env, inputs) points at that key."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        child = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    if isinstance(node, yaml.MappingNode) and message:
        for key, _ in node.value:
            name = str(getattr(key, "value", ""))
            if name and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
                return int(key.start_mark.line + 1)
    return line


def load_spec(path: Path) -> JobSpec:
    """Read and validate a spec file; errors name the file, the line and the field."""
    try:
        raw = read_spec_bytes(path)  # bounded: spec_guard.py
    except OSError as exc:
        raise SpecError(f"cannot read job spec {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{bad_line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the spec as UTF-8"
        ) from None
    check_spec_depth(path, text)  # before PyYAML recurses into it
    import yaml

    try:
        node = yaml.compose(text)
        data = yaml.load(text, Loader=_unique_key_loader())
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
        line = _line_of(node, err["loc"], _pydantic_message(err))
        raise SpecError(f"{path}{f':{line}' if line else ''}: {field}: {_pydantic_message(err)}") from None
    if spec.code:
        code = Path(spec.code)
        spec.code = str(code if code.is_absolute() else (path.parent / code).resolve())
    try:
        spec.check_placeholders()
        spec.check_quoting()
    except SpecError as exc:
        line = _line_of(node, ("command",))
        raise SpecError(f"{path}{f':{line}' if line else ''}: {exc}") from None
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
    resources.cpus|gpus|memory|nodes."""
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
        elif scope == "resources" and sub in ("cpus", "gpus", "memory", "flavor", "nodes"):
            defaults = {"cpus": 1.0, "gpus": 1, "memory": "", "flavor": "", "nodes": 1}
            data["resources"][sub] = _coerce(key, defaults[sub], raw)
        elif key in scalars:
            data[key] = _coerce(key, scalars[key](), raw) if scalars[key] is int else raw
        else:
            valid = sorted(
                [f"params.{p}" for p in data["params"]]
                + ["env.NAME", "resources.cpus", "resources.gpus", "resources.memory", "resources.flavor"]
                + ["resources.nodes", *scalars]
            )
            raise SpecError(f"--set {key}: unknown key; valid keys: {', '.join(valid)}")
    try:
        result = JobSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(f"--set: {'.'.join(map(str, err['loc']))}: {_pydantic_message(err)}") from None
    result.check_quoting()  # a param set to text where the command does arithmetic with it
    return result
