"""Bounds on what a job spec file and its `env` may hold, checked before the YAML is built into objects.

A spec is often a file someone else wrote (a shared template folder, a repository). PyYAML builds nested
collections recursively, so `[[[[...]]]]` a few thousand levels deep ends in a RecursionError, and a
multi-GB file (or `-f /dev/zero`) would be read whole. Both become one line with the file and the line,
exit 2, before anything else happens. An `env` name with '=' or a NUL (or a value with a NUL) cannot be
put into a process environment: it would fail at run time, inside the job, instead of at submit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jobsub.errors import BucketNotFoundError, SpecError

if TYPE_CHECKING:
    from jobsub.storage.base import ObjectStore

#: A real spec is a few KB; the largest template here is under 4 KB.
MAX_SPEC_BYTES = 1 << 20
#: A spec is at most 3 levels deep (resources.memory, a list in a param is refused anyway).
MAX_SPEC_DEPTH = 32


def read_spec_bytes(path: Path) -> bytes:
    """The spec file's bytes, refusing (SpecError, file:line) one larger than MAX_SPEC_BYTES without reading
    past the limit. OSError is left to the caller (it words a missing file)."""
    with path.open("rb") as fh:
        raw = fh.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        line = raw[:MAX_SPEC_BYTES].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: the spec is larger than {MAX_SPEC_BYTES // 1024} KiB; a job spec is a few KB "
            "(put data in inputs, not in the YAML)"
        )
    return raw


def check_spec_depth(path: Path, text: str) -> None:
    """Refuse YAML nested deeper than MAX_SPEC_DEPTH, reading parser events (no recursion, no objects built).

    Syntax errors are left to the real load, which words them with their line."""
    import yaml  # here, not at module level: the runtime imports the spec model but never parses YAML

    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # the parser the load uses; it does not recurse
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_SPEC_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise SpecError(
                        f"{path}:{line}: nested more than {MAX_SPEC_DEPTH} levels deep; a job spec is a flat "
                        "mapping (name, command, params, inputs, env, resources)"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return


def env_problem(name: str, value: str) -> str | None:
    """Why `name=value` cannot be a process environment entry, or None."""
    if not name:
        return "an environment variable needs a name"
    if "=" in name:
        return f"env name {name!r} contains '=': a process environment cannot hold it"
    if "\x00" in name:
        return f"env name {name!r} contains a NUL character"
    if "\x00" in value:
        return f"env.{name} contains a NUL character: a process environment cannot hold it"
    return None


def check_output_bucket(store: ObjectStore, outputs: str) -> None:
    """Refuse (exit 2) outputs in a bucket that does not exist, at submit, before any upload or record."""
    from jobsub.uri import ObjectURI

    uri = ObjectURI.parse(outputs)
    try:
        store.check_bucket(uri.bucket)
    except BucketNotFoundError as exc:
        raise SpecError(f"outputs {outputs}: {exc}") from None
