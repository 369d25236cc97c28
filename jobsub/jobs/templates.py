"""Job templates: the YAML specs of the top-level job_templates/ folder plus the user's own in <config>/templates.

The repository keeps templates in job_templates/ (beside docker/ and train_entry/, where a reader looks
for them); pyproject.toml installs that folder as the package ``jobsub.job_templates``, so an installed
wheel and an editable checkout find them the same way.
"""

from __future__ import annotations

from pathlib import Path

from jobsub.config import config_dir
from jobsub.errors import SpecError
from jobsub.jobs.spec import JobSpec, load_spec


def _builtin_dir() -> Path:
    """The installed package's folder; in a source checkout used without installing (PYTHONPATH, an older
    editable install) the repository's own job_templates/ folder."""
    from importlib.resources import files

    try:
        found = files("jobsub.job_templates")
    except ModuleNotFoundError:
        found = None
    if isinstance(found, Path) and found.is_dir():
        return found
    return Path(__file__).resolve().parents[2] / "job_templates"


BUILTIN = _builtin_dir()


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
