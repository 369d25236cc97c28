"""Job templates: the YAML specs shipped in jobsub/job_templates plus the user's own in <config>/templates."""

from __future__ import annotations

from pathlib import Path

from jobsub.config import config_dir
from jobsub.errors import SpecError
from jobsub.jobs.spec import JobSpec, load_spec

BUILTIN = Path(__file__).resolve().parents[1] / "job_templates"


def template_dirs() -> list[Path]:
    return [config_dir() / "templates", BUILTIN]


def template_paths() -> dict[str, Path]:
    """Name -> file; a user template shadows a built-in one of the same name."""
    found: dict[str, Path] = {}
    for folder in reversed(template_dirs()):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            found[path.stem] = path
    return dict(sorted(found.items()))


def find_template(name: str) -> Path:
    paths = template_paths()
    if name not in paths:
        raise SpecError(f"no template named {name!r}; available: {', '.join(paths)} (or use -f job.yaml)")
    return paths[name]


def load_template(name: str) -> JobSpec:
    return load_spec(find_template(name))
