"""image build: the job image for the docker executor, built from wheels prepared here (no network in the build)."""

from __future__ import annotations

import click

from jobsub.cli.app import App, pass_app

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@click.group("image")
def image_command() -> None:
    """The job image the docker executor runs (docker/Dockerfile)."""


@image_command.command("build")
@click.option("--tag", default=None, help="Image name (default jobsub-train:latest; with --gpu jobsub-train:cuda).")
@click.option("--gpu", is_flag=True, help="torch with CUDA (PyPI's Linux build); jobs need the NVIDIA runtime.")
@click.option("--base", default=None, help="Base image with python3 and its venv module (default python:3.11-slim).")
@click.option("--light", is_flag=True, help="The runtime alone, without torch/transformers (python-script jobs).")
@click.option(
    "--torch-index",
    default=None,
    help=f"Extra pip index for torch (default for CPU images: {CPU_TORCH_INDEX}; 'none' = pip's own config).",
)
@click.option("--docker-host", default=None, help="Engine to build on (default: the profile's, DOCKER_HOST, context).")
@pass_app
def image_build(
    app: App,
    tag: str | None,
    gpu: bool,
    base: str | None,
    light: bool,
    torch_index: str | None,
    docker_host: str | None,
) -> None:
    """Build the job image: `pip wheel` jobsub and its dependencies here, then `docker build` with
    `pip install --no-index --find-links` inside, so the build itself needs no network.

    \b
    Examples:
      jobsub image build
      jobsub image build --gpu --tag jobsub-train:cuda
      jobsub image build --base jobsub-base:bookworm --torch-index none
    """
    from jobsub.executors.docker import DockerExecutor
    from jobsub.executors.docker_settings import DockerSettings
    from jobsub.image import DEFAULT_BASE, DEFAULT_TAG, ImagePlan, build_image

    if torch_index is None:
        torch_index = None if gpu or light else CPU_TORCH_INDEX
    elif torch_index.lower() == "none":
        torch_index = None
    plan = ImagePlan(
        tag=tag or ("jobsub-train:cuda" if gpu else DEFAULT_TAG),
        base=base or DEFAULT_BASE,
        extras="" if light else "train",
        gpu=gpu,
        torch_index=torch_index,
    )
    profile = app.profile
    if docker_host:
        settings = profile.section("docker", DockerSettings)
        profile = profile.with_section("docker", settings.model_copy(update={"host": docker_host}))
    executor = DockerExecutor(profile)
    client = executor.ping()
    click.echo(f"building {plan.tag} on {executor.host} from {plan.base}")
    build_image(client, plan, say=click.echo)
    click.echo(f"jobs run in it with: jobsub submit ... --executor docker --set image={plan.tag}")
