"""The job image and the package metadata stay in step (the image itself is built by the docker executor tests,
tests/executors/harness_docker.py, and by `jobsub image build`)."""

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


def test_dockerfile_installs_from_prepared_wheels_without_network_and_runs_as_non_root() -> None:
    from jobsub.image import DEFAULT_BASE, TORCH_VERSION

    steps = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    installs = [line for line in steps if re.search(r"\bpip install\b", line)]
    assert installs and all("--no-index --find-links /tmp/wheels" in line for line in installs)
    assert "COPY wheels /tmp/wheels" in DOCKERFILE
    assert not re.search(r"apt-get|--index-url|curl |wget ", "\n".join(steps))  # nothing the build would download
    assert '"jobsub${JOBSUB_EXTRAS:+[$JOBSUB_EXTRAS]}"' in DOCKERFILE and "ARG JOBSUB_EXTRAS=train" in DOCKERFILE
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert 'ENTRYPOINT ["python", "-m", "jobsub.runtime"]' in DOCKERFILE
    assert re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE, re.M).group(1) == TORCH_VERSION  # type: ignore[union-attr]
    base = re.search(r"^ARG BASE_IMAGE=python:(\d+)\.(\d+)-slim$", DOCKERFILE, re.M)
    assert base and f"python:{base.group(1)}.{base.group(2)}-slim" == DEFAULT_BASE
    minimum = re.search(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum and tuple(map(int, base.groups())) >= tuple(map(int, minimum.groups()))


def test_image_builder_pins_torch_and_passes_the_base_and_extras() -> None:
    from jobsub.image import ImagePlan, build_args, wheel_command

    plan = ImagePlan(tag="t", base="jobsub-base:x")
    command = wheel_command(plan, REPO, REPO / "wheels")
    pins = _pins(PYPROJECT["project"]["optional-dependencies"]["train"])
    assert f"torch=={pins['torch']}" in command and f"{REPO}[train]" in command
    assert build_args(plan) == {"BASE_IMAGE": "jobsub-base:x", "JOBSUB_EXTRAS": "train"}
    light = ImagePlan(tag="t", base="b", extras="")
    assert not any(arg.startswith("torch") for arg in wheel_command(light, REPO, REPO / "w"))


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
