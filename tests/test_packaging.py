"""The job image and the package metadata stay in step (no Docker engine here, so the image is not built)."""

from __future__ import annotations

import re
import sys

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def _pins(requirements: list[str]) -> dict[str, str]:
    return {
        m.group(1).lower(): m.group(2) for r in requirements if (m := re.match(r"([A-Za-z0-9_.\-]+)==([^;\s]+)", r))
    }


def test_dockerfile_torch_matches_the_pyproject_pin() -> None:
    pins = _pins(PYPROJECT["project"]["optional-dependencies"]["train"])
    default = re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE, re.M)
    assert default and pins["torch"] == default.group(1)


def test_every_version_the_dockerfile_names_matches_pyproject() -> None:
    pins = _pins([r for group in PYPROJECT["project"]["optional-dependencies"].values() for r in group])
    for name, version in re.findall(r'"?([A-Za-z0-9_\-]+)==([0-9][^"\s]*)"?', DOCKERFILE):
        if name.lower() == "torch" and version == "${TORCH_VERSION}":
            continue
        assert pins.get(name.lower()) == version, f"Dockerfile pins {name}=={version}, pyproject says {pins.get(name)}"


def test_dockerfile_installs_the_repository_extra_and_runs_the_runtime_as_non_root() -> None:
    assert 'pip install ".[train]"' in DOCKERFILE
    assert "COPY jobsub ./jobsub" in DOCKERFILE and "COPY train_entry ./train_entry" in DOCKERFILE
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert 'ENTRYPOINT ["python", "-m", "jobsub.runtime"]' in DOCKERFILE
    python = re.search(r"^ARG PYTHON_VERSION=(\d+)\.(\d+)", DOCKERFILE, re.M)
    minimum = re.search(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert python and minimum and tuple(map(int, python.groups())) >= tuple(map(int, minimum.groups()))


def test_dockerignore_keeps_local_environments_out_of_the_build_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_templates_call_train_entry_commands_that_exist() -> None:
    from jobsub.jobs.templates import load_template
    from train_entry.__main__ import build_parser
    from train_entry.launch import build_parser as build_launch_parser

    parser = build_parser()
    for name, command in (("bert-finetune", "finetune"), ("bert-evaluate", "evaluate"), ("bert-pretrain", "pretrain")):
        spec = load_template(name)
        rendered = spec.render_command(
            {
                "inputs": {k: f"/in/{k}" for k in spec.inputs},
                "params": spec.params,
                "outputs": {"dir": "/out"},
                "job": {"id": "j"},
            }
        )
        import shlex

        argv = shlex.split(rendered)
        assert argv[:3] == ["python", "-m", "train_entry.launch"]  # torchrun with one process per GPU
        launch = build_launch_parser().parse_args(argv[3:])
        assert launch.command == command
        parser.parse_args([launch.command, *launch.args])  # every flag the template passes is one train_entry accepts
